//! Server addresses as users type them.

use crate::client::ClientError;

/// A chat server's address: `http://`, `https://`, `ws://` or `wss://`, host
/// and optional port. Any path is ignored; the endpoints are fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// Whether to use TLS (https/wss).
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl ServerUrl {
    /// Parses `http(s)://` or `ws(s)://` URLs, or a bare `host:port` (plain).
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let uri: http::Uri = with_scheme
            .parse()
            .map_err(|e| ClientError::Local(format!("invalid server URL {text:?}: {e}")))?;
        let tls = match uri.scheme_str() {
            Some("http" | "ws") => false,
            Some("https" | "wss") => true,
            other => {
                return Err(ClientError::Local(format!(
                    "unsupported scheme {other:?} in {text:?}: use http, https, ws or wss"
                )))
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| ClientError::Local(format!("no host in server URL {text:?}")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self { tls, host, port })
    }

    /// `host:port`, bracketing IPv6 literals, as the `Host` header wants.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The WebSocket URL for a ticket.
    pub fn ws_url(&self, ticket: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/ws?ticket={ticket}", self.authority())
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_scheme_users_type() {
        let cases = [
            ("http://127.0.0.1:8080", false, "127.0.0.1", 8080),
            ("ws://localhost:9000/ws", false, "localhost", 9000),
            ("https://chat.example", true, "chat.example", 443),
            ("wss://chat.example:8443", true, "chat.example", 8443),
            ("localhost:8080", false, "localhost", 8080),
            ("http://[::1]:8080", false, "::1", 8080),
        ];
        for (text, tls, host, port) in cases {
            let url = ServerUrl::parse(text).expect(text);
            assert_eq!(
                (url.tls, url.host.as_str(), url.port),
                (tls, host, port),
                "{text}"
            );
        }
        assert_eq!(
            ServerUrl::parse("http://[::1]:8080")
                .expect("v6")
                .authority(),
            "[::1]:8080"
        );
        assert!(ServerUrl::parse("ftp://x").is_err());
    }
}
