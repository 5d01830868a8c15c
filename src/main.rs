//! The `canarist` binary: parse the command line and hand over to the library.

/// mimalloc: the gateway allocates many small, short-lived buffers per request; glibc's malloc
/// showed up as a sixth of the gateway's CPU time in the load bench. Built with `no_thp`: mimalloc
/// then never asks for transparent huge pages, which on kernels in THP `madvise` mode grew the
/// gateway's resident memory in 2 MiB steps (79 → 59 MB peak at 128 connections in the load
/// bench, same CPU).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    canarist::cli::main()
}
