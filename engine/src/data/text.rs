//! Text corpora as language-model datasets: tokenise, split by position, cut into context windows.
//!
//! With a model's tokenizer the corpus is a list of documents — each file of a directory, or with
//! `documents: paragraphs` each blank-line separated block — each tokenised on its own and framed the way the model
//! was trained (BOS when it expects one, EOS after every document), then concatenated into one stream.
//!
//! The token stream is split into contiguous parts in order — `train` first, then the named splits in name order —
//! so a validation or test part is text the model never saw, not windows interleaved with training ones. Each part
//! becomes non-overlapping windows: `x[i]` = tokens `[iT, iT+T)`, `y[i]` = tokens `[iT+1, iT+T+1)` (the next token
//! at every position); the part's last `< T+1` tokens are dropped.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::tokenizer::TextTokenizer;
use super::{DataError, Dataset, DatasetMeta, Result, Vocab};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tokenizer {
    /// One token per distinct character of the corpus (Shakespeare: 84).
    #[default]
    Char,
    /// One token per byte: 256 tokens, any file.
    Byte,
}

/// How a corpus for a model's tokenizer is cut into documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Documents {
    /// Each file is one document.
    #[default]
    Files,
    /// Each block of text between blank lines is one document.
    Paragraphs,
}

/// The UTF-8 text at `path`: a file, or every file of a directory (sorted by name) concatenated.
pub fn read_corpus(path: &Path) -> Result<String> {
    Ok(read_files(path)?.concat())
}

/// The corpus at `path` as documents.
pub fn read_documents(path: &Path, documents: Documents) -> Result<Vec<String>> {
    let files = read_files(path)?;
    Ok(match documents {
        Documents::Files => files,
        Documents::Paragraphs => files
            .iter()
            .flat_map(|f| {
                let f = f.replace("\r\n", "\n");
                f.split("\n\n").map(|p| p.trim_matches('\n').to_string()).collect::<Vec<_>>()
            })
            .filter(|p| !p.trim().is_empty())
            .collect(),
    })
}

/// Token ids of `documents` under a model's tokenizer, each framed by its special tokens, in one stream.
pub fn tokenize_documents(documents: &[String], tokenizer: &TextTokenizer) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    for (i, doc) in documents.iter().enumerate() {
        let doc_ids = tokenizer.document(doc).map_err(|e| DataError::Invalid(format!("document {}: {e}", i + 1)))?;
        ids.extend(doc_ids.into_iter().map(i64::from));
    }
    Ok(ids)
}

/// Sentences for an encoder: one per non-blank line of the file (or of each file of a directory, in name order),
/// tokenised with the tokenizer's own special tokens (`[CLS]` … `[SEP]`) and right-padded with `pad` to `context`
/// tokens. A longer sentence is an error naming its file and line, unless `truncate` (then it is cut, and counted).
/// Returns the ids (`N × context`, row-major), N, and the number of sentences cut.
pub fn sentences(
    path: &Path,
    tokenizer: &TextTokenizer,
    context: i64,
    truncate: bool,
) -> Result<(Vec<i64>, usize, usize)> {
    padded_lines(path, tokenizer, context, truncate, 1)
}

/// Pairs of sentences, one pair per non-blank line as `first<TAB>second` (a sentence and its paraphrase), each
/// sentence encoded as by [`sentences`]. Returns the ids (`N × 2 × context`, row-major), N, and the sentences cut.
pub fn sentence_pairs(
    path: &Path,
    tokenizer: &TextTokenizer,
    context: i64,
    truncate: bool,
) -> Result<(Vec<i64>, usize, usize)> {
    padded_lines(path, tokenizer, context, truncate, 2)
}

/// Lines of `per_line` tab-separated sentences, each encoded and padded to `context`.
fn padded_lines(
    path: &Path,
    tokenizer: &TextTokenizer,
    context: i64,
    truncate: bool,
    per_line: usize,
) -> Result<(Vec<i64>, usize, usize)> {
    let pad = tokenizer.special().pad.ok_or_else(|| {
        DataError::Invalid("the tokenizer has no padding token (`pad_token` in tokenizer_config.json)".into())
    })?;
    let width = context as usize;
    let (mut ids, mut count, mut cut) = (Vec::new(), 0usize, 0usize);
    for (file, text) in &read_named_files(path)? {
        for (line, content) in text.lines().enumerate() {
            if content.trim().is_empty() {
                continue;
            }
            let at = |message: String| DataError::format(file, format!("line {}: {message}", line + 1));
            let parts: Vec<&str> = if per_line == 1 { vec![content] } else { content.split('\t').collect() };
            if parts.len() != per_line || parts.iter().any(|p| p.trim().is_empty()) {
                return Err(at(format!("expected {per_line} non-empty sentences separated by a tab")));
            }
            for sentence in parts {
                let mut tokens = tokenizer.encode(sentence, true).map_err(|e| at(e.to_string()))?;
                if tokens.len() > width {
                    if !truncate {
                        return Err(at(format!(
                            "{} tokens, more than `context: {context}` (raise it, or `truncate: true` to cut)",
                            tokens.len()
                        )));
                    }
                    tokens.truncate(width);
                    cut += 1;
                }
                ids.extend(tokens.iter().map(|&t| i64::from(t)));
                ids.extend(std::iter::repeat_n(i64::from(pad), width - tokens.len()));
            }
            count += 1;
        }
    }
    if count == 0 {
        return Err(DataError::format(path, "no sentences (one per line)"));
    }
    Ok((ids, count, cut))
}

/// The files at `path`: the file itself, or every file of a directory sorted by name.
fn file_paths(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| DataError::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// The texts of the files at `path`: the file itself, or every file of a directory sorted by name.
fn read_files(path: &Path) -> Result<Vec<String>> {
    Ok(read_named_files(path)?.into_iter().map(|(_, text)| text).collect())
}

/// [`read_files`] with each text's file, for errors that name it.
fn read_named_files(path: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut texts = Vec::new();
    for f in file_paths(path)? {
        let bytes = std::fs::read(&f).map_err(|e| DataError::io(&f, e))?;
        let text = String::from_utf8(bytes).map_err(|e| DataError::format(&f, format!("not UTF-8: {e}")))?;
        texts.push((f, text));
    }
    if texts.iter().all(|(_, t)| t.is_empty()) {
        return Err(DataError::format(path, "no text"));
    }
    Ok(texts)
}

/// The vocabulary of a char or byte tokenizer for `text`, and the text's ids.
pub fn tokenize(text: &str, tokenizer: Tokenizer) -> Result<(Vocab, Vec<i64>)> {
    let vocab = match tokenizer {
        Tokenizer::Byte => Vocab::Byte,
        Tokenizer::Char => Vocab::chars_of(text),
    };
    let ids = vocab.encode(text).map_err(DataError::Invalid)?;
    Ok((vocab, ids))
}

/// The token stream `ids` split by position into `parts` (fractions of the stream; `train` takes the rest and
/// comes first), each cut into windows of `context` tokens.
pub fn windows(
    ids: &[i64],
    vocab: &Vocab,
    context: i64,
    parts: &[(String, f64)],
    source: &str,
) -> Result<Vec<(String, Dataset)>> {
    let n = ids.len();
    let claimed: f64 = parts.iter().map(|(_, f)| f).sum();
    let mut layout = vec![("train".to_string(), 1.0 - claimed)];
    layout.extend(parts.iter().cloned());
    let (mut start, mut cum) = (0usize, 0.0);
    let mut out = Vec::new();
    for (k, (name, fraction)) in layout.iter().enumerate() {
        cum += fraction;
        let end = if k + 1 == layout.len() { n } else { ((cum * n as f64).round() as usize).min(n) };
        let meta = DatasetMeta {
            sample_shape: vec![context],
            classes: vocab.size(),
            class_names: None,
            source: format!("{source}/{name}"),
            vocab: Some(vocab.clone()),
        };
        out.push((name.clone(), cut(&ids[start..end], context, meta)?));
        start = end;
    }
    Ok(out)
}

fn cut(ids: &[i64], context: i64, meta: DatasetMeta) -> Result<Dataset> {
    let t = context as usize;
    let count = ids.len().saturating_sub(1) / t;
    let stream = Tensor::from_slice(&ids[..(count * t + 1).min(ids.len())]);
    let x = stream.narrow(0, 0, (count * t) as i64).view([count as i64, context]);
    let y = stream.narrow(0, 1.min(stream.numel() as i64), (count * t) as i64).view([count as i64, context]);
    Dataset::new(x, y, meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_the_stream_and_splits_are_contiguous() {
        let text: String = (0..103).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let parts = vec![("test".to_string(), 0.1), ("val".to_string(), 0.2)];
        let (vocab, ids) = tokenize(&text, Tokenizer::Char).unwrap();
        let split = windows(&ids, &vocab, 8, &parts, "t").unwrap();
        let names: Vec<&str> = split.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["train", "test", "val"]);
        // train = 72 tokens → 8 windows (72 − 1 = 71 ≥ 8·8); test = 10 → 1; val = 21 → 2.
        let sizes: Vec<usize> = split.iter().map(|(_, d)| d.len()).collect();
        assert_eq!(sizes, [8, 1, 2]);
        let train = &split[0].1;
        assert_eq!(train.x.size(), [8, 8]);
        assert!(train.x.narrow(1, 1, 7).equal(&train.y.narrow(1, 0, 7)), "y is x shifted by one");
        assert_eq!(train.y.int64_value(&[0, 7]), train.x.int64_value(&[1, 0]), "windows are consecutive");
        let vocab = train.meta.vocab.clone().unwrap();
        let first: Vec<i64> = Vec::try_from(&train.x.get(0)).unwrap();
        assert_eq!(vocab.decode(&first), &text[..8]);
        // Test starts where train's share of the stream (90 %) ends.
        let test_first: Vec<i64> = Vec::try_from(&split[1].1.x.get(0)).unwrap();
        assert_eq!(vocab.decode(&test_first), &text[72..80]);
    }
}
