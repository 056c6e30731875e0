//! Choosing where tensors live: `auto | cpu | cuda | cuda:N`.

use anyhow::{bail, Result};
use tch::{Cuda, Device};

/// A parsed device request, before checking what this machine has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// CUDA 0 when available, else CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

/// Parses a device string; pure, so it can be checked without a GPU.
pub fn parse(spec: &str) -> Result<DeviceSpec> {
    let s = spec.trim().to_ascii_lowercase();
    Ok(match s.as_str() {
        "auto" => DeviceSpec::Auto,
        "cpu" => DeviceSpec::Cpu,
        "cuda" | "gpu" => DeviceSpec::Cuda(0),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => DeviceSpec::Cuda(n),
            _ => bail!("device: expected auto, cpu, cuda or cuda:N, got {spec:?}"),
        },
    })
}

/// Resolves `spec` against this machine. Asking for CUDA where there is none is an error rather than a silent CPU
/// fallback, so a run never quietly takes 50× longer than planned.
pub fn resolve(spec: &str) -> Result<Device> {
    load_cuda_runtime();
    match parse(spec)? {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Auto => Ok(Device::cuda_if_available()),
        DeviceSpec::Cuda(n) => {
            if !Cuda::is_available() {
                bail!(
                    "device {spec:?}: CUDA is not available (no GPU, or libtorch_cuda.so could not be loaded; \
                     put a CUDA libtorch's lib directory on LD_LIBRARY_PATH)"
                );
            }
            let count = Cuda::device_count() as usize;
            if n >= count {
                bail!("device {spec:?}: only {count} CUDA device(s) visible");
            }
            Ok(Device::Cuda(n))
        }
    }
}

/// Loads `libtorch_cuda.so` into the process if the dynamic loader can find it (LD_LIBRARY_PATH, rpath).
///
/// rustc links with `--as-needed`, which drops libtorch_cuda because no symbol of it is referenced directly; without
/// it libtorch registers no CUDA backend and a CPU-built binary could never use a GPU. Loading it with RTLD_GLOBAL
/// runs its static registrations. Failure is normal on CPU machines, so it is only logged at debug. Runs once.
pub fn load_cuda_runtime() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let name = c"libtorch_cuda.so";
        // SAFETY: dlopen with a valid C string; the handle is deliberately leaked so the library stays loaded.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if handle.is_null() {
            // SAFETY: dlerror returns a thread-local C string or null.
            let err = unsafe { libc::dlerror() };
            let msg = if err.is_null() {
                String::from("unknown error")
            } else {
                unsafe { std::ffi::CStr::from_ptr(err) }.to_string_lossy().into_owned()
            };
            tracing::debug!("libtorch_cuda not loaded ({msg}); CUDA unavailable unless linked in");
        } else {
            tracing::debug!("loaded {name:?}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_strings() {
        assert_eq!(parse("auto").unwrap(), DeviceSpec::Auto);
        assert_eq!(parse("CPU").unwrap(), DeviceSpec::Cpu);
        assert_eq!(parse("cuda").unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(parse("cuda:3").unwrap(), DeviceSpec::Cuda(3));
        for bad in ["cuda:", "cuda:-1", "cuda:x", "tpu", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpu_always_resolves() {
        assert_eq!(resolve("cpu").unwrap(), Device::Cpu);
        let auto = resolve("auto").unwrap();
        assert_eq!(auto == Device::Cpu, !Cuda::is_available());
        if !Cuda::is_available() {
            assert!(resolve("cuda").unwrap_err().to_string().contains("not available"));
        }
    }
}
