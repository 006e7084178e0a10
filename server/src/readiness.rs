//! Readiness: whether this server can do its job now, as opposed to whether
//! it runs at all (`/healthz`). `/readyz` asks every engine the server
//! depends on and answers 503, naming the failing ones, until all answer.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{join_all, BoxFuture};
use serde::Serialize;

/// How long one check may take before it counts as failed: a load balancer
/// polls often and must not pile up requests behind a dead engine.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One engine's check: `Ok` when it can be used now.
pub(crate) type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The checks `/readyz` runs, by name.
#[derive(Clone, Default)]
pub(crate) struct Readiness {
    checks: Vec<(&'static str, Check)>,
}

/// The answer of `/readyz`.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// `ready` or `not_ready`.
    pub(crate) status: &'static str,
    /// What failed, by check name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) failing: Vec<Failing>,
}

/// One failed check.
#[derive(Debug, Serialize)]
pub(crate) struct Failing {
    /// The engine: `message_log`, `bus`, ...
    pub(crate) check: &'static str,
    /// Why, for the operator.
    pub(crate) reason: String,
}

impl Readiness {
    /// Adds a check named `name`.
    pub(crate) fn add(&mut self, name: &'static str, check: Check) {
        self.checks.push((name, check));
    }

    /// Runs every check at once, each bounded by [`CHECK_TIMEOUT`].
    pub(crate) async fn report(&self) -> Report {
        let results = join_all(self.checks.iter().map(|(name, check)| {
            let run = check();
            async move {
                match tokio::time::timeout(CHECK_TIMEOUT, run).await {
                    Ok(Ok(())) => None,
                    Ok(Err(reason)) => Some(Failing {
                        check: name,
                        reason,
                    }),
                    Err(_) => Some(Failing {
                        check: name,
                        reason: format!("no answer within {CHECK_TIMEOUT:?}"),
                    }),
                }
            }
        }))
        .await;
        let failing: Vec<Failing> = results.into_iter().flatten().collect();
        Report {
            status: if failing.is_empty() {
                "ready"
            } else {
                "not_ready"
            },
            failing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_or_hanging_check_makes_the_server_not_ready() {
        let mut readiness = Readiness::default();
        readiness.add("fine", Arc::new(|| Box::pin(async { Ok(()) })));
        assert_eq!(readiness.report().await.status, "ready");
        readiness.add(
            "broken",
            Arc::new(|| Box::pin(async { Err("down".into()) })),
        );
        tokio::time::pause();
        readiness.add(
            "stuck",
            Arc::new(|| Box::pin(std::future::pending::<Result<(), String>>())),
        );
        let report = readiness.report().await;
        assert_eq!(report.status, "not_ready");
        let names: Vec<_> = report.failing.iter().map(|f| f.check).collect();
        assert_eq!(names, ["broken", "stuck"]);
        assert_eq!(report.failing[0].reason, "down");
    }
}
