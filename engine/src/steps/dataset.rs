//! `kind: dataset` — loads samples from a source, splits them with a seeded permutation, normalises, stores each
//! split as its own output.
//!
//! ```yaml
//! digits: {kind: dataset, source: digits, split: {test: 0.2}}                  # outputs: train, test
//! mnist:  {kind: dataset, source: mnist, path: data/mnist, split: {val: 0.1}}  # outputs: train, val, test
//! table:  {kind: dataset, source: csv, path: iris.csv, label: last, split: {test: 0.3}}
//! text:   {kind: dataset, source: text, path: data/shakespeare.txt, tokenizer: char, context: 128,
//!          split: {val: 0.05, test: 0.05}}
//! tokens: {kind: dataset, source: text, path: data/plays, tokenizer: {model: teacher}, context: 256}
//! ```
//! `tokenizer` is `char` (the corpus' characters, the default), `byte`, `{model: STEP}` (the tokenizer an `import`
//! brought with the model) or `{file: tokenizer.json}` (with a `tokenizer_config.json` beside it, if any, for the
//! special tokens). A model's tokenizer reads the corpus as documents (`documents: files`, each file, the default,
//! or `paragraphs`, each blank-line separated block) and frames each with the model's BOS/EOS.
//! Whatever `split` does not claim stays in `train`. MNIST-format sources bring their own `test` split. Text is
//! split by position, not at random (see [`crate::data::text`]), into windows of `context` tokens; its vocabulary
//! travels in each output's `meta.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::registry::{parse_config, schema_of, ParseEnv, StepKind};
use super::StepRef;
use super::{canonical, ArtifactKind, FileInput, InputDecl, OutputDecl, Step, StepContext};
use crate::config::{Located, Node};
use crate::data::text::{Documents, Tokenizer};
use crate::data::tokenizer::TextTokenizer;
use crate::data::{self, csv::LabelColumn, normalize::Normalization, Dataset, Vocab};

pub const KIND: StepKind = StepKind {
    name: "dataset",
    version: 1,
    summary: "load, split and normalise a dataset",
    parse,
    schema: schema_of::<DatasetConfig>,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// 8×8 handwritten digits compiled into anbiq (1797 samples).
    Digits,
    /// A directory of MNIST-format IDX files (train-images-idx3-ubyte, …).
    Mnist,
    /// A CSV file of numeric features and a label column.
    Csv,
    /// A safetensors file with `x` and `y`.
    Tensors,
    /// UTF-8 text (a file, or a directory of files) for language models.
    Text,
    /// One sentence per line, for encoders: each row one sentence, padded.
    Sentences,
    /// A sentence and its paraphrase per line, tab-separated (for `evaluate`'s paraphrase retrieval): each row
    /// `[2, context]`.
    Pairs,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Where the samples come from: `digits` (built in), `mnist`, `csv`, `tensors` (safetensors), `text`, `sentences` or `pairs`.
    pub source: Source,
    /// File or directory for `mnist`, `csv`, `tensors` (relative to the workflow file).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Fractions of the source's training data for each named split, e.g. `{val: 0.1, test: 0.2}`.
    #[serde(default)]
    pub split: BTreeMap<String, f64>,
    /// Keep class proportions in every split.
    #[serde(default = "default_true")]
    pub stratify: bool,
    /// Fitted on `train`, applied to every split.
    #[serde(default = "default_normalization")]
    pub normalize: Normalization,
    /// CSV only: which column holds the label (`last`, `first`, a column index or a header name).
    #[serde(default)]
    pub label: Option<LabelColumn>,
    /// Use only the first N samples of each source split (quick experiments, tests).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Text only: `char` (the corpus' characters, default), `byte`, `{model: STEP}` or `{file: tokenizer.json}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<TokenizerChoice>,
    /// Text with a model's tokenizer: what a document is (each file, or each blank-line separated paragraph).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<Documents>,
    /// Text only: tokens per window (the model's context length); sentences: the most tokens of one sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<i64>,
    /// Sentences only: cut sentences longer than `context` (counted in the `truncated` metric) instead of refusing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncate: bool,
    /// Classifiers: the number of classes (`classes: 10`, for a split that lacks one) or their names in index order
    /// (`classes: [cat, dog]`); labels are checked against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<data::DeclaredClasses>,
}

/// Where a text dataset's tokens come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenizerChoice {
    Char,
    Byte,
    /// The tokenizer of a model (an `import` step's output).
    Model(StepRef),
    /// A `tokenizer.json` file, relative to the workflow file.
    File(PathBuf),
}

fn default_true() -> bool {
    true
}

fn default_normalization() -> Normalization {
    Normalization::None
}

#[derive(Debug)]
pub struct DatasetStep {
    config: DatasetConfig,
    /// `path`, as written and resolved against the workflow's directory.
    file: Option<FileInput>,
    /// `tokenizer: {file: ..}` (and its `tokenizer_config.json`), likewise.
    tokenizer_files: Vec<FileInput>,
}

fn parse(node: &Node, env: &ParseEnv) -> Result<Box<dyn Step>, Vec<Located>> {
    let config: DatasetConfig = parse_config(node)?;
    let at = |field: &str| node.get(field).map(|n| n.span).unwrap_or(node.span);
    let mut errors = Vec::new();
    let needs_path = config.source != Source::Digits;
    match (&config.path, needs_path) {
        (None, true) => errors.push(Located {
            span: node.span,
            message: format!("source `{:?}` needs a `path`", config.source).to_lowercase(),
        }),
        (Some(_), false) => {
            errors.push(Located { span: at("path"), message: "source `digits` is built in and takes no `path`".into() })
        }
        _ => {}
    }
    if config.label.is_some() && config.source != Source::Csv {
        errors.push(Located { span: at("label"), message: "`label` applies to `source: csv` only".into() });
    }
    let mut total = 0.0;
    for (name, fraction) in &config.split {
        if !super::is_identifier(name) || name == "train" {
            errors.push(Located {
                span: at("split"),
                message: format!(
                    "split name `{name}` is not allowed (`train` is what remains; names use letters, digits, `_`, `-`)"
                ),
            });
        }
        if !(*fraction > 0.0 && *fraction < 1.0) {
            errors.push(Located {
                span: at("split"),
                message: format!("split `{name}`: fraction must be in (0, 1), got {fraction}"),
            });
        }
        total += fraction;
    }
    if total >= 1.0 {
        errors.push(Located {
            span: at("split"),
            message: format!("split fractions sum to {total}, leaving nothing for `train`"),
        });
    }
    if config.source == Source::Mnist && config.split.contains_key("test") {
        errors.push(Located {
            span: at("split"),
            message: "MNIST-format sources have their own `test` split; name this one differently (e.g. `val`)".into(),
        });
    }
    let sentences = matches!(config.source, Source::Sentences | Source::Pairs);
    let text = config.source == Source::Text || sentences;
    if text && !matches!(config.context, Some(c) if c > 0) {
        errors.push(Located {
            span: at("context"),
            message: format!("source `{}` needs `context`, a positive number of tokens", source_name(config.source)),
        });
    }
    for (field, given) in [
        ("context", config.context.is_some()),
        ("tokenizer", config.tokenizer.is_some()),
        ("documents", config.documents.is_some()),
    ] {
        if given && !text {
            errors.push(Located {
                span: at(field),
                message: format!("`{field}` applies to `source: text` and `sentences` only"),
            });
        }
    }
    let pretrained = matches!(config.tokenizer, Some(TokenizerChoice::Model(_) | TokenizerChoice::File(_)));
    if config.source == Source::Text && config.documents.is_some() && !pretrained {
        errors.push(Located {
            span: at("documents"),
            message: "`documents` goes with a model's tokenizer (`tokenizer: {model: STEP}` or `{file: ..}`)".into(),
        });
    }
    if sentences && !pretrained {
        errors.push(Located {
            span: at("tokenizer"),
            message: format!(
                "source `{}` needs a model's tokenizer (`tokenizer: {{model: STEP}}` or `{{file: ..}}`)",
                source_name(config.source)
            ),
        });
    }
    if sentences && config.documents.is_some() {
        errors.push(Located { span: at("documents"), message: "`documents` applies to `source: text`".into() });
    }
    if config.truncate && !sentences {
        errors.push(Located {
            span: at("truncate"),
            message: "`truncate` applies to `source: sentences` and `pairs` only".into(),
        });
    }
    if text && config.normalize != Normalization::None {
        errors.push(Located { span: at("normalize"), message: "text (token ids) cannot be normalised".into() });
    }
    if let Some(classes) = &config.classes {
        if text {
            errors.push(Located {
                span: at("classes"),
                message: "`classes` applies to labelled samples, not text (its classes are the tokens)".into(),
            });
        } else if let Some(problem) = classes.problem() {
            errors.push(Located { span: at("classes"), message: format!("`classes` {problem}") });
        }
    }
    if config.limit == Some(0) {
        errors.push(Located { span: at("limit"), message: "`limit` must be positive".into() });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let file = config.path.as_ref().map(|p| FileInput::new(p, env));
    if let Some(f) = file.as_ref().filter(|f| f.path.is_dir() && matches!(config.source, Source::Csv | Source::Tensors))
    {
        let what = source_name(config.source);
        return Err(vec![Located {
            span: at("path"),
            message: format!("`{}` is a directory; source `{what}` reads one file", f.written.display()),
        }]);
    }
    let mut tokenizer_files = Vec::new();
    if let Some(TokenizerChoice::File(written)) = &config.tokenizer {
        let json = FileInput::new(written, env);
        let beside = written.with_file_name(data::tokenizer::CONFIG_FILE);
        let config_file = FileInput::new(&beside, env);
        tokenizer_files.push(json);
        if config_file.path.is_file() {
            tokenizer_files.push(config_file);
        }
    }
    Ok(Box::new(DatasetStep { config, file, tokenizer_files }))
}

impl Step for DatasetStep {
    fn outputs(&self) -> Vec<OutputDecl> {
        let mut outputs = vec![OutputDecl::new("train", ArtifactKind::Dataset)];
        outputs.extend(self.config.split.keys().map(|k| OutputDecl::new(k.clone(), ArtifactKind::Dataset)));
        if self.config.source == Source::Mnist {
            outputs.push(OutputDecl::new("test", ArtifactKind::Dataset));
        }
        outputs
    }

    fn inputs(&self) -> Vec<InputDecl> {
        match &self.config.tokenizer {
            Some(TokenizerChoice::Model(model)) => vec![InputDecl::new("tokenizer", model, &[ArtifactKind::Model])],
            _ => Vec::new(),
        }
    }

    fn files(&self) -> Vec<FileInput> {
        self.file.iter().chain(&self.tokenizer_files).cloned().collect()
    }

    fn known_classes(&self, _output: &str, _input: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        match (&self.config.classes, self.config.source) {
            (Some(declared), _) => Some(declared.count()),
            (None, Source::Digits) => Some(data::digits::CLASSES),
            _ => None,
        }
    }

    fn canonical_config(&self) -> serde_json::Value {
        canonical(&self.config)
    }

    fn run(&self, ctx: &mut StepContext) -> anyhow::Result<()> {
        match self.config.source {
            Source::Text => return self.run_text(ctx),
            Source::Sentences | Source::Pairs => return self.run_sentences(ctx),
            _ => {}
        }
        let (main, official_test) = self.load()?;
        let main = limit(main, self.config.limit);
        let parts: Vec<(String, f64)> = self.config.split.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let stratify = self.config.stratify.then(|| main.y.shallow_clone());
        let mut splits = split(main, &parts, ctx.seed, stratify.as_ref())?;
        if let Some(test) = official_test {
            splits.push(("test".into(), limit(test, self.config.limit)));
        }
        let train = &splits.iter().find(|(n, _)| n == "train").context("the split always has a train part")?.1;
        if train.is_empty() {
            bail!("the `train` split is empty");
        }
        let stats = data::normalize::fit(train, self.config.normalize)?;
        for (name, ds) in &mut splits {
            data::normalize::apply(ds, &stats)?;
            crate::artifact::dataset::write_dataset(&ctx.output_dir(name)?, ds)?;
            ctx.record_metric(&format!("{name}_samples"), ds.len());
        }
        Ok(())
    }
}

impl DatasetStep {
    /// The source's training data, and its official test data when it has one.
    fn load(&self) -> anyhow::Result<(Dataset, Option<Dataset>)> {
        let path = || self.file.as_ref().map(|f| f.path.clone()).context("path is checked at parse time");
        Ok(match self.config.source {
            Source::Digits => {
                let mut digits = data::digits::load();
                if let Some(declared) = &self.config.classes {
                    let ids = Vec::<i64>::try_from(&digits.y)?;
                    let place = |i: usize| format!("digits: sample {i}");
                    digits.meta.classes = data::classes::of_indices(&ids, Some(declared), place, "digits")?;
                    digits.meta.class_names = declared.names().map(<[String]>::to_vec);
                }
                (digits, None)
            }
            Source::Mnist => {
                let (train, test) = data::mnist::load_both(&path()?, self.config.classes.as_ref())?;
                (train, Some(test))
            }
            Source::Csv => {
                let label = self.config.label.clone().unwrap_or(LabelColumn::Last);
                let classes = self.config.classes.clone();
                let options = data::csv::CsvOptions { label, header: None, delimiter: b',', classes };
                (data::csv::load(&path()?, &options)?, None)
            }
            Source::Tensors => (data::tensors::load(&path()?, self.config.classes.as_ref())?, None),
            Source::Text | Source::Sentences | Source::Pairs => {
                bail!("text is loaded by run_text, sentences by run_sentences")
            }
        })
    }

    /// Text: tokenise, split by position, cut into windows; no shuffling and no normalisation.
    fn run_text(&self, ctx: &mut StepContext) -> anyhow::Result<()> {
        let path = self.file.as_ref().map(|f| f.path.clone()).context("path is checked at parse time")?;
        let parts: Vec<(String, f64)> = self.config.split.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let context = self.config.context.context("context is checked at parse time")?;
        let source = format!("text:{}", path.file_name().unwrap_or_default().to_string_lossy());
        let (vocab, ids) = self.tokenize(ctx, &path)?;
        for (name, ds) in data::text::windows(&ids, &vocab, context, &parts, &source)? {
            let ds = limit(ds, self.config.limit);
            if name == "train" && ds.is_empty() {
                bail!("the `train` split has no window of {} tokens", context + 1);
            }
            crate::artifact::dataset::write_dataset(&ctx.output_dir(&name)?, &ds)?;
            ctx.record_metric(&format!("{name}_samples"), ds.len());
            ctx.record_metric(&format!("{name}_tokens"), ds.x.numel());
            ctx.record_metric("vocab", ds.meta.classes);
        }
        Ok(())
    }
}

impl DatasetStep {
    /// The vocabulary and the token stream of the corpus at `path`.
    fn tokenize(&self, ctx: &StepContext, path: &std::path::Path) -> anyhow::Result<(Vocab, Vec<i64>)> {
        if !matches!(self.config.tokenizer, Some(TokenizerChoice::Model(_) | TokenizerChoice::File(_))) {
            let kind =
                if self.config.tokenizer == Some(TokenizerChoice::Byte) { Tokenizer::Byte } else { Tokenizer::Char };
            return Ok(data::text::tokenize(&data::text::read_corpus(path)?, kind)?);
        }
        let (tokenizer, model_classes) = self.pretrained_tokenizer(ctx)?;
        // The data's classes are the model's outputs, which may be more than the tokenizer's tokens.
        let size = model_classes.unwrap_or(tokenizer.size());
        anyhow::ensure!(
            size >= tokenizer.size(),
            "field `tokenizer.model`: the model outputs {size} classes, fewer than its tokenizer's {} tokens",
            tokenizer.size()
        );
        let documents = data::text::read_documents(path, self.config.documents.unwrap_or_default())?;
        let ids = data::text::tokenize_documents(&documents, &tokenizer)?;
        Ok((Vocab::Tokenizer { size, tokenizer: Box::new(tokenizer), sentences: false }, ids))
    }

    /// The tokenizer of `tokenizer: {model: ..}` or `{file: ..}`, and the model's output size for the first.
    fn pretrained_tokenizer(&self, ctx: &StepContext) -> anyhow::Result<(TextTokenizer, Option<i64>)> {
        if let Some(TokenizerChoice::Model(_)) = &self.config.tokenizer {
            let input = ctx.input("tokenizer")?;
            if !input.dir.join(data::tokenizer::TOKENIZER_FILE).is_file() {
                bail!(
                    "field `tokenizer.model`: `{}` has no tokenizer (an import brings the one its file or directory \
                     has; else give `tokenizer: {{file: tokenizer.json}}`)",
                    input.label
                );
            }
            let tokenizer = TextTokenizer::from_dir(&input.dir).context("field `tokenizer.model`")?;
            let spec = crate::artifact::model::ModelArtifact::spec(&input.dir)?;
            return Ok((tokenizer, Some(spec.classes)));
        }
        let json = &self.tokenizer_files.first().context("tokenizer files are set at parse time")?.path;
        let config = self.tokenizer_files.get(1).map(|f| f.path.as_path());
        Ok((TextTokenizer::from_files(json, config).context("field `tokenizer.file`")?, None))
    }

    /// Sentences (or pairs of them): one row each, padded to `context`, split at random (seeded) like any sample set.
    fn run_sentences(&self, ctx: &mut StepContext) -> anyhow::Result<()> {
        let path = self.file.as_ref().map(|f| f.path.clone()).context("path is checked at parse time")?;
        let context = self.config.context.context("context is checked at parse time")?;
        let (tokenizer, _) = self.pretrained_tokenizer(ctx)?;
        let pairs = self.config.source == Source::Pairs;
        let read = if pairs { data::text::sentence_pairs } else { data::text::sentences };
        let (ids, count, cut) = read(&path, &tokenizer, context, self.config.truncate)?;
        let sample_shape = if pairs { vec![2, context] } else { vec![context] };
        let x = tch::Tensor::from_slice(&ids).view([&[count as i64][..], &sample_shape].concat().as_slice());
        let meta = data::DatasetMeta {
            sample_shape,
            classes: tokenizer.size(),
            class_names: None,
            source: format!(
                "{}:{}",
                source_name(self.config.source),
                path.file_name().unwrap_or_default().to_string_lossy()
            ),
            vocab: Some(Vocab::Tokenizer { size: tokenizer.size(), tokenizer: Box::new(tokenizer), sentences: true }),
        };
        let all = Dataset::new(x.shallow_clone(), x, meta)?;
        let all = limit(all, self.config.limit);
        let parts: Vec<(String, f64)> = self.config.split.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let splits = split(all, &parts, ctx.seed, None)?;
        for (name, ds) in &splits {
            crate::artifact::dataset::write_dataset(&ctx.output_dir(name)?, ds)?;
            ctx.record_metric(&format!("{name}_samples"), ds.len());
        }
        if cut > 0 {
            tracing::warn!(
                "{cut} of {count} sentences were longer than {context} tokens and were cut (`truncate: true`)"
            );
        }
        ctx.record_metric("truncated", cut);
        Ok(())
    }
}

/// `data` split at random (seeded) into `train` and `parts`; all of it `train` when there are no parts.
fn split(
    data: Dataset,
    parts: &[(String, f64)],
    seed: u64,
    stratify: Option<&tch::Tensor>,
) -> anyhow::Result<Vec<(String, Dataset)>> {
    if parts.is_empty() {
        return Ok(vec![("train".to_string(), data)]);
    }
    Ok(data::split::split_indices(data.len(), parts, seed, stratify)?
        .into_iter()
        .map(|(name, idx)| (name, data.select(&idx)))
        .collect())
}

fn source_name(source: Source) -> String {
    serde_json::to_value(source).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

fn limit(ds: Dataset, n: Option<usize>) -> Dataset {
    match n {
        Some(n) if n < ds.len() => ds.select(&tch::Tensor::arange(n as i64, (tch::Kind::Int64, tch::Device::Cpu))),
        _ => ds,
    }
}
