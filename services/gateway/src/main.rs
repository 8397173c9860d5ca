//! The `gatehouse` binary.

// mimalloc, called through its plain entry points where they already give
// the alignment asked for (see `gatehouse-alloc`).
#[global_allocator]
static GLOBAL: gatehouse_alloc::Mimalloc = gatehouse_alloc::Mimalloc;

fn main() -> std::process::ExitCode {
    gatehouse::cli::run()
}
