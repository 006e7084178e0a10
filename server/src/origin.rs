//! The browser `Origin` check that stops other web sites from opening
//! sockets with a visitor's credentials (cross-site WebSocket hijacking).

use axum::http::header::{HOST, ORIGIN};
use axum::http::HeaderMap;

/// Allows a request that sends no `Origin` (terminal and native clients), or
/// whose `Origin` is the server's own or in `allowed`. The server's own is
/// `public` when the operator set it, else the scheme it serves plus `Host`.
pub(crate) fn check(
    headers: &HeaderMap,
    tls: bool,
    allowed: &[String],
    public: Option<&str>,
) -> Result<(), String> {
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
    match public {
        Some(own) if same(own) => return Ok(()),
        Some(_) => {}
        None => {
            let scheme = if tls { "https" } else { "http" };
            if let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) {
                if same(&format!(
                    "{scheme}://{}",
                    without_default_port(scheme, host)
                )) {
                    return Ok(());
                }
            }
        }
    }
    Err(format!("origin {origin:?} is not allowed"))
}

/// Browsers leave the scheme's default port out of `Origin`.
fn without_default_port<'a>(scheme: &str, host: &'a str) -> &'a str {
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    host.strip_suffix(default_port).unwrap_or(host)
}

/// `--public-url`: an origin, `http(s)://host[:port]` (a trailing `/` is
/// allowed), kept as browsers send it (default port left out).
pub(crate) fn parse_public_url(text: &str) -> Result<String, String> {
    let trimmed = text.trim_end_matches('/');
    let (scheme, host) = trimmed
        .split_once("://")
        .ok_or_else(|| format!("{text:?} is not a URL like https://chat.example.com"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("{text:?}: the scheme must be http or https"));
    }
    if host.is_empty()
        || host.contains(['/', '?', '#', '@'])
        || host.chars().any(char::is_whitespace)
    {
        return Err(format!(
            "{text:?}: only an origin (scheme, host and port), no path, query or user"
        ));
    }
    Ok(format!(
        "{scheme}://{}",
        without_default_port(&scheme, host)
    ))
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
        assert!(check(&headers("127.0.0.1:8080", None), false, &[], None).is_ok());
        let own = headers("127.0.0.1:8080", Some("http://127.0.0.1:8080"));
        assert!(check(&own, false, &[], None).is_ok());
        let default_port = headers("chat.example:443", Some("https://chat.example"));
        assert!(check(&default_port, true, &[], None).is_ok());
    }

    #[test]
    fn a_public_url_is_the_own_origin_and_host_no_longer_counts() {
        let public = Some("https://chat.example.com");
        let proxied = headers("127.0.0.1:8080", Some("https://chat.example.com"));
        assert!(check(&proxied, false, &[], public).is_ok());
        let rebound = headers("evil.example:8080", Some("http://evil.example:8080"));
        assert!(
            check(&rebound, false, &[], None).is_ok(),
            "Host alone: rebinding passes"
        );
        assert!(
            check(&rebound, false, &[], public).is_err(),
            "not with a public URL"
        );
        let local = headers("127.0.0.1:8080", Some("http://127.0.0.1:8080"));
        assert!(check(&local, false, &[], public).is_err());
    }

    #[test]
    fn a_public_url_is_an_origin() {
        assert_eq!(
            parse_public_url("HTTPS://chat.example.com:443/").as_deref(),
            Ok("https://chat.example.com")
        );
        assert_eq!(
            parse_public_url("http://10.0.0.5:8080").as_deref(),
            Ok("http://10.0.0.5:8080")
        );
        for bad in [
            "chat.example.com",
            "ftp://x",
            "https://",
            "https://x/chat",
            "https://u@x",
            "https://x?y",
        ] {
            assert!(parse_public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn foreign_origins_fail_unless_allowed() {
        let foreign = headers("127.0.0.1:8080", Some("https://evil.example"));
        assert!(check(&foreign, false, &[], None).is_err());
        assert!(check(&foreign, false, &["https://evil.example/".into()], None).is_ok());
        let wrong_scheme = headers("127.0.0.1:8080", Some("https://127.0.0.1:8080"));
        assert!(check(&wrong_scheme, false, &[], None).is_err());
        let null = headers("127.0.0.1:8080", Some("null"));
        assert!(check(&null, false, &[], None).is_err());
    }
}
