//! The embedded browser client: served at `/` with a strict policy, beside
//! the API, without changing how unknown paths and wrong methods are answered.

mod common;

use common::TestServer;
use hyper::StatusCode;

#[tokio::test]
async fn the_page_is_served_with_a_strict_content_security_policy() {
    let server = TestServer::start().await;
    let (status, headers, body) = server.http("GET", "/", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/html; charset=utf-8")
    );
    let csp = headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .expect("a Content-Security-Policy header");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive:?} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert_eq!(
        headers
            .get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff")
    );
    assert!(body.contains(r#"<script type="module" src="/app.js"></script>"#));
}

#[tokio::test]
async fn every_file_the_page_uses_is_served_with_its_type() {
    let server = TestServer::start().await;
    for (path, content_type) in [
        ("/app.css", "text/css; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/connection.js", "text/javascript; charset=utf-8"),
        ("/model.js", "text/javascript; charset=utf-8"),
        ("/render.js", "text/javascript; charset=utf-8"),
        ("/storage.js", "text/javascript; charset=utf-8"),
        ("/view.js", "text/javascript; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let (status, headers, body) = server.http("GET", path, &[], "").await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some(content_type),
            "{path}"
        );
        assert!(headers.contains_key("content-security-policy"), "{path}");
        assert!(!body.is_empty(), "{path}");
    }
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_keep_their_json_errors() {
    let server = TestServer::start().await;
    let (status, _, body) = server.http("GET", "/no-such-file.js", &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON 404 body");
    assert_eq!(json["code"], "invalid_request");

    let (status, headers, body) = server.http("POST", "/", &[], "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(headers.contains_key("allow"));
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON 405 body");
    assert_eq!(json["code"], "invalid_request");

    // The API beside the page is unchanged.
    let (status, _, body) = server.http("GET", "/healthz", &[], "").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
}
