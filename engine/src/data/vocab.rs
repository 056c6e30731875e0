//! Token vocabularies for text datasets, saved in the dataset's `meta.json` so every later step (and a report's
//! samples) decodes the same way.
//!
//! ```
//! use anbiq::data::Vocab;
//! let vocab = Vocab::chars_of("to be or not");
//! let ids = vocab.encode("not to be").unwrap();
//! assert_eq!(vocab.decode(&ids), "not to be");
//! assert_eq!(Vocab::Byte.size(), 256);
//! ```

use serde::{Deserialize, Serialize};

use super::tokenizer::TextTokenizer;

/// How text becomes token ids: one id per byte (256, fits any file), one per distinct character of the corpus, or a
/// pretrained model's tokenizer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Vocab {
    Byte,
    /// The corpus' distinct characters in code-point order; id = position.
    Char {
        symbols: String,
    },
    /// A model's tokenizer (`tokenizer.json`), kept whole so the data decodes on its own. `size` is the model's
    /// output size, which may exceed the tokenizer's (vocabularies padded to a multiple of 64).
    Tokenizer {
        size: i64,
        tokenizer: Box<TextTokenizer>,
        /// Rows are sentences right-padded with the tokenizer's pad token (`source: sentences`), not windows of
        /// one token stream; their labels are the tokens themselves.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        sentences: bool,
    },
}

impl Vocab {
    /// The character vocabulary of `text`: its distinct characters, sorted.
    pub fn chars_of(text: &str) -> Vocab {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Vocab::Char { symbols: chars.into_iter().collect() }
    }

    pub fn size(&self) -> i64 {
        match self {
            Vocab::Byte => 256,
            Vocab::Char { symbols } => symbols.chars().count() as i64,
            Vocab::Tokenizer { size, .. } => *size,
        }
    }

    /// Token ids of `text`; a character outside a `char` vocabulary is an error that names it.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, String> {
        match self {
            Vocab::Byte => Ok(text.bytes().map(i64::from).collect()),
            Vocab::Char { symbols } => {
                let table: std::collections::HashMap<char, i64> =
                    symbols.chars().enumerate().map(|(i, c)| (c, i as i64)).collect();
                text.chars()
                    .map(|c| table.get(&c).copied().ok_or_else(|| format!("character {c:?} is not in the vocabulary")))
                    .collect()
            }
            Vocab::Tokenizer { tokenizer, .. } => {
                Ok(tokenizer.encode(text, false)?.into_iter().map(i64::from).collect())
            }
        }
    }

    /// Text of `ids`; ids out of range decode to U+FFFD, and so do invalid UTF-8 byte sequences.
    pub fn decode(&self, ids: &[i64]) -> String {
        match self {
            Vocab::Byte => {
                let bytes: Vec<u8> = ids.iter().map(|&i| u8::try_from(i).unwrap_or(b'?')).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Vocab::Char { symbols } => {
                let chars: Vec<char> = symbols.chars().collect();
                ids.iter()
                    .map(|&i| usize::try_from(i).ok().and_then(|i| chars.get(i)).copied().unwrap_or('\u{FFFD}'))
                    .collect()
            }
            Vocab::Tokenizer { tokenizer, .. } => {
                let ids: Vec<u32> = ids.iter().filter_map(|&i| u32::try_from(i).ok()).collect();
                tokenizer.decode(&ids)
            }
        }
    }

    /// How much text `ids` stand for, in characters and in UTF-8 bytes: for bits per character, and bits per byte
    /// (which compares models with different tokenizers). A byte vocabulary has one byte per token and counts UTF-8
    /// lead bytes (every byte but continuation bytes `10xxxxxx`) as characters; a char vocabulary has one character
    /// per token, of its symbol's width; a tokenizer's tokens are decoded once and both are counted.
    pub fn text_size(&self, ids: &tch::Tensor) -> TextSize {
        match self {
            Vocab::Byte => {
                let continuation = ids.ge(0x80).logical_and(&ids.lt(0xC0));
                let characters = ids.numel() as i64 - continuation.sum(tch::Kind::Int64).int64_value(&[]);
                TextSize { characters, bytes: ids.numel() as i64 }
            }
            Vocab::Char { symbols } => {
                let widths: Vec<i64> = symbols.chars().map(|c| c.len_utf8() as i64).collect();
                let bytes = tch::Tensor::from_slice(&widths)
                    .index_select(0, &ids.flatten(0, -1).to_kind(tch::Kind::Int64))
                    .sum(tch::Kind::Int64)
                    .int64_value(&[]);
                TextSize { characters: ids.numel() as i64, bytes }
            }
            Vocab::Tokenizer { .. } => {
                let ids: Vec<i64> = Vec::try_from(&ids.flatten(0, -1).to_kind(tch::Kind::Int64)).unwrap_or_default();
                let text = self.decode(&ids);
                TextSize { characters: text.chars().count() as i64, bytes: text.len() as i64 }
            }
        }
    }
}

/// How much text a run of tokens stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextSize {
    pub characters: i64,
    pub bytes: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_characters() {
        let text = "Höre, Romeo — thou art\nthere.";
        for vocab in [Vocab::Byte, Vocab::chars_of(text)] {
            let ids = vocab.encode(text).unwrap();
            assert_eq!(vocab.decode(&ids), text);
            let size = vocab.text_size(&tch::Tensor::from_slice(&ids));
            assert_eq!(size, TextSize { characters: text.chars().count() as i64, bytes: text.len() as i64 });
            assert!(ids.iter().all(|&i| (0..vocab.size()).contains(&i)));
        }
        let vocab = Vocab::chars_of("abc");
        assert_eq!((vocab.size(), vocab.encode("cab").unwrap()), (3, vec![2, 0, 1]));
        assert!(vocab.encode("abd").unwrap_err().contains("'d'"));
        let json = serde_json::to_string(&vocab).unwrap();
        assert_eq!(json, r#"{"kind":"char","symbols":"abc"}"#);
        assert_eq!(serde_json::from_str::<Vocab>(&json).unwrap(), vocab);
    }
}
