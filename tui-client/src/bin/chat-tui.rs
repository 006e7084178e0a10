//! `chat-tui`: the terminal chat client.

use chat_tui::args::ConnectArgs;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "chat-tui",
    version,
    about = "Terminal chat client for chat-server"
)]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Rooms to join at start (repeat for several).
    #[arg(long = "room")]
    rooms: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = args.connect.into_config()?;
    let message = chat_tui::tui::terminal::run(config, args.rooms).await?;
    if !message.is_empty() {
        eprintln!("{message}");
        std::process::exit(1);
    }
    Ok(())
}
