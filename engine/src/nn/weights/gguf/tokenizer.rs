//! The tokenizer a GGUF file describes, written out as the Hugging Face files every tool reads: `tokenizer.json`
//! (for the `tokenizers` library) and `tokenizer_config.json` (special tokens, whether to add BOS/EOS, the chat
//! template).
//!
//! A GGUF stores the vocabulary as metadata under llama.cpp's keys: `tokenizer.ggml.model` (the algorithm),
//! `.tokens`, `.merges`, `.scores`, `.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte), `.pre`
//! (how text is split before the merges) and the special token ids. Supported, each as `transformers` builds it
//! from the same file:
//! - `gpt2`, byte-level BPE (SmolLM2, Llama 3, Qwen2, GPT-2), with the pre-tokenizer llama.cpp uses for the file's
//!   `pre` (for `smollm` that is digits split one by one, then GPT-2's split — what SmolLM2's own `tokenizer.json`
//!   says, and a split `transformers` 5.24 does not know);
//! - `llama`, SentencePiece BPE (Llama 2, TinyLlama, Mistral): `▁` for spaces, byte fallback, merges recovered from
//!   the pieces' scores.
//!
//! The inverse, [`metadata`], writes a byte-level BPE `tokenizer.json` back as GGUF metadata for export.

use serde_json::{json, Map, Value};

use super::{Gguf, GgufError, MetaValue};

/// llama.cpp's token types.
const UNKNOWN: u64 = 2;
const CONTROL: u64 = 3;
const USER_DEFINED: u64 = 4;

/// Llama 3's split (also llama.cpp's `llama-bpe`, `dbrx`, `smaug-bpe`, `falcon3`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split: Llama 3's with single digits.
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer for llama.cpp's `tokenizer.ggml.pre` value, in `tokenizer.json` form.
fn pre_tokenizer(pre: &str) -> Option<Value> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |pattern: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
            byte_level(false),
        ]})
    };
    Some(match pre {
        "default" | "gpt2" | "gpt-2" | "mpt" | "olmo" | "jais" => byte_level(true),
        "smollm" | "starcoder" | "refact" | "codeshell" | "command-r" | "exaone" | "minerva" => json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)],
        }),
        "llama3" | "llama-v3" | "llama-bpe" | "dbrx" | "smaug-bpe" | "falcon3" => split(LLAMA3_SPLIT),
        "qwen2" | "deepseek-r1-qwen" | "megrez" => split(QWEN2_SPLIT),
        _ => return None,
    })
}

const SUPPORTED_PRE: &str = "default, gpt2, smollm, starcoder, refact, llama-bpe, llama3, dbrx, qwen2";

/// GPT-2's printable spelling of each byte (`bytes_to_unicode`): printable Latin-1 bytes stand for themselves, the
/// others are shifted past U+0100, so every token is a string of visible characters (a space is `Ġ`).
fn byte_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut shifted = 0u32;
    for b in 0..=255u32 {
        let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).expect("Latin-1")
        } else {
            shifted += 1;
            char::from_u32(255 + shifted).expect("below U+0200")
        };
    }
    table
}

/// The vocabulary metadata every GGUF tokenizer has: its tokens and their llama.cpp types.
struct Vocabulary<'a> {
    tokens: Vec<&'a str>,
    types: Vec<u64>,
}

fn strings<'a>(gguf: &'a Gguf, key: &str) -> Result<Vec<&'a str>, GgufError> {
    let v = gguf.require(key)?;
    let items = v.as_array().ok_or_else(|| gguf.error(format!("metadata `{key}` is {v}, not an array")))?;
    items
        .iter()
        .enumerate()
        .map(|(i, s)| s.as_str().ok_or_else(|| gguf.error(format!("metadata `{key}`[{i}] is {s}, not a string"))))
        .collect()
}

fn vocabulary(gguf: &Gguf) -> Result<Vocabulary<'_>, GgufError> {
    let tokens = strings(gguf, "tokenizer.ggml.tokens")?;
    let types: Vec<u64> = match gguf.metadata.get("tokenizer.ggml.token_type").and_then(MetaValue::as_array) {
        Some(items) => items.iter().map(|t| t.as_u64().unwrap_or(1)).collect(),
        None => vec![1; tokens.len()],
    };
    if types.len() != tokens.len() {
        return Err(gguf.error(format!(
            "metadata: {} token types for {} tokens (`tokenizer.ggml.token_type`)",
            types.len(),
            tokens.len()
        )));
    }
    Ok(Vocabulary { tokens, types })
}

/// An added-token entry of `tokenizer.json`.
fn added_token(id: usize, content: &str, special: bool) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
           "normalized": false, "special": special})
}

/// The two tokenizer files of `gguf`, or an error naming the metadata that is missing or not supported.
pub fn tokenizer_files(gguf: &Gguf) -> Result<(Value, Value), GgufError> {
    let model = gguf.require("tokenizer.ggml.model")?;
    let model = model.as_str().ok_or_else(|| gguf.error(format!("metadata `tokenizer.ggml.model` is {model}")))?;
    let vocabulary = vocabulary(gguf)?;
    let tokenizer = match model {
        "gpt2" => byte_level(gguf, &vocabulary)?,
        "llama" => sentencepiece(gguf, &vocabulary)?,
        other => {
            return Err(gguf.error(format!(
                "tokenizer `tokenizer.ggml.model = {other}` is not supported (gpt2: byte-level BPE, llama: \
                 SentencePiece BPE); give the model's tokenizer.json instead"
            )))
        }
    };
    // llama.cpp adds BOS to a SentencePiece vocabulary whose file does not say otherwise, and transformers follows.
    let add_bos_default = model == "llama";
    Ok((tokenizer, tokenizer_config(gguf, &vocabulary.tokens, add_bos_default)?))
}

/// SentencePiece BPE (`llama`: Llama 2, TinyLlama, Mistral) as transformers' `LlamaTokenizer` builds it from the
/// same metadata: `▁` for spaces (prepended to the text), byte fallback (`<0x0A>`), merges from the file or, as
/// llama.cpp writes none, recovered from the pieces' scores exactly as transformers' `generate_merges` does.
fn sentencepiece(gguf: &Gguf, v: &Vocabulary) -> Result<Value, GgufError> {
    let scores: Vec<f64> = match gguf.metadata.get("tokenizer.ggml.scores").and_then(MetaValue::as_array) {
        Some(items) => items.iter().map(|s| s.as_f64().unwrap_or(0.0)).collect(),
        None => {
            return Err(
                gguf.error("metadata `tokenizer.ggml.scores` is missing (a SentencePiece vocabulary needs it)".into())
            )
        }
    };
    if scores.len() != v.tokens.len() {
        return Err(gguf.error(format!("metadata: {} scores for {} tokens", scores.len(), v.tokens.len())));
    }
    // A piece listed twice keeps its last id, as a Python dict built from the list does in transformers.
    let ids: std::collections::HashMap<&str, usize> = v.tokens.iter().enumerate().map(|(id, &t)| (t, id)).collect();
    let merges: Vec<Value> = match gguf.metadata.get("tokenizer.ggml.merges") {
        Some(_) => strings(gguf, "tokenizer.ggml.merges")?
            .into_iter()
            .filter_map(|m| m.split_once(' ').map(|(a, b)| json!([a, b])))
            .collect(),
        None => generate_merges(&v.tokens, &scores, &ids).into_iter().map(|(a, b)| json!([a, b])).collect(),
    };
    let mut vocab = Map::with_capacity(v.tokens.len());
    for (id, token) in v.tokens.iter().enumerate() {
        vocab.insert(token.to_string(), json!(id));
    }
    // Unknown and control pieces (`<unk>`, `<s>`, `</s>`) are special; user-defined ones are matched whole.
    let added: Vec<Value> = v
        .tokens
        .iter()
        .zip(&v.types)
        .enumerate()
        .filter(|(_, (_, &ty))| ty == UNKNOWN || ty == CONTROL || ty == USER_DEFINED)
        .map(|(id, (t, &ty))| added_token(id, t, ty != USER_DEFINED))
        .collect();
    let prefix = !matches!(gguf.metadata.get("tokenizer.ggml.add_space_prefix"), Some(MetaValue::Bool(false)));
    let unk = gguf.metadata.get("tokenizer.ggml.unknown_token_id").and_then(MetaValue::as_u64);
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": if prefix { "first" } else { "never" },
                          "split": false},
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": if prefix { 1 } else { 0 }, "stop": 0},
        ]},
        "model": {
            "type": "BPE", "dropout": null,
            "unk_token": unk.and_then(|id| v.tokens.get(id as usize).map(|t| t.to_string())),
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
            "ignore_merges": false, "vocab": vocab, "merges": merges,
        },
    }))
}

/// BPE merges implied by a scored vocabulary (transformers' `generate_merges(vocab, scores)`): every split of a
/// piece into two pieces of the vocabulary, best-scored merged piece first, ties by the lengths of the two halves
/// (longer first), then in vocabulary order.
fn generate_merges<'a>(
    tokens: &[&'a str],
    scores: &[f64],
    ids: &std::collections::HashMap<&str, usize>,
) -> Vec<(&'a str, &'a str)> {
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for &piece in tokens {
        // A piece listed twice counts once, in its first place, with its last score (a Python dict built from
        // pairs): its last id, which `ids` holds.
        if !seen.insert(piece) {
            continue;
        }
        let score = scores[ids[piece]];
        let mut local: Vec<(&str, &str, f64)> = piece
            .char_indices()
            .skip(1)
            .map(|(i, _)| (&piece[..i], &piece[i..]))
            .filter(|(l, r)| ids.contains_key(l) && ids.contains_key(r))
            .map(|(l, r)| (l, r, score))
            .collect();
        local.sort_by_key(|(l, r, _)| (ids[l], ids[r]));
        merges.extend(local);
    }
    // Stable and descending, as Python's `sorted(..., reverse=True)`.
    merges.sort_by(|a, b| {
        let key = |m: &(&str, &str, f64)| (m.2, m.0.chars().count(), m.1.chars().count());
        let (ka, kb) = (key(a), key(b));
        kb.0.total_cmp(&ka.0).then(kb.1.cmp(&ka.1)).then(kb.2.cmp(&ka.2))
    });
    merges.into_iter().map(|(l, r, _)| (l, r)).collect()
}

/// Byte-level BPE (`gpt2`) from the vocabulary, the merges and the pre-split the file names.
fn byte_level(gguf: &Gguf, v: &Vocabulary) -> Result<Value, GgufError> {
    let (tokens, types) = (&v.tokens, &v.types);
    let merges = strings(gguf, "tokenizer.ggml.merges")?;
    let pre = gguf.metadata.get("tokenizer.ggml.pre").and_then(MetaValue::as_str).unwrap_or("default");
    let pre_tokenizer = pre_tokenizer(pre).ok_or_else(|| {
        gguf.error(format!("tokenizer pre-split `tokenizer.ggml.pre = {pre}` is not supported ({SUPPORTED_PRE})"))
    })?;

    // Tokens are spelled in the byte alphabet; one that is not (a file written by another converter) is respelled
    // from its UTF-8 bytes, as transformers does.
    let alphabet = byte_alphabet();
    let spelled = |t: &str| t.chars().all(|c| alphabet.contains(&c));
    let mut vocab = Map::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        let key =
            if spelled(token) { token.to_string() } else { token.bytes().map(|b| alphabet[b as usize]).collect() };
        vocab.insert(key, json!(id));
    }
    let mut pairs = Vec::with_capacity(merges.len());
    for (i, merge) in merges.iter().enumerate() {
        let (a, b) = merge.split_once(' ').ok_or_else(|| {
            gguf.error(format!("metadata `tokenizer.ggml.merges`[{i}] = {merge:?} is not two tokens"))
        })?;
        pairs.push(json!([a, b]));
    }
    // Control tokens (`<|im_start|>`) are matched whole and special; user-defined ones whole but not special. A
    // control token outside the byte alphabet is a mislabel of llama.cpp's converter and is left a normal token.
    let added: Vec<Value> = tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (t, &ty))| (ty == CONTROL && spelled(t)) || ty == USER_DEFINED)
        .map(|(id, (t, &ty))| added_token(id, t, ty == CONTROL))
        .collect();
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": pairs,
        },
    }))
}

/// `tokenizer_config.json`: the special tokens by name, whether to add BOS/EOS, the chat template, the context.
fn tokenizer_config(gguf: &Gguf, tokens: &[&str], add_bos_default: bool) -> Result<Value, GgufError> {
    let mut config = Map::new();
    for (name, key) in [
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
        ("unk_token", "tokenizer.ggml.unknown_token_id"),
        ("pad_token", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some(id) = gguf.metadata.get(key).and_then(MetaValue::as_u64) {
            let token = tokens.get(id as usize).ok_or_else(|| {
                gguf.error(format!("metadata `{key}` = {id} is past the vocabulary of {} tokens", tokens.len()))
            })?;
            config.insert(name.into(), json!(token));
        }
    }
    for (name, key, default) in [
        ("add_bos_token", "tokenizer.ggml.add_bos_token", add_bos_default),
        ("add_eos_token", "tokenizer.ggml.add_eos_token", false),
    ] {
        let flag = match gguf.metadata.get(key) {
            Some(MetaValue::Bool(b)) => *b,
            _ => default,
        };
        config.insert(name.into(), json!(flag));
    }
    if let Some(template) = gguf.metadata.get("tokenizer.chat_template").and_then(MetaValue::as_str) {
        config.insert("chat_template".into(), json!(template));
    }
    if let Some(n) = gguf.metadata.get("llama.context_length").and_then(MetaValue::as_u64) {
        config.insert("model_max_length".into(), json!(n));
    }
    config.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    config.insert("clean_up_tokenization_spaces".into(), json!(false));
    Ok(Value::Object(config))
}

/// llama.cpp's `tokenizer.ggml.pre` for a `tokenizer.json` pre-tokenizer, when it is one of those above.
fn pre_name(pre: &Value) -> Option<&'static str> {
    ["gpt2", "smollm", "llama-bpe", "qwen2"].into_iter().find(|name| {
        let ours = pre_tokenizer(name).expect("known names");
        // Compared on what decides the split: the sequence of types, digits, regexes, byte-level regex use.
        let shape = |v: &Value| -> Vec<String> {
            let steps = v["pretokenizers"].as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
            steps
                .iter()
                .map(|p| {
                    format!("{}|{}|{}|{}", p["type"], p["individual_digits"], p["pattern"]["Regex"], p["use_regex"])
                })
                .collect()
        };
        shape(&ours) == shape(pre)
    })
}

/// The `tokenizer.*` metadata of a byte-level BPE `tokenizer.json` (and its `tokenizer_config.json`, or `Null`): the
/// inverse of [`tokenizer_files`], so a model exported to GGUF carries the tokenizer llama.cpp needs.
pub fn metadata(tokenizer: &Value, config: &Value) -> Result<Vec<(String, MetaValue)>, String> {
    let model = &tokenizer["model"];
    let byte_level = tokenizer["decoder"]["type"] == "ByteLevel";
    if model["type"] != "BPE" || !byte_level {
        return Err(format!(
            "the tokenizer is {} (decoder {}), and only byte-level BPE tokenizers are written to GGUF",
            model["type"], tokenizer["decoder"]["type"]
        ));
    }
    let pre = pre_name(&tokenizer["pre_tokenizer"]).ok_or_else(|| {
        format!("its pre-tokenizer has no llama.cpp name ({SUPPORTED_PRE}): {}", tokenizer["pre_tokenizer"])
    })?;
    let mut tokens: Vec<Option<String>> = Vec::new();
    let mut place = |id: u64, token: &str| {
        let id = id as usize;
        if tokens.len() <= id {
            tokens.resize(id + 1, None);
        }
        tokens[id] = Some(token.to_string());
    };
    for (token, id) in model["vocab"].as_object().ok_or("tokenizer.json has no model.vocab")? {
        place(id.as_u64().ok_or_else(|| format!("vocab id of {token:?} is not an integer"))?, token);
    }
    let mut types: Vec<i32> = Vec::new();
    let added = tokenizer["added_tokens"].as_array().cloned().unwrap_or_default();
    for t in &added {
        let (Some(id), Some(content)) = (t["id"].as_u64(), t["content"].as_str()) else { continue };
        place(id, content);
    }
    types.resize(tokens.len(), 1);
    for t in &added {
        if let Some(id) = t["id"].as_u64() {
            types[id as usize] = if t["special"] == true { CONTROL as i32 } else { USER_DEFINED as i32 };
        }
    }
    if let Some(gap) = tokens.iter().position(Option::is_none) {
        return Err(format!("the vocabulary has no token with id {gap}"));
    }
    let merges: Vec<MetaValue> = model["merges"]
        .as_array()
        .ok_or("tokenizer.json has no model.merges")?
        .iter()
        .map(|m| match m {
            Value::String(s) => Ok(MetaValue::String(s.clone())),
            Value::Array(pair) if pair.len() == 2 => {
                Ok(MetaValue::String(format!("{} {}", pair[0].as_str().unwrap_or(""), pair[1].as_str().unwrap_or(""))))
            }
            other => Err(format!("merge {other} is neither \"a b\" nor [a, b]")),
        })
        .collect::<Result<_, _>>()?;
    let tokens: Vec<String> = tokens.into_iter().map(|t| t.expect("no gaps")).collect();
    let ids: std::collections::HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut m = vec![
        ("tokenizer.ggml.model".to_string(), MetaValue::String("gpt2".into())),
        ("tokenizer.ggml.pre".to_string(), MetaValue::String(pre.into())),
    ];
    for (name, key) in [
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
        ("unk_token", "tokenizer.ggml.unknown_token_id"),
        ("pad_token", "tokenizer.ggml.padding_token_id"),
    ] {
        let value = &config[name];
        if let Some(token) = value.as_str().or_else(|| value["content"].as_str()) {
            let id = ids.get(token).ok_or_else(|| format!("{name} {token:?} is not in the vocabulary"))?;
            m.push((key.to_string(), MetaValue::U32(*id as u32)));
        }
    }
    drop(ids);
    m.push((
        "tokenizer.ggml.tokens".to_string(),
        MetaValue::Array(tokens.into_iter().map(MetaValue::String).collect()),
    ));
    m.push((
        "tokenizer.ggml.token_type".to_string(),
        MetaValue::Array(types.into_iter().map(MetaValue::I32).collect()),
    ));
    m.push(("tokenizer.ggml.merges".to_string(), MetaValue::Array(merges)));
    for (name, key) in
        [("add_bos_token", "tokenizer.ggml.add_bos_token"), ("add_eos_token", "tokenizer.ggml.add_eos_token")]
    {
        m.push((key.to_string(), MetaValue::Bool(config[name] == true)));
    }
    if let Some(template) = config["chat_template"].as_str() {
        m.push(("tokenizer.chat_template".to_string(), MetaValue::String(template.to_string())));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_alphabet_is_gpt2s() {
        let a = byte_alphabet();
        assert_eq!((a[b' ' as usize], a[b'\n' as usize], a[b'A' as usize]), ('Ġ', 'Ċ', 'A'));
        assert_eq!((a[0], a[0xAD], a[0xFF]), ('Ā', 'Ń', 'ÿ'));
        let mut sorted = a.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 256, "one character per byte");
    }

    #[test]
    fn unknown_pre_splits_are_refused() {
        assert!(pre_tokenizer("smollm").is_some() && pre_tokenizer("qwen2").is_some());
        assert!(pre_tokenizer("chameleon").is_none());
    }
}
