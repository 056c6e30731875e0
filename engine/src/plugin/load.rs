//! Loading a plugin: read, compile, refuse foreign imports, check the required exports, ask the ABI version and the
//! describe JSON in a sandboxed probe instance. Compiled plugins are cached per process by path, content hash and the
//! limits of the probe.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use wasmtime::{ExternType, InstancePre, Module};

use super::describe::Describe;
use super::error::{ErrorKind, PluginError};
use super::handles::HostState;
use super::imports::linker;
use super::sandbox::{arm, engine, new_store, Limits};

/// The newest plugin ABI this host speaks (see plugins/ABI.md) …
pub const ABI_VERSION: i32 = 2;
/// … and the oldest. Version 1 plugins get a language model's batch as token rows, version 2 as sequences.
pub const MIN_ABI_VERSION: i32 = 1;
/// Longest describe JSON, bytes.
const MAX_DESCRIBE: u32 = 64 * 1024;

/// A compiled, checked plugin module.
pub struct Plugin {
    pub path: PathBuf,
    /// blake3 of the module's bytes.
    pub hash: String,
    pub describe: Describe,
    /// For messages: "`kd` (plugins/build/kd.wasm)".
    pub label: String,
    /// The ABI version the module declares (`MIN_ABI_VERSION..=ABI_VERSION`).
    pub abi: i32,
    pub(crate) pre: InstancePre<HostState>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("path", &self.path).field("describe", &self.describe).finish()
    }
}

/// Loads (or finds already loaded) the plugin at `path`, probing it under the default limits.
pub fn load(path: &Path) -> Result<Arc<Plugin>, PluginError> {
    load_with(path, &Limits::default())
}

/// Loads (or finds already loaded) the plugin at `path`, probing its ABI version and describe under `limits` (a
/// step's own: a describe that needs more fuel than the default loads where the step allows it).
pub fn load_with(path: &Path, limits: &Limits) -> Result<Arc<Plugin>, PluginError> {
    // Keyed by the limits too: a probe that passed under generous limits says nothing about tighter ones.
    type Cache = HashMap<(PathBuf, String, Limits), Arc<Plugin>>;
    static CACHE: Mutex<Option<Cache>> = Mutex::new(None);
    let label = format!("`{}` ({})", path.file_name().unwrap_or_default().to_string_lossy(), path.display());
    let bytes = std::fs::read(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound && path.components().any(|c| c.as_os_str() == "build") {
            " (the shipped plugins are built by scripts/build-plugins.sh)"
        } else {
            ""
        };
        PluginError::new(&label, "load", ErrorKind::Io, format!("cannot read {}: {e}{hint}", path.display()))
    })?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let key = (path.to_path_buf(), hash.clone(), limits.clone());
    if let Some(p) = CACHE.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_default().get(&key) {
        return Ok(p.clone());
    }
    let plugin = Arc::new(compile(path, &bytes, hash, &label, limits)?);
    CACHE.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_default().insert(key, plugin.clone());
    Ok(plugin)
}

/// Loads a module from bytes (or WAT text) without caching; `path` is only for messages.
pub fn load_bytes(path: &Path, bytes: &[u8]) -> Result<Plugin, PluginError> {
    let label = format!("`{}` ({})", path.file_name().unwrap_or_default().to_string_lossy(), path.display());
    compile(path, bytes, blake3::hash(bytes).to_hex().to_string(), &label, &Limits::default())
}

fn compile(path: &Path, bytes: &[u8], hash: String, label: &str, limits: &Limits) -> Result<Plugin, PluginError> {
    let err = |kind, message: String| PluginError::new(label, "load", kind, message);
    if !bytes.starts_with(b"\0asm") && std::str::from_utf8(bytes).is_err() {
        // Neither a binary module nor WAT text (which wasmtime would otherwise try, saying "not valid utf-8").
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(err(
            ErrorKind::Invalid,
            format!(
                "not a WebAssembly module (a .wasm file starts with 00 61 73 6d, this one with {})",
                head.join(" ")
            ),
        ));
    }
    let module = Module::new(engine(), bytes)
        .map_err(|e| err(ErrorKind::Invalid, format!("not a valid WebAssembly module: {e:#}")))?;
    let (linker, names) = linker();
    for import in module.imports() {
        if import.module() != "anbiq" {
            return Err(err(
                ErrorKind::ForbiddenImport,
                format!(
                    "imports `{}::{}`; a plugin may import only the `anbiq` host functions (no WASI, files, \
                     network or clock)",
                    import.module(),
                    import.name()
                ),
            ));
        }
        if !names.contains(&import.name()) {
            return Err(err(
                ErrorKind::ForbiddenImport,
                format!(
                    "imports `anbiq::{}`, which ABI version {ABI_VERSION} does not define (see plugins/ABI.md)",
                    import.name()
                ),
            ));
        }
    }
    let required = ["memory", "anbiq_abi_version", "anbiq_alloc", "anbiq_describe"];
    for name in required {
        let ok = match module.get_export(name) {
            Some(ExternType::Memory(_)) => name == "memory",
            Some(ExternType::Func(_)) => name != "memory",
            _ => false,
        };
        if !ok {
            return Err(err(
                ErrorKind::MissingExport,
                format!("does not export `{name}` (every plugin exports {})", required.join(", ")),
            ));
        }
    }
    let pre = linker
        .instantiate_pre(&module)
        .map_err(|e| err(ErrorKind::Invalid, format!("cannot link against the host: {e:#}")))?;

    // Probe: the ABI version, then describe, in an instance with the caller's limits.
    let mut store = new_store(limits, HostState::new(limits.store_limits(), Arc::new(Vec::new()), label.into()));
    arm(&mut store, limits);
    let instance = pre.instantiate(&mut store).map_err(|e| PluginError::from_wasm(label, "instantiate", limits, e))?;
    let typed = |store: &mut wasmtime::Store<HostState>, name: &str| {
        instance.get_func(&mut *store, name).ok_or_else(|| err(ErrorKind::MissingExport, format!("no `{name}`")))
    };
    let version = typed(&mut store, "anbiq_abi_version")?
        .typed::<(), i32>(&store)
        .map_err(|e| err(ErrorKind::MissingExport, format!("`anbiq_abi_version` must be () -> i32: {e:#}")))?
        .call(&mut store, ())
        .map_err(|e| PluginError::from_wasm(label, "anbiq_abi_version", limits, e))?;
    if !(MIN_ABI_VERSION..=ABI_VERSION).contains(&version) {
        return Err(err(
            ErrorKind::AbiVersion,
            format!(
                "speaks plugin ABI version {version}; this anbiq speaks versions {MIN_ABI_VERSION} to {ABI_VERSION}"
            ),
        ));
    }
    typed(&mut store, "anbiq_alloc")?
        .typed::<(i32, i32), i32>(&store)
        .map_err(|e| err(ErrorKind::MissingExport, format!("`anbiq_alloc` must be (i32, i32) -> i32: {e:#}")))?;
    let packed = typed(&mut store, "anbiq_describe")?
        .typed::<(), i64>(&store)
        .map_err(|e| err(ErrorKind::MissingExport, format!("`anbiq_describe` must be () -> i64: {e:#}")))?
        .call(&mut store, ())
        .map_err(|e| PluginError::from_wasm(label, "anbiq_describe", limits, e))?;
    let (ptr, len) = ((packed as u64 >> 32) as u32, packed as u32);
    let describe_err = |m: String| PluginError::new(label, "anbiq_describe", ErrorKind::Describe, m);
    if len > MAX_DESCRIBE {
        return Err(describe_err(format!("returned {len} bytes; describe JSON may be at most {MAX_DESCRIBE}")));
    }
    let memory = instance.get_memory(&mut store, "memory").expect("checked above");
    let json = memory
        .data(&store)
        .get(ptr as usize..ptr as usize + len as usize)
        .ok_or_else(|| describe_err(format!("returned bytes {ptr}..{} outside its memory", ptr as u64 + len as u64)))?
        .to_vec();
    let describe = Describe::parse(&json).map_err(describe_err)?;
    let export = describe.style.export();
    let signature_ok = match describe.style {
        super::describe::Style::Tensor => instance.get_typed_func::<(i32, i32, i32), i32>(&mut store, export).is_ok(),
        super::describe::Style::Dense => {
            instance.get_typed_func::<(i32, i32, i32, i32, i32, i32), f32>(&mut store, export).is_ok()
        }
    };
    if !signature_ok {
        let signature = match describe.style {
            super::describe::Style::Tensor => "(i32, i32, i32) -> i32",
            super::describe::Style::Dense => "(i32, i32, i32, i32, i32, i32) -> f32",
        };
        return Err(describe_err(format!(
            "says style `{}`, but the module does not export `{export}{signature}`",
            serde_json::to_value(describe.style).expect("a style serialises").as_str().unwrap_or_default()
        )));
    }
    let label = format!("`{}` ({})", describe.name, path.display());
    Ok(Plugin { path: path.to_path_buf(), hash, describe, label, abi: version, pre })
}
