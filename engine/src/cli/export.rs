//! `anbiq export WORKFLOW STEP OUT --format hf|gguf`: a model step's output as a Hugging Face directory, or as a
//! GGUF file for llama.cpp.

use super::args::{ExportArgs, ExportFormat, ExportQuant};
use super::{load, CliError, EXIT_OK};
use crate::artifact::model::{ModelArtifact, WEIGHTS_FILE};
use crate::graph::{compute_keys, Dag, KeyEnv};
use crate::nn::weights::export;
use crate::nn::ArchConfig;
use crate::run::Store;
use crate::steps::ArtifactKind;

pub fn export(args: ExportArgs) -> Result<i32, CliError> {
    let wf = load(&args.workflow.workflow, &args.workflow.overrides)?;
    let index = wf.require_step(&args.step).map_err(CliError::Usage)?;
    let Some(output) = wf.steps[index].step.outputs().into_iter().find(|o| o.kind == ArtifactKind::Model) else {
        return Err(CliError::Usage(format!("step `{}` has no model output to export", args.step)));
    };
    let dag = Dag::build(&wf)?;
    let store = Store::open(&args.workflow.store)?;
    let key = compute_keys(&wf, &dag, &KeyEnv::current())?.swap_remove(index).0;
    if store.complete(&key).is_none() {
        return Err(anyhow::anyhow!(
            "step `{}` has not run with these parameters against the store {} (`anbiq run {}` computes it)",
            args.step,
            store.root().display(),
            wf.path.display()
        )
        .into());
    }
    let dir = store.step_dir(&key).join(&output.name);
    let spec = ModelArtifact::spec(&dir)?;
    if args.quant.is_some() && args.format != ExportFormat::Gguf {
        return Err(CliError::Usage("--quant applies to --format gguf".into()));
    }
    let written = match (args.format, &spec.arch) {
        (ExportFormat::Gguf, Some(arch @ ArchConfig::Llama(_))) => {
            let quant = match args.quant.unwrap_or(ExportQuant::F16) {
                ExportQuant::F16 => export::GgufQuant::F16,
                ExportQuant::Q8_0 => export::GgufQuant::Q8_0,
            };
            export::gguf(arch, spec.classes, &dir.join(WEIGHTS_FILE), &dir, &args.out_dir, quant)?
        }
        (ExportFormat::Gguf, arch) => {
            let what = arch.as_ref().map_or("a TorchScript module".to_string(), |a| format!("a `{}` model", a.name()));
            return Err(
                anyhow::anyhow!("--format gguf exports `llama` models; step `{}` holds {what}", args.step).into()
            );
        }
        (ExportFormat::Hf, Some(arch @ (ArchConfig::Llama(_) | ArchConfig::Bert(_)))) => {
            export::hf(arch, spec.classes, &dir.join(WEIGHTS_FILE), &dir, &args.out_dir)?
        }
        (ExportFormat::Hf, arch) => {
            let what = arch.as_ref().map_or("a TorchScript module".to_string(), |a| format!("a `{}` model", a.name()));
            return Err(anyhow::anyhow!(
                "--format hf exports `llama` and `bert` models; step `{}` holds {what}",
                args.step
            )
            .into());
        }
    };
    for path in &written {
        println!("{}", path.display());
    }
    Ok(EXIT_OK)
}
