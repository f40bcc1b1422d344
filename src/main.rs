mod cli;

#[global_allocator]
static ALLOCATOR: spangrad::memory::Counting = spangrad::memory::Counting;

fn main() -> std::process::ExitCode {
    spangrad::memory::keep_freed_memory();
    cli::run()
}
