//! The browser `Origin` check that stops other web sites from opening
//! sockets with a visitor's credentials (cross-site WebSocket hijacking).

use axum::http::header::{HOST, ORIGIN};
use axum::http::HeaderMap;

/// Allows a request that sends no `Origin` (terminal and native clients), or
/// whose `Origin` is the server's own (scheme plus `Host`) or in `allowed`.
pub(crate) fn check(headers: &HeaderMap, tls: bool, allowed: &[String]) -> Result<(), String> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let origin = origin
        .to_str()
        .map_err(|_| "Origin header is not valid text".to_owned())?
        .trim_end_matches('/');
    let same = |candidate: &str| candidate.trim_end_matches('/').eq_ignore_ascii_case(origin);
    if allowed.iter().any(|a| same(a)) {
        return Ok(());
    }
    let scheme = if tls { "https" } else { "http" };
    if let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) {
        // Browsers leave the default port out of Origin.
        let default_port = if tls { ":443" } else { ":80" };
        let host = host.strip_suffix(default_port).unwrap_or(host);
        if same(&format!("{scheme}://{host}")) {
            return Ok(());
        }
    }
    Err(format!("origin {origin:?} is not allowed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, host.parse().expect("header"));
        if let Some(o) = origin {
            h.insert(ORIGIN, o.parse().expect("header"));
        }
        h
    }

    #[test]
    fn native_clients_and_the_own_origin_pass() {
        assert!(check(&headers("127.0.0.1:8080", None), false, &[]).is_ok());
        let own = headers("127.0.0.1:8080", Some("http://127.0.0.1:8080"));
        assert!(check(&own, false, &[]).is_ok());
        let default_port = headers("chat.example:443", Some("https://chat.example"));
        assert!(check(&default_port, true, &[]).is_ok());
    }

    #[test]
    fn foreign_origins_fail_unless_allowed() {
        let foreign = headers("127.0.0.1:8080", Some("https://evil.example"));
        assert!(check(&foreign, false, &[]).is_err());
        assert!(check(&foreign, false, &["https://evil.example/".into()]).is_ok());
        let wrong_scheme = headers("127.0.0.1:8080", Some("https://127.0.0.1:8080"));
        assert!(check(&wrong_scheme, false, &[]).is_err());
        let null = headers("127.0.0.1:8080", Some("null"));
        assert!(check(&null, false, &[]).is_err());
    }
}
