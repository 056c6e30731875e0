//! After a YAML syntax error. The scanner cannot resume past one, so alone it would hide every other problem of the
//! file. Where the error sits inside one step's block under `steps:`, that block is cut out (its lines left blank, so
//! positions stay) and the rest is parsed again: its problems are reported beside the syntax error, and the cut
//! step counts as declared-but-broken, so references to it are not reported as unknown.

/// The text with the blocks of the steps around `line` (1-based) blanked, and those steps' ids; `None` when `line`
/// is not inside a step written in block style under a top-level `steps:`.
pub(super) fn cut_step(text: &str, line: usize) -> Option<(String, Vec<String>)> {
    let lines: Vec<&str> = text.lines().collect();
    let blocks = step_blocks(&lines)?;
    // The scanner may only notice a problem on a later line (an unclosed `{` at the next key): the block holding the
    // line, and the one before it when the line starts a block.
    let at = line.saturating_sub(1).min(lines.len().saturating_sub(1));
    let i = blocks.iter().rposition(|b| b.start <= at).filter(|&i| at < blocks[i].end)?;
    let mut cut = vec![i];
    if blocks[i].start == at && i > 0 {
        cut.push(i - 1);
    }
    let mut out: Vec<&str> = lines.clone();
    let mut ids = Vec::new();
    for &b in &cut {
        for l in &mut out[blocks[b].start..blocks[b].end] {
            *l = "";
        }
        ids.push(blocks[b].id.clone());
    }
    Some((out.join("\n") + "\n", ids))
}

struct Block {
    id: String,
    /// Line indices `start..end`.
    start: usize,
    end: usize,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The block of every step under a top-level `steps:` written in block style.
fn step_blocks(lines: &[&str]) -> Option<Vec<Block>> {
    let header = lines.iter().position(|l| l.split('#').next().is_some_and(|l| l.trim_end() == "steps:"))?;
    let first = (header + 1..lines.len()).find(|&i| is_content(lines[i]))?;
    let child = indent(lines[first]);
    if child == 0 {
        return None;
    }
    let mut blocks: Vec<Block> = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(first) {
        if !is_content(line) {
            continue;
        }
        let depth = indent(line);
        if depth < child {
            break; // the next top-level key
        }
        if depth == child {
            let id = line.trim().split(':').next().unwrap_or_default().trim().to_string();
            if let Some(last) = blocks.last_mut() {
                last.end = i;
            }
            blocks.push(Block { id, start: i, end: lines.len() });
        }
    }
    if let (Some(last), Some(stop)) =
        (blocks.last_mut(), (first..lines.len()).find(|&i| is_content(lines[i]) && indent(lines[i]) < child))
    {
        last.end = stop;
    }
    Some(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_around_a_syntax_error_is_cut() {
        let text = "name: x\nsteps:\n  a: {kind: dataset\n  b:\n    kind: train\n  c: {kind: dataset}\nseed: 1\n";
        // Noticed at `b`'s line: `a` (the unclosed brace) and `b` are cut.
        let (cut, ids) = cut_step(text, 4).unwrap();
        assert_eq!(ids, vec!["b".to_string(), "a".to_string()]);
        assert_eq!(cut, "name: x\nsteps:\n\n\n\n  c: {kind: dataset}\nseed: 1\n");
        let (_, ids) = cut_step(text, 5).unwrap();
        assert_eq!(ids, vec!["b".to_string()]);
        assert!(cut_step(text, 1).is_none() && cut_step(text, 7).is_none());
        assert!(cut_step("steps: {a: {kind: dataset}\n", 1).is_none());
    }
}
