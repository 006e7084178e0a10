//! The terminal side: raw mode and alternate screen (always restored, also on
//! panic), and the loop feeding terminal, network and timer events to the app.

use std::io::{stdout, Stdout};
use std::time::Duration;

use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    EventStream,
};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use futures_util::StreamExt;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use crate::client::{spawn_session, ClientConfig, Command};
use crate::tui::app::{App, AppEvent, Clock};
use crate::tui::ui;

type Term = Terminal<CrosstermBackend<Stdout>>;

/// Puts the terminal back as it was. Safe to call more than once.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        stdout(),
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// Restores the terminal when dropped, whatever way the loop ends.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore();
    }
}

fn setup() -> std::io::Result<Term> {
    // A panic prints its message on the restored screen, not into raw mode.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
    enable_raw_mode()?;
    execute!(
        stdout(),
        EnterAlternateScreen,
        EnableMouseCapture,
        EnableBracketedPaste
    )?;
    Terminal::new(CrosstermBackend::new(stdout()))
}

/// Runs chat-tui until the user quits; returns a message to print afterwards.
pub async fn run(config: ClientConfig, rooms: Vec<String>) -> anyhow::Result<String> {
    let mut app = App::new(&config.user, &config.server.to_string(), Clock::Local);
    let mut session = spawn_session(config, rooms.into_iter().map(|r| (r, None)).collect());
    let mut terminal = setup()?;
    let _restore = Restore;
    let size = terminal.size()?;
    app.size = (size.width, size.height);

    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        terminal.draw(|frame| ui::draw(frame, &app))?;
        let event = tokio::select! {
            event = input.next() => match event {
                Some(Ok(event)) => AppEvent::Terminal(event),
                Some(Err(e)) => return Err(e.into()),
                None => break,
            },
            event = session.events.recv() => match event {
                Some(event) => AppEvent::Session(event),
                None => break,
            },
            _ = tick.tick() => AppEvent::Tick,
            _ = term.recv() => break,
            _ = hangup.recv() => break,
        };
        for command in app.update(event) {
            if session.commands.send(command).await.is_err() {
                break;
            }
        }
        if let Some(message) = app.quit.take() {
            finish(&session.commands).await;
            return Ok(message);
        }
    }
    finish(&session.commands).await;
    Ok(String::new())
}

/// Asks the session to close the socket properly and log out, and gives it
/// a moment.
async fn finish(commands: &tokio::sync::mpsc::Sender<Command>) {
    let _ = commands.send(Command::Quit).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), commands.closed()).await;
}
