//! A store's roots: for every workflow file and parameter set run against the store, the lockfile of its last run
//! there (`roots/<hash>.json`).
//!
//! They make a store's provenance its own. The lockfile beside the workflow is the committed record of the last
//! run, whatever store and `--set` it used; a root is the record of the last run *in this store with these
//! parameters*. So `gc` keeps exactly what this store's runs reference (never what a run against another store wrote
//! into the shared lockfile), and a run with `--only` completes its own earlier record, not another store's.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::lockfile::Lockfile;
use super::store::{write_atomic_if_changed, Store};
use crate::graph::StepKey;
use crate::workflow::Workflow;

/// One root: which workflow, and what its last run here recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Root {
    /// The workflow file, absolute.
    pub workflow: PathBuf,
    pub lock: Lockfile,
    /// Keys the run set out to compute and did not complete (failed, interrupted, or still running): `gc` keeps
    /// their checkpoints and shards, so that the next run resumes them.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub pending: BTreeSet<StepKey>,
}

/// The workflow's parameters as a lockfile records them: names → values after `--set`.
pub fn params_of(wf: &Workflow) -> BTreeMap<String, serde_json::Value> {
    wf.params.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()
}

/// The workflow file, absolute (as roots and Slurm records name it).
fn absolute_workflow(wf: &Workflow) -> PathBuf {
    super::absolute_path(&wf.path)
}

/// `roots/<16 hex>.json`, one per absolute workflow path and parameter values: two spellings of one file, or `--set`
/// to a parameter's default, are one root.
fn root_path(store: &Store, wf: &Workflow) -> PathBuf {
    let mut h = blake3::Hasher::new();
    h.update(absolute_workflow(wf).to_string_lossy().as_bytes());
    h.update(b"\0");
    h.update(serde_json::to_string(&params_of(wf)).expect("JSON values serialise").as_bytes());
    store.roots_dir().join(format!("{}.json", &h.finalize().to_hex()[..16]))
}

/// The lockfile of this workflow's (with these parameters) last run in the store.
pub fn read(store: &Store, wf: &Workflow) -> anyhow::Result<Option<Lockfile>> {
    let path = root_path(store, wf);
    match fs::read(&path) {
        Ok(bytes) => {
            let root: Root =
                serde_json::from_slice(&bytes).with_context(|| format!("{}: not a store root", path.display()))?;
            Ok(Some(root.lock))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Records a run's lockfile, and the keys it has yet to complete, as the workflow's root in the store (written
/// atomically; unchanged, nothing is written).
pub fn write(store: &Store, wf: &Workflow, lock: &Lockfile, pending: BTreeSet<StepKey>) -> anyhow::Result<()> {
    let path = root_path(store, wf);
    let root = Root { workflow: absolute_workflow(wf), lock: lock.clone(), pending };
    write_atomic_if_changed(&path, &serde_json::to_vec_pretty(&root)?)
}

/// Every root whose workflow file still exists; roots of deleted workflows are removed (they protect nothing any
/// more). Roots of older stores (`<hash>.path`, naming a lockfile) are read as the lockfile they name.
pub fn all(store: &Store) -> anyhow::Result<Vec<Root>> {
    let dir = store.roots_dir();
    let mut roots = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let legacy = path.extension().is_some_and(|e| e == "path");
        let root = if legacy {
            let lockfile = PathBuf::from(fs::read_to_string(&path)?.trim());
            Lockfile::read(&lockfile)?.map(|lock| Root {
                workflow: lockfile.with_extension("yaml"),
                lock,
                pending: BTreeSet::new(),
            })
        } else if path.extension().is_some_and(|e| e == "json") {
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            Some(serde_json::from_slice(&bytes).with_context(|| format!("{}: not a store root", path.display()))?)
        } else {
            continue; // a temp file of an interrupted write
        };
        match root {
            Some(root) if legacy || root.workflow.exists() => roots.push(root),
            _ => fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?,
        }
    }
    roots.sort_by(|a, b| a.workflow.cmp(&b.workflow));
    Ok(roots)
}
