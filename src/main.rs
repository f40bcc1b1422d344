mod cli;

#[global_allocator]
static ALLOCATOR: cli::alloc::Counting = cli::alloc::Counting;

fn main() -> std::process::ExitCode {
    cli::run()
}
