//! The `gatehouse` binary.

// mimalloc, called through its plain entry points where they already give
// the alignment asked for (see `gatehouse-alloc`).
#[global_allocator]
static GLOBAL: gatehouse_alloc::Mimalloc = gatehouse_alloc::Mimalloc;

fn main() -> std::process::ExitCode {
    // Before any other thread starts: the gateway's threads keep their
    // full pages (see `gatehouse_alloc::keep_full_pages`).
    gatehouse_alloc::keep_full_pages();
    gatehouse::cli::run()
}
