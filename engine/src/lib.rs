//! anbiq — a reproducible workflow engine for knowledge distillation.
//!
//! A workflow is a YAML file describing a DAG of steps (datasets, teacher training, teacher inference, filtering,
//! distillation, evaluation). The crate is organised one room per concern, with dependencies pointing one way:
//!
//! - [`workflow`]: read a file, interpolate parameters, parse each step through the step registry, check references;
//! - [`graph`]: the DAG, cycles, cache keys, drawings;
//! - [`run`]: plan against the store, execute in parallel, write the lockfile;
//! - [`steps`]: one file per step kind behind the [`steps::Step`] trait;
//! - [`artifact`]: the stored formats steps exchange (datasets, views, models, logits);
//! - [`loss`]: distillation losses behind one trait (built in, and WebAssembly plugins);
//! - [`plugin`]: the sandboxed WebAssembly host those plugins run in (wasmtime; `plugins/ABI.md`);
//! - [`nn`], [`data`]: models, training loop and datasets on libtorch;
//! - [`config`]: the spanned YAML tree and located errors everything above reports with;
//! - [`cli`]: the `anbiq` command line.
//!
//! Running a workflow from Rust:
//! ```no_run
//! use anbiq::run::{run, RunOptions};
//! let wf = anbiq::workflow::load("workflows/quickstart.yaml".as_ref(), &[]).expect("valid workflow");
//! let report = run(&wf, &RunOptions::default()).expect("run");
//! assert_eq!(report.failures().count(), 0);
//! ```

pub mod artifact;
pub mod cli;
pub mod config;
pub mod data;
pub(crate) mod failpoint;
pub mod graph;
pub mod interrupt;
pub mod loss;
pub mod nn;
pub mod plugin;
pub mod report;
pub mod rng;
pub mod run;
pub mod steps;
pub mod workflow;
