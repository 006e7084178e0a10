//! Reading a new password from the operator, as `chat-server user add` and
//! `chat-server admin reset-password` do: asked twice on a terminal (never
//! echoed), or one line of standard input otherwise, for scripts.

use std::io::{BufRead, IsTerminal};

use anyhow::Context;

/// A new password: prompted for twice on a terminal, else the first line of
/// standard input (its line ending removed).
pub fn new_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Repeat password: ")?;
        anyhow::ensure!(first == second, "the passwords differ");
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
