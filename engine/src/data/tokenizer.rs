//! A pretrained model's tokenizer: Hugging Face's `tokenizer.json` (byte-level BPE, SentencePiece BPE, WordPiece,
//! …) run by the `tokenizers` library itself, with the special tokens of `tokenizer_config.json`.
//!
//! `tokenizer.json` files often carry a fixed padding or truncation (all-MiniLM-L6-v2 pads every input to 128
//! tokens). Both are switched off here: text is never cut or padded behind the user's back; the steps that need
//! either do it explicitly and say so.

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{DataError, Result};

pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const CONFIG_FILE: &str = "tokenizer_config.json";

/// A loaded tokenizer and the special tokens a document begins and ends with.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    /// blake3 of the tokenizer's JSON form: two tokenizers are equal when they encode identically by construction.
    fingerprint: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Whether the model expects BOS before each text (`add_bos_token`; Llama 2, TinyLlama: yes; SmolLM2: no).
    pub add_bos: bool,
    /// What pads a batch of sentences (`pad_token`, or the id of the tokenizer's own padding setting).
    #[serde(default)]
    pub pad: Option<u32>,
}

impl TextTokenizer {
    /// `tokenizer.json` in `dir`, with `tokenizer_config.json` beside it when there is one.
    pub fn from_dir(dir: &Path) -> Result<TextTokenizer> {
        let path = dir.join(TOKENIZER_FILE);
        if !path.is_file() {
            return Err(DataError::format(dir, "has no tokenizer.json"));
        }
        let config = dir.join(CONFIG_FILE);
        TextTokenizer::from_files(&path, config.is_file().then_some(config.as_path()))
    }

    /// A `tokenizer.json` file and, optionally, the `tokenizer_config.json` naming its special tokens.
    pub fn from_files(tokenizer_json: &Path, config: Option<&Path>) -> Result<TextTokenizer> {
        let bytes = std::fs::read(tokenizer_json).map_err(|e| DataError::io(tokenizer_json, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| {
            DataError::format(tokenizer_json, format!("not a tokenizer.json the tokenizers library reads ({e})"))
        })?;
        let config = match config {
            Some(path) => {
                let text = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
                serde_json::from_slice(&text).map_err(|e| DataError::format(path, format!("not JSON ({e})")))?
            }
            None => serde_json::Value::Null,
        };
        TextTokenizer::new(inner, &config).map_err(|e| DataError::format(tokenizer_json, e))
    }

    fn new(mut inner: tokenizers::Tokenizer, config: &serde_json::Value) -> std::result::Result<Self, String> {
        let own_pad = inner.get_padding().map(|p| p.pad_id);
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| e.to_string())?;
        // `bos_token` is a string or an AddedToken object (`{"content": "<s>", …}`).
        let token_id = |name: &str| -> std::result::Result<Option<u32>, String> {
            let value = &config[name];
            let content = value.as_str().or_else(|| value["content"].as_str());
            match content {
                None => Ok(None),
                Some(t) => inner
                    .token_to_id(t)
                    .map(Some)
                    .ok_or_else(|| format!("{name} {t:?} of tokenizer_config.json is not in the vocabulary")),
            }
        };
        let special = SpecialTokens {
            bos: token_id("bos_token")?,
            eos: token_id("eos_token")?,
            add_bos: config["add_bos_token"].as_bool().unwrap_or(false),
            pad: token_id("pad_token")?.or(own_pad),
        };
        Ok(TextTokenizer::assemble(inner, special))
    }

    fn assemble(inner: tokenizers::Tokenizer, special: SpecialTokens) -> TextTokenizer {
        let json = inner.to_string(false).expect("a loaded tokenizer serialises");
        let fingerprint = blake3::hash(json.as_bytes()).to_hex().to_string();
        TextTokenizer { inner, special, fingerprint }
    }

    /// Tokens, added (special) tokens included.
    pub fn size(&self) -> i64 {
        self.inner.get_vocab_size(true) as i64
    }

    pub fn special(&self) -> &SpecialTokens {
        &self.special
    }

    /// The ids of `text`; `special` lets the tokenizer's post-processor add what it adds around a text (BERT's
    /// `[CLS]` … `[SEP]`, Llama 3's `<|begin_of_text|>`).
    pub fn encode(&self, text: &str, special: bool) -> std::result::Result<Vec<u32>, String> {
        let encoding = self.inner.encode_fast(text, special).map_err(|e| format!("cannot tokenise: {e}"))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// One document as a language model is trained on it: its own special tokens (post-processor), BOS first when
    /// the model expects one and the post-processor did not add it, and EOS last to mark where it ends.
    pub fn document(&self, text: &str) -> std::result::Result<Vec<u32>, String> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        let body = self.encode(text, true)?;
        if let (true, Some(bos)) = (self.special.add_bos, self.special.bos) {
            if body.first() != Some(&bos) {
                ids.push(bos);
            }
        }
        ids.extend(body);
        if let Some(eos) = self.special.eos {
            if ids.last() != Some(&eos) {
                ids.push(eos);
            }
        }
        Ok(ids)
    }

    /// The text of `ids`, special tokens included; ids outside the vocabulary are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, false).unwrap_or_default()
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Writes `tokenizer.json` and a `tokenizer_config.json` naming its special tokens into `dir`: what
    /// [`TextTokenizer::from_dir`] reads back as this tokenizer (same fingerprint, same special tokens), and what
    /// `transformers` loads beside a model's `config.json`. For a model trained from scratch on this tokenizer's data.
    pub fn write_files(&self, dir: &Path) -> Result<()> {
        let json = self.inner.to_string(false).expect("a loaded tokenizer serialises");
        let path = dir.join(TOKENIZER_FILE);
        std::fs::write(&path, json + "\n").map_err(|e| DataError::io(&path, e))?;
        let token = |id: Option<u32>| id.and_then(|id| self.inner.id_to_token(id));
        let mut config = serde_json::Map::new();
        for (name, id) in
            [("bos_token", self.special.bos), ("eos_token", self.special.eos), ("pad_token", self.special.pad)]
        {
            if let Some(t) = token(id) {
                config.insert(name.into(), t.into());
            }
        }
        config.insert("add_bos_token".into(), self.special.add_bos.into());
        let path = dir.join(CONFIG_FILE);
        let text = serde_json::to_string_pretty(&config).expect("JSON") + "\n";
        std::fs::write(&path, text).map_err(|e| DataError::io(&path, e))
    }
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("size", &self.size())
            .field("special", &self.special)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl PartialEq for TextTokenizer {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint && self.special == other.special
    }
}

impl Eq for TextTokenizer {}

/// How a tokenizer is kept in a dataset's `meta.json`: its special tokens and the whole `tokenizer.json`, so a
/// dataset decodes on its own, whatever happens to the model it came from.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    special: SpecialTokens,
    tokenizer: tokenizers::Tokenizer,
}

impl Serialize for TextTokenizer {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        Stored { special: self.special.clone(), tokenizer: self.inner.clone() }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for TextTokenizer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let stored = Stored::deserialize(d)?;
        Ok(TextTokenizer::assemble(stored.tokenizer, stored.special))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word-level tokenizer small enough to write by hand, with padding that must be switched off.
    const TINY: &str = r#"{
      "version": "1.0", "truncation": {"max_length": 2, "strategy": "LongestFirst", "stride": 0,
      "direction": "Right"},
      "padding": {"strategy": {"Fixed": 8}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0,
                  "pad_type_id": 0, "pad_token": "<pad>"},
      "added_tokens": [{"id": 0, "content": "<pad>", "single_word": false, "lstrip": false, "rstrip": false,
                        "normalized": false, "special": true},
                       {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false,
                        "normalized": false, "special": true},
                       {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false,
                        "normalized": false, "special": true}],
      "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
      "decoder": null,
      "model": {"type": "WordLevel", "vocab": {"<pad>": 0, "<s>": 1, "</s>": 2, "to": 3, "be": 4, "or": 5,
                "not": 6, "<unk>": 7}, "unk_token": "<unk>"}
    }"#;

    #[test]
    fn never_pads_or_truncates_and_frames_documents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKENIZER_FILE), TINY).unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            r#"{"bos_token": {"content": "<s>"}, "eos_token": "</s>", "add_bos_token": true}"#,
        )
        .unwrap();
        let tok = TextTokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(tok.encode("to be or not to be", false).unwrap(), [3, 4, 5, 6, 3, 4], "not cut to 2, not padded");
        assert_eq!(tok.document("to be").unwrap(), [1, 3, 4, 2]);
        assert_eq!(tok.special(), &SpecialTokens { bos: Some(1), eos: Some(2), add_bos: true, pad: Some(0) });
        let json = serde_json::to_string(&tok).unwrap();
        let back: TextTokenizer = serde_json::from_str(&json).unwrap();
        assert_eq!(back, tok);
        assert_eq!(back.encode("not or", false).unwrap(), [6, 5]);
        // Written out for a model trained on its data, it reads back the same (the padding it had is now `pad_token`).
        let written = tempfile::tempdir().unwrap();
        tok.write_files(written.path()).unwrap();
        assert_eq!(TextTokenizer::from_dir(written.path()).unwrap(), tok);

        std::fs::write(dir.path().join(CONFIG_FILE), r#"{"eos_token": "<eot>"}"#).unwrap();
        let err = TextTokenizer::from_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("tokenizer.json") && err.contains("\"<eot>\""), "{err}");
        std::fs::write(dir.path().join(TOKENIZER_FILE), "{}").unwrap();
        assert!(TextTokenizer::from_dir(dir.path()).unwrap_err().to_string().contains("not a tokenizer.json"));
        let empty = tempfile::tempdir().unwrap();
        assert!(TextTokenizer::from_dir(empty.path()).unwrap_err().to_string().contains("has no tokenizer.json"));
    }
}
