//! Command-line options shared by chat-tui and chat-cli.

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::client::{ClientConfig, ClientError, ServerUrl, TlsOptions};

/// Where to connect and how to log in.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// Server URL: http://, https://, ws:// or wss:// plus host and port.
    #[arg(
        long,
        env = "CHAT_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,

    /// User name to log in as.
    #[arg(long, env = "CHAT_USER", global = true)]
    pub user: Option<String>,

    /// Read the password from the first line of this file. Otherwise it comes
    /// from the CHAT_PASSWORD variable, or a prompt on a terminal.
    #[arg(long, global = true)]
    pub password_file: Option<PathBuf>,

    /// Trust this PEM certificate, e.g. data/tls/cert.pem of `chat-server --tls`.
    #[arg(long, env = "CHAT_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,

    /// Accept any server certificate (encrypted but not authenticated; for tests only).
    #[arg(long, global = true)]
    pub insecure: bool,
}

impl ConnectArgs {
    /// Resolves the options into a client configuration, reading the password.
    pub fn into_config(self) -> Result<ClientConfig, ClientError> {
        let server = ServerUrl::parse(&self.server)?;
        let user = self.user.ok_or_else(|| {
            ClientError::Local("no user name: pass --user NAME or set CHAT_USER".into())
        })?;
        let password = read_password(self.password_file.as_ref(), &user)?;
        if self.insecure {
            eprintln!(
                "warning: --insecure accepts any certificate; anyone on the path can read and change this chat"
            );
        }
        let tls = TlsOptions {
            ca_cert: self.ca_cert,
            insecure: self.insecure,
        };
        // A mistyped certificate path is a local mistake: say so before any
        // connection attempt could blame the server.
        tls.client_config()?;
        Ok(ClientConfig {
            server,
            user,
            password,
            tls,
        })
    }
}

// CHAT_PASSWORD is read here rather than declared to clap, so that `--help`
// never prints its value.
fn read_password(file: Option<&PathBuf>, user: &str) -> Result<String, ClientError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ClientError::Local(format!("cannot read password file {}: {e}", path.display()))
        })?;
        return Ok(text.lines().next().unwrap_or_default().to_owned());
    }
    if let Ok(password) = std::env::var("CHAT_PASSWORD") {
        return Ok(password);
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("Password for {user}: "))
            .map_err(|e| ClientError::Local(format!("cannot read the password: {e}")));
    }
    Err(ClientError::Local(
        "no password: set CHAT_PASSWORD, pass --password-file, or run in a terminal".into(),
    ))
}
