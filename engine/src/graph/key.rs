//! Cache keys: a step's key hashes everything that can change its outputs.
//!
//! The key covers the step kind and its version, the format versions of the artifacts it writes, its canonical config
//! (after interpolation, defaults filled in), the keys of its inputs (so a change upstream reaches every descendant),
//! the bytes of every file it reads (named as the workflow writes them), its seed and the libtorch version. The
//! ingredients are kept beside the key, in the lockfile, so that `plan` can say which one changed.
//!
//! The engine's own version is deliberately not an ingredient: upgrading anbiq reruns only the kinds whose version
//! the upgrade bumped (see [`StepKind::version`](crate::steps::StepKind::version)).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::Dag;
use crate::steps::ArtifactKind;
use crate::workflow::Workflow;

/// The versions a key depends on besides the step's own declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEnv {
    /// Recorded in lockfiles; not an ingredient of any key.
    pub engine: String,
    /// Enters every key: another libtorch may compute other bits.
    pub libtorch: String,
    /// Enters every key: which CPU code paths compute ([`crate::nn::runtime::cpu_kernels::mode`]).
    pub cpu: String,
    /// Step kind → its version ([`StepKind::version`](crate::steps::StepKind::version)).
    pub step_versions: BTreeMap<String, u32>,
    /// Artifact kind → its format version ([`ArtifactKind::format_version`]).
    pub format_versions: BTreeMap<ArtifactKind, u32>,
}

impl KeyEnv {
    /// This build's versions.
    pub fn current() -> Self {
        KeyEnv {
            engine: env!("CARGO_PKG_VERSION").to_string(),
            libtorch: env!("ANBIQ_LIBTORCH_VERSION").to_string(),
            cpu: crate::nn::runtime::cpu_kernels::mode(),
            step_versions: crate::steps::registry().iter().map(|k| (k.name.to_string(), k.version)).collect(),
            format_versions: ArtifactKind::ALL.iter().map(|&a| (a, a.format_version())).collect(),
        }
    }
}

/// What a key is made of, in the form the lockfile keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyIngredients {
    pub kind: String,
    /// The kind's version (0 in lockfiles written before kinds had versions).
    #[serde(default)]
    pub version: u32,
    /// Format version of each kind of artifact the step writes, by artifact kind (`model`, `logits`, …).
    #[serde(default)]
    pub formats: BTreeMap<String, u32>,
    pub seed: u64,
    pub config: serde_json::Value,
    /// Config field (role) → `<input key>/<output name>`.
    pub inputs: BTreeMap<String, String>,
    /// File path as the workflow writes it → blake3 of its bytes (of every file under it, for a directory).
    pub files: BTreeMap<String, String>,
}

/// A step's key: 64 hex digits of blake3.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepKey(pub String);

impl StepKey {
    /// The first 12 digits, for humans.
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

impl fmt::Display for StepKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A step's seed: derived from the workflow seed and the step id, so steps draw independent streams and adding a
/// step elsewhere changes nothing.
pub fn step_seed(workflow_seed: u64, step_id: &str) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"anbiq-step-seed-v1\0");
    h.update(&workflow_seed.to_le_bytes());
    h.update(step_id.as_bytes());
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
}

/// Keys of every step, indexed like `wf.steps`.
pub fn compute_keys(wf: &Workflow, dag: &Dag, env: &KeyEnv) -> anyhow::Result<Vec<(StepKey, KeyIngredients)>> {
    let mut keys: Vec<Option<(StepKey, KeyIngredients)>> = vec![None; wf.steps.len()];
    for &i in dag.order() {
        let decl = &wf.steps[i];
        let mut inputs = BTreeMap::new();
        for input in decl.step.inputs() {
            let j = wf.step_index(&input.reference.step).context("references are checked at load")?;
            let output =
                wf.resolve_output(j, input.reference.output.as_deref()).context("outputs are checked at load")?;
            let (upstream, _) = keys[j].as_ref().context("topological order visits inputs first")?;
            inputs.insert(input.role, format!("{}/{}", upstream, output.name));
        }
        // `after` edges order steps without feeding them data; they still enter the key, since the user declared a
        // dependency the step may rely on (e.g. a file it writes).
        for (after, _) in &decl.after {
            let j = wf.step_index(after).context("references are checked at load")?;
            let (upstream, _) = keys[j].as_ref().context("topological order visits inputs first")?;
            inputs.insert(format!("after:{after}"), upstream.0.clone());
        }
        let mut files = BTreeMap::new();
        for file in decl.step.files() {
            let hash = hash_path(&file.path)
                .with_context(|| format!("step `{}`: reading {}", decl.id, file.path.display()))?;
            files.insert(file.written.display().to_string(), hash);
        }
        let version = *env.step_versions.get(decl.kind).context("every step kind has a version")?;
        let formats = decl
            .step
            .outputs()
            .iter()
            .map(|o| Ok((o.kind.name().to_string(), *env.format_versions.get(&o.kind).context("every format")?)))
            .collect::<anyhow::Result<_>>()?;
        let ingredients = KeyIngredients {
            kind: decl.kind.to_string(),
            version,
            formats,
            seed: step_seed(wf.seed, &decl.seed_id),
            config: decl.step.canonical_config(),
            inputs,
            files,
        };
        keys[i] = Some((ingredients.key(env), ingredients));
    }
    Ok(keys.into_iter().map(|k| k.expect("every step is in the order")).collect())
}

impl KeyIngredients {
    /// The key these ingredients make under `env` (its libtorch and CPU mode; the versions are ingredients).
    pub fn key(&self, env: &KeyEnv) -> StepKey {
        // serde_json writes struct fields in declaration order and BTreeMaps sorted: the encoding is canonical.
        let doc = serde_json::json!({ "v": 2, "libtorch": env.libtorch, "cpu": env.cpu, "step": self });
        StepKey(blake3::hash(doc.to_string().as_bytes()).to_hex().to_string())
    }
}

/// blake3 of a file, or of a directory's files (relative names and contents, sorted by name).
pub fn hash_path(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        return Ok(hash_file(path)?.to_hex().to_string());
    }
    Ok(hash_digests(&digest_dir(path)?))
}

/// blake3 of a file, read through a buffer rather than a memory map: hashing a model's weights after writing them
/// must not map them into the process (a mapped 538 MB file counts in its resident memory, doubling a model
/// import's measured peak).
fn hash_file(path: &Path) -> std::io::Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path)?)?; // it reads through its own buffer
    Ok(h.finalize())
}

/// One file's size and blake3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub bytes: u64,
    pub blake3: String,
}

/// Every file under `dir`, by relative path (with `/`), with its digest; in the order [`hash_digests`] hashes them.
pub fn digest_dir(dir: &Path) -> anyhow::Result<Vec<(String, FileDigest)>> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.sort();
    files
        .into_iter()
        .map(|rel| {
            let path = dir.join(&rel);
            let hash = hash_file(&path).with_context(|| format!("reading {}", path.display()))?;
            let bytes = std::fs::metadata(&path)?.len();
            Ok((rel.to_string_lossy().into_owned(), FileDigest { bytes, blake3: hash.to_hex().to_string() }))
        })
        .collect()
}

/// blake3 of a directory from its files' digests: relative names and contents, in [`digest_dir`]'s order.
pub fn hash_digests(files: &[(String, FileDigest)]) -> String {
    let mut h = blake3::Hasher::new();
    for (rel, digest) in files {
        let file_hash = blake3::Hash::from_hex(&digest.blake3).expect("digests hold blake3 hex");
        h.update(rel.as_bytes());
        h.update(b"\0");
        h.update(file_hash.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            out.push(path.strip_prefix(root).expect("under root").to_path_buf());
        }
    }
    Ok(())
}
