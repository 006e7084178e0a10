//! `chat-cli`: send to and follow chat rooms from shells and cron jobs.

use std::process::ExitCode;

use chat_tui::cli::{exit_code, run, Cli};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat-cli: {error}");
            ExitCode::from(exit_code(&error))
        }
    }
}
