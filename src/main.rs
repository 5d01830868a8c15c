//! The `canarist` binary: parse the command line and hand over to the library.

/// mimalloc: the gateway allocates many small, short-lived buffers per request; glibc's malloc
/// showed up as a sixth of the gateway's CPU time in the load bench.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    canarist::cli::main()
}
