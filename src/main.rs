// mimalloc instead of glibc malloc: the benchmark's profiles spent 7% (handshakes) to 15%
// (keep-alive requests) in glibc's malloc/free (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    provgate::cli::main()
}
