fn main() -> std::process::ExitCode {
    provgate::cli::main()
}
