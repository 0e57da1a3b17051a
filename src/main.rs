//! The `switchboard` binary: parse the command line and run it.

#![warn(clippy::too_many_lines)]

use clap::Parser as _;

/// jemalloc instead of the system allocator: the pipeline allocates many short-lived JSON values
/// per message, and glibc's malloc spent a fifth of the receive thread on them.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let cli = switchboard::cli::Cli::parse();
    match switchboard::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
