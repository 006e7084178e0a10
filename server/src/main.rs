//! The `chat-server` command: parses arguments and runs the library.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use chat_server::admin::AdminArgs;
use chat_server::config::LogFormat;
use chat_server::tls::CertSource;
use chat_server::{Accounts, Config, Server};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "chat-server",
    version,
    about = "Real-time chat rooms over WebSockets"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Manage user accounts: in the data directory, or with --database-url in PostgreSQL.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// An operator's commands on the data directory (or with --database-url,
    /// PostgreSQL), also while a server runs on it: users, disable, enable,
    /// reset-password, rooms, delete-message, storage.
    Admin(AdminArgs),
}

#[derive(Subcommand)]
enum UserAction {
    /// Create a user. The password is prompted for on a terminal, or read as
    /// one line from standard input otherwise.
    Add {
        /// The user name (1-32 of A-Z a-z 0-9 - _ .).
        name: String,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::User {
            action: UserAction::Add { name },
        }) => add_user(&cli.config, &name).map(|()| ExitCode::SUCCESS),
        Some(Command::Admin(args)) => Ok(chat_server::admin::run(&cli.config, &args)),
        None => serve(cli.config).map(|()| ExitCode::SUCCESS),
    }
}

fn add_user(config: &Config, name: &str) -> anyhow::Result<()> {
    if let Some(url) = &config.database_url {
        let password = chat_server::prompt::new_password()?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(chat_server::add_user_to_database(url, name, &password))?;
        println!("created user {name} in the PostgreSQL database of --database-url");
        return Ok(());
    }
    let accounts = Accounts::open_in(&config.data_dir)?;
    let password = chat_server::prompt::new_password()?;
    chat_server::add_user(&accounts, name, &password)?;
    println!(
        "created user {name} in {}",
        config
            .data_dir
            .join(chat_server::accounts::DB_FILE)
            .display()
    );
    Ok(())
}

/// Runs the server until it stops. With JSON logs, a failure is logged as one
/// more JSON line instead of the plain `Error: ...` that `main` would print,
/// so that a log collector sees every line of the process's stderr parse.
fn serve(config: Config) -> anyhow::Result<()> {
    let format = config.log_format;
    init_tracing(format);
    match (run(config), format) {
        (Err(e), LogFormat::Json) => {
            tracing::error!(error = format!("{e:#}"), "chat-server stopped");
            std::process::exit(1);
        }
        (result, _) => result,
    }
}

#[tokio::main]
async fn run(config: Config) -> anyhow::Result<()> {
    let server = Server::bind(config).await?;
    if let Some(CertSource::SelfSigned { cert, generated }) = server.cert_source() {
        let verb = if *generated { "generated" } else { "using" };
        println!(
            "TLS: {verb} self-signed certificate {} (valid for localhost, 127.0.0.1, ::1); give it to clients to trust",
            cert.display()
        );
    }
    if let Some(addr) = server.metrics_addr() {
        println!("metrics on http://{addr}/metrics");
    }
    // Scripts and tests read this line to learn the address (e.g. with --listen 127.0.0.1:0).
    println!("chat-server listening on {}", server.url()?);
    std::io::stdout().flush()?;

    let shutdown = server.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("signal received, shutting down");
        shutdown.cancel();
    });
    server.run().await
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// Logs to stderr in `format`, filtered by `RUST_LOG` (e.g. `info`,
/// `chat_server=debug`).
///
/// JSON lines put the event's fields beside `timestamp`, `level`, `target`
/// and `message` (flattened) rather than under a `fields` object, so that
/// `jq 'select(.user == "carol")'` and log collectors find them without a
/// path; no event names a field after one of those four. Span fields are
/// left out: the server opens no spans, and every event carries its own
/// context (`conn`, `user`, `room`, `peer`).
fn init_tracing(format: LogFormat) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
        });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(chat_server::logging::escaped_fields())
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}
