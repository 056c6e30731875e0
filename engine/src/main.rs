//! The `anbiq` command line. All the work is in the library; see `cli`.

use std::io::Write;

fn main() {
    anbiq::nn::runtime::cpu_kernels::pin_portable();
    anbiq::nn::runtime::memory::tune_allocator();
    let code = anbiq::cli::main();
    // Leave without running libtorch's C++ static destructors: they only free memory the OS takes back anyway and
    // cost ≈80 ms, a third of a fully cached `anbiq run` (BENCHMARKS.md). By now every file anbiq wrote is closed
    // (artifacts and lockfiles are synced before they are renamed into place); only the standard streams may hold
    // buffered bytes.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process at once; nothing after this point relies on destructors or atexit handlers.
    unsafe { libc::_exit(code) }
}
