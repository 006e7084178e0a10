//! chat-tui: state ([`app`]), drawing ([`ui`]), the chat pane's lines ([`lines`]), input editing ([`input`]),
//! commands ([`commands`]), text safety ([`text`]), and the terminal loop
//! ([`terminal`]) that connects them to the screen and the network.

pub mod app;
pub mod commands;
pub mod input;
pub mod lines;
pub mod terminal;
pub mod text;
pub mod ui;
