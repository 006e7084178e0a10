//! Scraping a server's `--metrics-listen` exposition in tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use hyper::StatusCode;

use crate::{Remote, WAIT};

/// One scrape: every sample by its name with labels (`name{a="b"}`).
#[derive(Debug)]
pub struct Scrape {
    pub text: String,
    pub samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// A sample's value; absent counts as 0, as Prometheus's `or vector(0)`.
    pub fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }
}

pub async fn scrape(addr: SocketAddr) -> Scrape {
    let remote = Remote {
        addr,
        tls_cert: None,
    };
    let (status, headers, text) = remote.http("GET", "/metrics", &[], "").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let samples = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            (series.to_owned(), value.parse().expect("numeric value"))
        })
        .collect();
    Scrape { text, samples }
}

/// Waits until `series` reaches `at_least` (gauges and counters move just
/// after the event a client sees, e.g. a disconnect's bookkeeping).
pub async fn until(addr: SocketAddr, series: &str, wanted: impl Fn(f64) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let scrape = scrape(addr).await;
        if wanted(scrape.get(series)) {
            return scrape;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never reached the expected value; last scrape:\n{}",
            scrape.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// docs/metrics.md, which names every metric.
pub fn metrics_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    std::fs::read_to_string(path).expect("docs/metrics.md")
}

impl Scrape {
    /// The metric families of this scrape, as their `# TYPE` lines name them.
    pub fn families(&self) -> Vec<&str> {
        self.text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split(' ').next())
            .collect()
    }

    /// Fails unless docs/metrics.md names every family of this scrape.
    pub fn assert_documented(&self) {
        let doc = metrics_doc();
        for family in self.families() {
            assert!(
                doc.contains(&format!("`{family}`")),
                "{family} is served but not described in docs/metrics.md"
            );
        }
    }
}
