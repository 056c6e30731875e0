//! The `anbiq` command line. All the work is in the library; see `cli`.

fn main() {
    anbiq::nn::memory::tune_allocator();
    std::process::exit(anbiq::cli::main());
}
