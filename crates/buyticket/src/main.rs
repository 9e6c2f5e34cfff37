//! `buyticket`: the whole marketplace in one process (`up`, the embedded default) or one
//! service per process (`serve <service>`, the distributed mode). The binary is thin: it reads
//! configuration ([`config`]), opens what each service needs and hands bound listeners to the
//! service crates.

mod config;
mod run;

use clap::Parser;

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
