//! The browser client: the static files of `web/`, compiled into the binary so
//! that the server alone is all a user needs (no build step, no file paths to
//! configure). Every answer carries a strict Content-Security-Policy, so that
//! even a bug in the client cannot run script that did not come from here.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Only this origin's own files may run or load; no inline script or style,
/// no plugins, no `<base>` tricks, no framing (clickjacking). `connect-src
/// 'self'` also covers the same-origin `ws:`/`wss:` socket (CSP level 3, as
/// Chromium implements it; the browser tests connect under this policy).
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file and the path it is served at.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Includes a file of `web/` (relative to the workspace root).
macro_rules! web_file {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/", $name))
    };
}

/// Every file of the client. `/` is the page itself; the rest are referenced
/// from it (and from each other, as JavaScript module imports).
const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: web_file!("index.html"),
    },
    Asset {
        path: "/app.css",
        content_type: "text/css; charset=utf-8",
        body: web_file!("app.css"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: web_file!("app.js"),
    },
    Asset {
        path: "/connection.js",
        content_type: "text/javascript; charset=utf-8",
        body: web_file!("connection.js"),
    },
    Asset {
        path: "/model.js",
        content_type: "text/javascript; charset=utf-8",
        body: web_file!("model.js"),
    },
    Asset {
        path: "/render.js",
        content_type: "text/javascript; charset=utf-8",
        body: web_file!("render.js"),
    },
    Asset {
        path: "/storage.js",
        content_type: "text/javascript; charset=utf-8",
        body: web_file!("storage.js"),
    },
    Asset {
        path: "/view.js",
        content_type: "text/javascript; charset=utf-8",
        body: web_file!("view.js"),
    },
    Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        body: web_file!("favicon.svg"),
    },
];

/// The static routes of the browser client, to merge into the API router.
/// Unknown paths are left to that router's JSON 404.
pub(crate) fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(asset.path, get(move || async move { serve(asset) }))
    })
}

fn serve(asset: &'static Asset) -> Response {
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    // Browsers must not guess a script out of anything else.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The files change with the binary: always revalidate, so an upgraded
    // server never runs next to a cached old client.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_distinct_path_and_a_body() {
        for (i, asset) in ASSETS.iter().enumerate() {
            assert!(!asset.body.is_empty(), "{} is empty", asset.path);
            assert!(
                ASSETS[..i].iter().all(|a| a.path != asset.path),
                "{} twice",
                asset.path
            );
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let html = std::str::from_utf8(ASSETS[0].body).expect("utf-8");
        // The policy would block them; catching them here says why a page broke.
        for line in html.lines() {
            let line = line.trim();
            if line.contains("<script") {
                assert!(line.contains("src="), "inline script: {line}");
            }
            assert!(!line.contains("<style"), "inline style: {line}");
            assert!(!line.contains(" style="), "inline style: {line}");
            assert!(!has_event_handler(line), "inline event handler: {line}");
        }
    }

    /// Whether `line` has an attribute like ` onclick=`.
    fn has_event_handler(line: &str) -> bool {
        line.match_indices(" on").any(|(at, _)| {
            let rest = &line[at + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        })
    }

    #[test]
    fn event_handlers_are_recognised() {
        assert!(has_event_handler("<img src=x onerror=alert(1)>"));
        assert!(!has_event_handler("<p>one of the rooms</p>"));
    }
}
