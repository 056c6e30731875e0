use std::env;

fn main() {
    // torch-sys exports where it found libtorch; bake that into every binary of this crate (the CLI, tests, examples)
    // so they run with no LD_LIBRARY_PATH.
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        compile_determinism_shim(&lib);
    }
    if env::var_os("CARGO_FEATURE_CUDA").is_some() {
        // rustc links with --as-needed, which drops libtorch_cuda since no symbol of it is referenced directly.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

/// nn::determinism: tch has no wrapper for `at::globalContext().setDeterministicAlgorithms`, so a few lines of C++
/// compiled against libtorch's headers provide one (linked against the libtorch torch-sys already links).
fn compile_determinism_shim(lib: &str) {
    let src = "src/nn/determinism.cpp";
    println!("cargo:rerun-if-changed={src}");
    let include = std::path::Path::new(lib).join("../include");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .file(src)
        .compile("anbiq_determinism");
}
