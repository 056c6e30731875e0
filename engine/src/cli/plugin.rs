//! `anbiq plugin check` (load, describe, run on random logits, gradient against finite differences, fuel and time
//! per call) and `anbiq plugin new` (a project that builds as-is, Rust with the SDK or C with the header).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use tch::{Kind, Tensor};

use super::args::{PluginCheckArgs, PluginLang, PluginNewArgs};
use super::{CliError, EXIT_FAILED, EXIT_OK};
use crate::plugin::{self, CallInput, Limits, Runner};

fn parse_params(pairs: &[String]) -> Result<BTreeMap<String, serde_json::Value>, CliError> {
    let mut params = BTreeMap::new();
    for pair in pairs.iter().filter(|p| !p.is_empty()) {
        let (k, v) =
            pair.split_once('=').ok_or_else(|| CliError::Usage(format!("--params takes NAME=VALUE, got `{pair}`")))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
        params.insert(k.trim().to_string(), value);
    }
    Ok(params)
}

pub fn check(args: PluginCheckArgs) -> Result<i32, CliError> {
    let params = parse_params(&args.params)?;
    let plugin = plugin::load(&args.file).map_err(anyhow::Error::from)?;
    let d = &plugin.describe;
    let bytes = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0);
    println!("plugin {}: {bytes} bytes, blake3 {}", plugin.label, &plugin.hash[..16]);
    println!("  kind {}, {:?} style, ABI version {}", d.kind, d.style, plugin.abi);
    if !d.description.is_empty() {
        println!("  {}", d.description);
    }
    let bound = d.bind(&params).map_err(|(name, m)| anyhow::anyhow!("parameter `{name}`: {m}"))?;
    for (p, (_, value)) in d.params.iter().zip(&bound) {
        let default = p.default.as_ref().map(|v| format!(", default {v}")).unwrap_or_else(|| ", required".into());
        let range = match (p.min, p.max) {
            (Some(a), Some(b)) => format!(", in [{a}, {b}]"),
            (Some(a), None) => format!(", ≥ {a}"),
            (None, Some(b)) => format!(", ≤ {b}"),
            (None, None) => String::new(),
        };
        println!("  param {} = {value} ({:?}{default}{range}) {}", p.name, p.ty, p.description);
    }

    // Small tensors: one libtorch thread is fastest and keeps the timing steady on a busy machine.
    tch::set_num_threads(1);
    let (b, c) = (args.batch.max(1), args.classes.max(2));
    tch::manual_seed(0);
    let student = Tensor::randn([b, c], (Kind::Float, tch::Device::Cpu)) * 2.0;
    let teacher = Tensor::randn([b, c], (Kind::Float, tch::Device::Cpu)) * 3.0;
    let labels = Tensor::randint(c, [b], (Kind::Int64, tch::Device::Cpu));
    // Value and gradient, against central differences along a few directions.
    let gradient = {
        let mut r = Runner::new(plugin.clone(), &params, runner_limits(&args)).map_err(anyhow::Error::from)?;
        let g = plugin::gradient::check(&mut r, &student, &teacher, &labels, 0.5).map_err(anyhow::Error::from)?;
        println!("loss on random [{b}, {c}] logits: {:.6}  ({} fuel)", g.loss, g.fuel);
        g
    };
    let ok = gradient.ok();
    println!(
        "gradient vs central differences ({} directions): max error {:.2e} of |gradient| — {}",
        gradient.directions,
        gradient.worst,
        if ok { "ok" } else { "MISMATCH" }
    );

    // The same logits as a language model's distill step passes them (ABI 2): [2, B/2, C] sequences, labels [2, B/2].
    if plugin.abi < 2 {
        println!("as sequences: ABI version 1, so a language model's batch reaches it as token rows, like the above");
    } else if b % 2 == 0 {
        let mut r = Runner::new(plugin.clone(), &params, runner_limits(&args)).map_err(anyhow::Error::from)?;
        let (seq, rows) = ([2, b / 2, c], [2, b / 2]);
        let call = CallInput {
            student: &student.reshape(seq),
            teacher: &teacher.reshape(seq),
            labels: &labels.reshape(rows),
            progress: 0.5,
        };
        match r.loss(&call) {
            Ok(l) => {
                let (v, flat) = (l.double_value(&[]), gradient.loss);
                let same = (v - flat).abs() <= 1e-5 * flat.abs().max(1e-6);
                println!(
                    "as [2, {}, {c}] sequences: loss {v:.6} — {}",
                    b / 2,
                    if same {
                        "the same as the rows: averages per token, like the built-in losses"
                    } else {
                        "differs from the rows: this plugin does not average per token"
                    }
                );
            }
            Err(e) => {
                println!("as [2, {}, {c}] sequences: fails ({e}); language-model distill steps cannot use it", b / 2)
            }
        }
    } else {
        println!("as sequences: not checked (--batch {b} is odd; an even batch is split into 2 sequences)");
    }

    // Time per call, forward and backward, on a warm instance.
    let mut r = Runner::new(plugin.clone(), &params, runner_limits(&args)).map_err(anyhow::Error::from)?;
    let start = Instant::now();
    for _ in 0..args.calls.max(1) {
        let s = student.detach().set_requires_grad(true);
        let l = r.loss(&CallInput { student: &s, teacher: &teacher, labels: &labels, progress: 0.5 });
        l.map_err(anyhow::Error::from)?.backward();
    }
    let per_call = start.elapsed().as_secs_f64() / args.calls.max(1) as f64;
    println!(
        "{:.1} µs per call with backward ({} calls), {} fuel per call (limit {})",
        per_call * 1e6,
        args.calls.max(1),
        r.last_fuel,
        r.limits().fuel
    );
    Ok(if ok { EXIT_OK } else { EXIT_FAILED })
}

fn runner_limits(args: &PluginCheckArgs) -> Limits {
    Limits { fuel: args.fuel.unwrap_or(Limits::default().fuel), ..Limits::default() }
}

// ---- plugin new ---------------------------------------------------------------------------------------------------

const SDK_LIB: &str = include_str!("../../../plugins/sdk/src/lib.rs");
const SDK_MEMORY: &str = include_str!("../../../plugins/sdk/src/memory.rs");
const SDK_TENSOR: &str = include_str!("../../../plugins/sdk/src/tensor.rs");
const SDK_MATH: &str = include_str!("../../../plugins/sdk/src/math.rs");
const C_HEADER: &str = include_str!("../../../plugins/c/anbiq_plugin.h");

const RUST_BUILD: &str = r#"#!/usr/bin/env bash
# Builds NAME.wasm. Needs `rustup target add wasm32-unknown-unknown`; on Debian 12 without rustup targets it uses
# Debian's rustc-web with build-std instead (apt-get install rustc-web cargo-web rust-web-src lld-22).
set -euo pipefail
cd "$(dirname "$0")"
if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
    cargo build --release --target wasm32-unknown-unknown
else
    v="$(/usr/bin/rustc -V | awk '{print $2}')"
    printf '[source.crates-io]\nreplace-with = "vendored"\n[source.vendored]\ndirectory = "/usr/src/rustc-%s/library/vendor"\n' "$v" > .cargo-offline.toml
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-22 \
        /usr/bin/cargo build --release --target wasm32-unknown-unknown -Zbuild-std=core,alloc \
        --config .cargo-offline.toml --offline
fi
cp target/wasm32-unknown-unknown/release/NAME.wasm NAME.wasm
echo "built NAME.wasm; next: anbiq plugin check NAME.wasm"
"#;

const RUST_CARGO: &str = r#"[package]
name = "NAME"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]

[dependencies]
anbiq-sdk = { path = "anbiq-sdk" }

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
strip = true

[profile.dev]
panic = "abort"

[workspace]
"#;

const SDK_CARGO: &str = r#"[package]
name = "anbiq-sdk"
version = "0.1.0"
edition = "2021"

[lib]
name = "anbiq_sdk"
"#;

const RUST_LIB: &str = r##"//! NAME: a distillation loss for anbiq (tensor style: the math runs in libtorch, on the host's device).
#![no_std]

use anbiq_sdk::{export_loss, param, Reduction, Tensor};

/// Soft targets at temperature T plus a little cross-entropy on the labels. Edit freely: every `Tensor` operation
/// runs natively with autograd, so no gradient code is needed.
fn NAME(student: Tensor, teacher: Tensor, labels: Tensor) -> Tensor {
    let (t, alpha) = (param("temperature"), param("alpha"));
    let log_q = student.log_softmax(t);
    let p = teacher.softmax(t);
    let soft = -(p * log_q).sum(-1).mean_all() * (t * t);
    let hard = student.cross_entropy(labels, Reduction::Mean);
    soft * alpha + hard * (1.0 - alpha)
}

export_loss!(
    NAME,
    r#"{"name": "NAME", "kind": "loss", "style": "tensor",
        "description": "soft cross-entropy against the teacher plus hard-label cross-entropy",
        "params": [
          {"name": "temperature", "type": "float", "default": 2.0, "min": 0.000001},
          {"name": "alpha", "type": "float", "default": 0.9, "min": 0.0, "max": 1.0}]}"#
);
"##;

const C_SOURCE: &str = r#"/* NAME: a distillation loss for anbiq, in C (tensor style: the math runs in libtorch, with autograd). */
#include "anbiq_plugin.h"

ANBIQ_DESCRIBE("{\"name\": \"NAME\", \"kind\": \"loss\", \"style\": \"tensor\","
               " \"description\": \"soft cross-entropy against the teacher at temperature T\","
               " \"params\": [{\"name\": \"temperature\", \"type\": \"float\", \"default\": 2.0, \"min\": 0.000001}]}")

static anbiq_t NAME(anbiq_t student, anbiq_t teacher, anbiq_t labels) {
    (void)labels;
    double t = anbiq_param("temperature");
    anbiq_t log_q = anbiq_log_softmax(student, -1, t);
    anbiq_t p = anbiq_softmax(teacher, -1, t);
    anbiq_t per_row = anbiq_neg(anbiq_sum(anbiq_mul(p, log_q), -1, 0));
    return anbiq_mul_scalar(anbiq_mean_all(per_row), t * t);
}

ANBIQ_LOSS(NAME)
"#;

const C_BUILD: &str = r#"#!/usr/bin/env bash
# Builds NAME.wasm with clang's wasm32 target (Debian: apt-get install clang-14 lld-14).
# Local variables live on clang's stack in linear memory: 1 MiB here (wasm-ld's default is 64 KiB), placed first so
# that overflowing it traps ("out of bounds memory access") instead of overwriting static data. It counts towards
# the memory cap, limits.memory_mib.
set -euo pipefail
cd "$(dirname "$0")"
cc="${CC:-$(command -v clang-14 || command -v clang)}"
"$cc" --target=wasm32 -nostdlib -O2 -Wall -Wl,--no-entry -Wl,--export-dynamic \
    -Wl,--stack-first -Wl,-z,stack-size=1048576 -o NAME.wasm NAME.c
echo "built NAME.wasm; next: anbiq plugin check NAME.wasm"
"#;

const README: &str = r#"# NAME — an anbiq loss plugin

    ./build.sh                          # → NAME.wasm
    anbiq plugin check NAME.wasm        # describe, gradient vs finite differences, fuel and time per call

Use it in a workflow (the path is relative to the workflow file):

    loss: {plugin: {path: NAME.wasm, params: {temperature: 2}}}

The ABI, the host functions and the limits are described in anbiq's plugins/ABI.md.
"#;

fn write(dir: &Path, rel: &str, text: &str, name: &str) -> anyhow::Result<()> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, text.replace("NAME", name)).with_context(|| format!("writing {}", path.display()))?;
    if rel.ends_with(".sh") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

pub fn new(args: PluginNewArgs) -> Result<i32, CliError> {
    let name = &args.name;
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(CliError::Usage(format!(
            "plugin name `{name}`: use letters, digits and `_`, starting with a letter"
        )));
    }
    let dir = args.dir.clone().unwrap_or_else(|| name.into());
    if dir.exists() {
        return Err(CliError::Usage(format!("{} already exists", dir.display())));
    }
    match args.lang {
        PluginLang::Rust => {
            write(&dir, "Cargo.toml", RUST_CARGO, name)?;
            write(&dir, "src/lib.rs", RUST_LIB, name)?;
            write(&dir, "build.sh", RUST_BUILD, name)?;
            // The SDK, vendored: the project builds with no access to anbiq's repository or crates.io. (No NAME in it.)
            for (rel, text) in [
                ("anbiq-sdk/Cargo.toml", SDK_CARGO),
                ("anbiq-sdk/src/lib.rs", SDK_LIB),
                ("anbiq-sdk/src/memory.rs", SDK_MEMORY),
                ("anbiq-sdk/src/tensor.rs", SDK_TENSOR),
                ("anbiq-sdk/src/math.rs", SDK_MATH),
            ] {
                let path = dir.join(rel);
                std::fs::create_dir_all(path.parent().expect("has a parent")).map_err(anyhow::Error::from)?;
                std::fs::write(&path, text).map_err(anyhow::Error::from)?;
            }
            write(&dir, ".gitignore", "/target\n/.cargo-offline.toml\n/Cargo.lock\n*.wasm\n", name)?;
        }
        PluginLang::C => {
            write(&dir, &format!("{name}.c"), C_SOURCE, name)?;
            std::fs::write(dir.join("anbiq_plugin.h"), C_HEADER).map_err(anyhow::Error::from)?;
            write(&dir, "build.sh", C_BUILD, name)?;
            write(&dir, ".gitignore", "*.wasm\n", name)?;
        }
    }
    write(&dir, "README.md", README, name)?;
    println!("created {} ({:?}); build it with {}/build.sh", dir.display(), args.lang, dir.display());
    Ok(EXIT_OK)
}
