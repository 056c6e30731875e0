use std::{env, fs, path::Path};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // torch-sys exports where it found libtorch; bake that into every binary of this crate (the CLI, tests, examples)
    // so they run with no LD_LIBRARY_PATH.
    let lib = env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys exports DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-env=ANBIQ_LIBTORCH_VERSION={}", libtorch_version(Path::new(&lib)));
    compile_libtorch_shim(&lib);
    if env::var_os("CARGO_FEATURE_CUDA").is_some() {
        // rustc links with --as-needed, which drops libtorch_cuda since no symbol of it is referenced directly.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

/// The libtorch version, read from its headers: it enters every cache key and lockfile.
fn libtorch_version(lib: &Path) -> String {
    let header = lib.join("../include/torch/headeronly/version.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let Ok(text) = fs::read_to_string(&header) else { return "unknown".into() };
    let part = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("#define TORCH_VERSION_{name} ")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    format!("{}.{}.{}", part("MAJOR"), part("MINOR"), part("PATCH"))
}

/// nn::runtime::determinism and nn::training::optimizer: tch has no wrapper for `at::globalContext().setDeterministicAlgorithms` or for
/// resetting a tensor's `.grad`, and none for c10d (nn::distributed), so a few lines of C++ compiled against
/// libtorch's headers provide them (linked against the libtorch torch-sys already links). The wheel lacks the Gloo
/// headers c10d's Gloo header includes: `vendor/gloo` has them.
fn compile_libtorch_shim(lib: &str) {
    let sources = ["src/nn/runtime/libtorch_shim.cpp", "src/nn/distributed/c10d_shim.cpp"];
    for src in sources {
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-changed=vendor/gloo");
    let include = Path::new(lib).join("../include");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include("vendor/gloo")
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .files(sources)
        .compile("anbiq_libtorch_shim");
}
