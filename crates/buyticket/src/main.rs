//! `buyticket`: the whole marketplace in one process (`up`, the embedded default) or one
//! service per process (`serve <service>`, the distributed mode). The binary is thin: it reads
//! configuration ([`config`]), opens what each service needs and hands bound listeners to the
//! service crates.

mod config;
mod run;

use clap::Parser;

/// jemalloc, configured in `.cargo/config.toml`. With glibc's malloc, the memory of a rush's
/// 2,000 connections stayed in the tokio workers' arenas after they closed (30 MB each, about
/// 1 MB of it in use), and the resident memory of `up` rose from rush to rush (61 to 87 MB over
/// ten); jemalloc gives it back within a second and stays at 66 to 75 MB (BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bt_platform::telemetry::init();
    let cli = config::Cli::parse();
    match run::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            tracing::error!("{err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
