use std::env;

fn main() {
    // torch-sys exports where it found libtorch; bake that into every binary of this crate (the CLI, tests, examples)
    // so they run with no LD_LIBRARY_PATH.
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    if env::var_os("CARGO_FEATURE_CUDA").is_some() {
        // rustc links with --as-needed, which drops libtorch_cuda since no symbol of it is referenced directly.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
