//! The `anbiq` command line. All the work is in the library; see `cli`.

fn main() {
    std::process::exit(anbiq::cli::main());
}
