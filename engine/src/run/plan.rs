//! What a run will do: per step, cached or will run, and why (which field, input or file changed).

use std::collections::BTreeSet;

use serde::Serialize;

use super::json_diff::diff_json;
use super::lockfile::Lockfile;
use super::store::{Manifest, Store, Stored};
use crate::graph::{compute_keys, Dag, KeyEnv, KeyIngredients, StepKey};
use crate::workflow::Workflow;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", content = "reasons", rename_all = "snake_case")]
pub enum Status {
    /// Outputs for this key are in the store.
    Cached,
    /// Must run, for these reasons.
    Run(Vec<String>),
    /// Not needed for the `--only` target.
    NotSelected,
}

#[derive(Clone, Debug, Serialize)]
pub struct PlanEntry {
    /// Index into `Workflow::steps`.
    #[serde(skip)]
    pub index: usize,
    pub id: String,
    pub kind: String,
    pub key: StepKey,
    #[serde(skip)]
    pub ingredients: KeyIngredients,
    #[serde(flatten)]
    pub status: Status,
    /// For a `Cached` step, the manifest planning found whole, so the run does not read and check it again.
    #[serde(skip)]
    pub cached: Option<Manifest>,
}

/// Entries in topological order.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub entries: Vec<PlanEntry>,
}

#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Step ids to run even when cached.
    pub force: Vec<String>,
    /// Run only this step and what it needs.
    pub only: Option<String>,
}

impl Plan {
    pub fn to_run(&self) -> impl Iterator<Item = &PlanEntry> {
        self.entries.iter().filter(|e| matches!(e.status, Status::Run(_)))
    }

    pub fn entry(&self, index: usize) -> Option<&PlanEntry> {
        self.entries.iter().find(|e| e.index == index)
    }
}

pub fn plan(
    wf: &Workflow,
    dag: &Dag,
    store: &Store,
    previous: Option<&Lockfile>,
    env: &KeyEnv,
    options: &PlanOptions,
) -> anyhow::Result<Plan> {
    for id in options.force.iter().chain(options.only.iter()) {
        wf.require_step(id).map_err(anyhow::Error::msg)?;
    }
    let selected: Option<BTreeSet<usize>> =
        options.only.as_ref().map(|id| dag.ancestors_and_self(wf.step_index(id).expect("checked above")));
    let keys = compute_keys(wf, dag, env)?;
    let mut entries: Vec<PlanEntry> = Vec::with_capacity(wf.steps.len());
    for &i in dag.order() {
        let decl = &wf.steps[i];
        let (key, ingredients) = keys[i].clone();
        let mut cached = None;
        let status = if selected.as_ref().is_some_and(|s| !s.contains(&i)) {
            Status::NotSelected
        } else if options.force.contains(&decl.id) {
            Status::Run(vec!["forced with --force".into()])
        } else {
            match store.stored(&key) {
                Stored::Complete(manifest) => {
                    cached = Some(manifest);
                    Status::Cached
                }
                Stored::Damaged(_, damage) => {
                    Status::Run(vec![format!("its stored outputs are damaged ({damage}): running it again")])
                }
                Stored::Absent => match store.last_failure(&key) {
                    Some(error) => {
                        let first = error.lines().next().unwrap_or_default();
                        Status::Run(vec![format!("failed last time with these inputs: {first}")])
                    }
                    None => Status::Run(reasons(wf, i, &key, &ingredients, previous, env, &entries)),
                },
            }
        };
        entries.push(PlanEntry {
            index: i,
            id: decl.id.clone(),
            kind: decl.kind.to_string(),
            key,
            ingredients,
            status,
            cached,
        });
    }
    Ok(Plan { entries })
}

/// Why a step that is not in the store must run, by comparing with its entry in the previous lockfile.
fn reasons(
    wf: &Workflow,
    i: usize,
    key: &StepKey,
    now: &KeyIngredients,
    previous: Option<&Lockfile>,
    env: &KeyEnv,
    earlier: &[PlanEntry],
) -> Vec<String> {
    let id = &wf.steps[i].id;
    let Some(lock) = previous else { return vec!["never run (no lockfile)".into()] };
    let Some(before) = lock.step(id) else {
        return vec!["not in the lockfile (a new step, or one that has not completed yet)".into()];
    };
    if &before.key == key {
        return vec!["outputs missing from the store".into()];
    }
    let was = &before.ingredients;
    let mut why = Vec::new();
    if was.kind != now.kind {
        why.push(format!("kind changed: {} → {}", was.kind, now.kind));
    }
    if was.version != now.version {
        why.push(match was.version {
            0 => format!("recorded before step kinds had versions (now `{}` version {})", now.kind, now.version),
            v => format!("`{}` version changed: {v} → {} (its outputs change with this anbiq)", now.kind, now.version),
        });
    }
    for (format, version) in &now.formats {
        match was.formats.get(format) {
            Some(v) if v != version => why.push(format!("stored format of `{format}` changed: {v} → {version}")),
            _ => {}
        }
    }
    if !lock.cpu.is_empty() && lock.cpu != env.cpu {
        why.push(format!("CPU kernels changed: {} → {}", lock.cpu, env.cpu));
    }
    if lock.libtorch != env.libtorch {
        why.push(format!("libtorch version changed: {} → {}", lock.libtorch, env.libtorch));
    }
    if was.seed != now.seed {
        why.push("seed changed".into());
    }
    diff_json("config", "", &was.config, &now.config, &mut why);
    for (role, input) in &now.inputs {
        match was.inputs.get(role) {
            None => why.push(format!("new input `{role}`")),
            Some(old) if old != input => {
                let upstream =
                    wf.steps[i].step.inputs().into_iter().find(|x| &x.role == role).map(|x| x.reference.step);
                let rerun = upstream
                    .as_ref()
                    .and_then(|u| earlier.iter().find(|e| &e.id == u))
                    .is_some_and(|e| matches!(e.status, Status::Run(_)));
                match upstream {
                    Some(u) if rerun => why.push(format!("input `{role}` changed: upstream `{u}` will run")),
                    Some(u) => why.push(format!("input `{role}` changed (upstream `{u}`)")),
                    None => why.push(format!("input `{role}` changed")),
                }
            }
            Some(_) => {}
        }
    }
    for role in was.inputs.keys().filter(|r| !now.inputs.contains_key(*r)) {
        why.push(format!("input `{role}` removed"));
    }
    for (path, hash) in &now.files {
        match was.files.get(path) {
            Some(old) if old == hash => {}
            Some(_) => why.push(format!("file `{path}` changed")),
            None => why.push(format!("new file `{path}`")),
        }
    }
    if why.is_empty() {
        why.push("cache key changed".into());
    }
    why
}
