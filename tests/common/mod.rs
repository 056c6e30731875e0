//! Helpers shared by the integration tests: a workflow file in a temporary directory, run on its own store.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anbiq::graph::{Dag, KeyEnv};
use anbiq::run::{self, Lockfile, Plan, PlanOptions, RunOptions, RunReport, Store};
use anbiq::steps::Progress;
use anbiq::workflow::{self, Override, Workflow};

/// `wf.yaml` in a temporary directory, with its store in `store/` and its lockfile `wf.lock` beside it.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// A fresh directory holding `yaml` as `wf.yaml`.
    pub fn new(yaml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wf.yaml"), yaml).unwrap();
        Project { dir }
    }

    /// Copies each file into the project directory under its own file name.
    pub fn with_files<P: AsRef<Path>>(self, files: impl IntoIterator<Item = P>) -> Project {
        for file in files {
            let file = file.as_ref();
            std::fs::copy(file, self.path(file.file_name().unwrap().to_str().unwrap())).unwrap();
        }
        self
    }

    /// A path inside the project directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `contents` to `name` in the project directory.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) {
        std::fs::write(self.path(name), contents).unwrap();
    }

    pub fn workflow_path(&self) -> PathBuf {
        self.path("wf.yaml")
    }

    pub fn store(&self) -> PathBuf {
        self.path("store")
    }

    /// Loads the workflow with `sets` (`key=value` overrides); the error as text.
    pub fn try_load(&self, sets: &[&str]) -> Result<Workflow, String> {
        let overrides: Vec<Override> = sets.iter().map(|s| s.parse().unwrap()).collect();
        workflow::load(&self.workflow_path(), &overrides).map_err(|e| e.to_string())
    }

    /// Loads the workflow with `sets`, panicking with the error.
    pub fn load(&self, sets: &[&str]) -> Workflow {
        self.try_load(sets).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs the workflow; failures are returned in the report, not asserted.
    pub fn run_report(&self, sets: &[&str]) -> RunReport {
        self.run_report_with(sets, PlanOptions::default())
    }

    /// Runs the workflow with `plan` options; failures are returned in the report, not asserted.
    pub fn run_report_with(&self, sets: &[&str], plan: PlanOptions) -> RunReport {
        let options = RunOptions {
            jobs: 2,
            overrides: sets.iter().map(|s| s.parse().unwrap()).collect(),
            rank_binary: Some(env!("CARGO_BIN_EXE_anbiq").into()),
            store: self.store(),
            lockfile: None,
            plan,
            progress: Progress::hidden(),
        };
        run::run(&self.load(sets), &options).unwrap()
    }

    /// Runs the workflow with `plan` options and asserts that no step failed.
    pub fn run_with(&self, sets: &[&str], plan: PlanOptions) -> RunReport {
        let report = self.run_report_with(sets, plan);
        let failures: Vec<_> = report.failures().collect();
        assert!(failures.is_empty(), "{failures:?}");
        report
    }

    /// Runs the workflow and asserts that no step failed.
    pub fn run(&self, sets: &[&str]) -> RunReport {
        self.run_with(sets, PlanOptions::default())
    }

    /// What a run with `sets` would do, against the store and the lockfile as they are now.
    pub fn plan(&self, sets: &[&str]) -> Plan {
        let wf = self.load(sets);
        let dag = Dag::build(&wf).unwrap();
        let store = Store::open(&self.store()).unwrap();
        let previous = Lockfile::read(&wf.lockfile_path()).unwrap();
        run::plan(&wf, &dag, &store, previous.as_ref(), &KeyEnv::current(), &PlanOptions::default()).unwrap()
    }

    /// The lockfile; panics when there is none yet.
    pub fn lock(&self) -> Lockfile {
        Lockfile::read(&self.path("wf.lock")).unwrap().expect("lockfile")
    }

    /// The store directory of a step's output, as the lockfile names it.
    pub fn output(&self, step: &str, output: &str) -> PathBuf {
        let lock = self.lock();
        let key = &lock.step(step).unwrap_or_else(|| panic!("no step `{step}` in the lockfile")).key;
        Store::open(&self.store()).unwrap().step_dir(key).join(output)
    }

    /// The bytes of every file a step wrote under `output`, by file name.
    pub fn output_files(&self, step: &str, output: &str) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(self.output(step, output))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().to_string(), std::fs::read(e.path()).unwrap())
            })
            .collect()
    }

    /// `metrics.json` of an evaluate step: model → metric → value.
    pub fn metrics(&self, step: &str) -> BTreeMap<String, BTreeMap<String, f64>> {
        let text = std::fs::read_to_string(self.output(step, "report").join("metrics.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// `anbiq export wf.yaml STEP OUT OPTIONS…` against the project's store; panics with its stderr on failure.
    pub fn export(&self, step: &str, out: &Path, options: &[&str]) {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_anbiq"))
            .args(["export", "wf.yaml", step])
            .arg(out)
            .args(["--store", self.store().to_str().unwrap()])
            .args(options)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(run.status.success(), "export: {}", String::from_utf8_lossy(&run.stderr));
    }

    /// Runs the workflow and returns `step: error` for each step that failed.
    pub fn failures(&self, sets: &[&str]) -> Vec<String> {
        self.run_report(sets)
            .failures()
            .map(|r| match &r.outcome {
                anbiq::run::Outcome::Failed { error } => format!("{}: {error}", r.id),
                _ => unreachable!("failures() yields failed steps"),
            })
            .collect()
    }
}

/// `yaml` with `from` replaced by `to`, after checking it occurs exactly `times` times: a shipped workflow cut down for a
/// test fails loudly when the workflow changes under it.
pub fn edit_workflow(yaml: String, from: &str, to: &str, times: usize) -> String {
    assert_eq!(yaml.matches(from).count(), times, "the workflow has `{from}` {times}×");
    yaml.replace(from, to)
}
