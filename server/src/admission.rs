//! Admission of TCP connections, before any work is done for them (issue
//! 15, finding 6): caps on connections in total and per client address, and
//! file descriptors held back so that the accept loop and `/healthz` keep
//! working when the caps are reached. 600 slow requests against a server
//! with 512 descriptors had made `/healthz` time out while the accept loop
//! logged errors ten times a second.
//!
//! Every TCP connection counts, HTTP or upgraded to a WebSocket: each holds
//! a descriptor. A connection refused gets a short HTTP answer written at
//! once (503 when the server is full, 429 when its address is), and is
//! closed; nothing of its request is read, except on the health lane: while
//! the server is full, the first bytes of a refused connection are read, so
//! that `GET /healthz` still gets its 200 and a load balancer sees a live
//! server. A few refusals are answered at a time, out of the reserve; the
//! next connections wait in the listen queue meanwhile.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Descriptors kept free of connections: for the database, the log, the
/// metrics listener, and the refusals being answered.
pub(crate) const FD_RESERVE: u64 = 64;
/// Refused connections answered at once, out of the reserve.
const REFUSING: usize = 24;
/// How long a refused connection is read after its answer, for its close.
const LINGER: Duration = Duration::from_millis(100);
/// How long a connection on the health lane may take to send its request.
const HEALTH_READ: Duration = Duration::from_millis(500);

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server holds as many connections as it allows.
    Full,
    /// This address holds as many as one address may.
    Address,
}

impl Refusal {
    /// Its label in `chat_connections_refused_total`.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Address => "address",
        }
    }
}

/// Counts the connections being served and refuses those beyond the caps.
pub(crate) struct Admission {
    total_cap: usize,
    per_address_cap: usize,
    // std Mutex: held for a map operation, never across an `.await`.
    counts: Mutex<Counts>,
    /// Refusals being written at once; beyond, a refused connection is just
    /// closed, so that refusing a flood cannot use up the descriptors.
    refusing: Arc<Semaphore>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One admitted connection, counted until every clone is dropped: the HTTP
/// connection holds one, and an upgraded socket's task another.
#[derive(Clone)]
pub(crate) struct Admitted {
    /// Released when the last clone goes.
    _slot: Arc<Slot>,
}

struct Slot {
    admission: Arc<Admission>,
    /// The address it counts against; `None`: a trusted proxy's connection,
    /// counted in the total only.
    address: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.admission.lock();
        counts.total -= 1;
        let Some(address) = self.address else {
            return;
        };
        if let Some(n) = counts.by_address.get_mut(&address) {
            *n -= 1;
            if *n == 0 {
                counts.by_address.remove(&address);
            }
        }
    }
}

impl Admission {
    /// Caps of `max_total` connections (0: as many as the descriptor limit
    /// allows) and `per_address`; the total never goes above the process's
    /// descriptor limit less [`FD_RESERVE`].
    pub(crate) fn new(max_total: usize, per_address: usize) -> Arc<Self> {
        let by_descriptors = descriptor_limit()
            .map_or(usize::MAX, |n| {
                usize::try_from(n.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX)
            })
            .max(1);
        let total_cap = match max_total {
            0 => by_descriptors,
            n => n.min(by_descriptors),
        };
        Arc::new(Self {
            total_cap,
            per_address_cap: per_address.max(1),
            counts: Mutex::new(Counts::default()),
            refusing: Arc::new(Semaphore::new(REFUSING)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most connections this server serves at once.
    pub(crate) fn total_cap(&self) -> usize {
        self.total_cap
    }

    /// Counts a connection from `address`, or says why not.
    pub(crate) fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Admitted, Refusal> {
        let mut counts = self.lock();
        if counts.total >= self.total_cap {
            return Err(Refusal::Full);
        }
        let from_address = counts.by_address.entry(address).or_insert(0);
        if *from_address >= self.per_address_cap {
            return Err(Refusal::Address);
        }
        *from_address += 1;
        counts.total += 1;
        Ok(Admitted {
            _slot: Arc::new(Slot {
                admission: self.clone(),
                address: Some(address),
            }),
        })
    }

    /// Counts a connection from a trusted proxy in the total only: it carries
    /// many clients, whose per-address limits are the proxy's to keep.
    pub(crate) fn admit_proxied(self: &Arc<Self>) -> Result<Admitted, Refusal> {
        let mut counts = self.lock();
        if counts.total >= self.total_cap {
            return Err(Refusal::Full);
        }
        counts.total += 1;
        Ok(Admitted {
            _slot: Arc::new(Slot {
                admission: self.clone(),
                address: None,
            }),
        })
    }

    /// The answer to a refused plain-TCP connection, to be run as a task:
    /// for a full server, its request head is read first, and `GET /healthz`
    /// gets its 200 (the health lane); otherwise the refusal (503 full, 429
    /// address) is written. For a full server, waits while [`REFUSING`]
    /// answers are under way: the next connections then wait in the listen
    /// queue, holding no descriptor, rather than being accepted and cut off
    /// unanswered (a health check among them gets its turn). An address over
    /// its cap gets no such wait, which would hold up everyone else's
    /// accepts: with every answer under way, its connection is just closed.
    pub(crate) async fn refuse(
        self: &Arc<Self>,
        tcp: TcpStream,
        refusal: Refusal,
    ) -> impl Future<Output = ()> + Send + 'static {
        let writing = match refusal {
            Refusal::Full => self.refusing.clone().acquire_owned().await.ok(),
            Refusal::Address => self.refusing.clone().try_acquire_owned().ok(),
        };
        async move {
            let Some(writing) = writing else {
                return; // `tcp` is dropped: closed unanswered
            };
            let mut tcp = tcp;
            let answer = match refusal {
                Refusal::Address => TOO_MANY_FROM_ADDRESS,
                Refusal::Full if asks_for_health(&mut tcp).await => HEALTHY,
                Refusal::Full => FULL,
            };
            close_with(tcp, answer).await;
            drop(writing);
        }
    }
}

/// Writes `answer` and closes `tcp`, lingering: closed with the rest of its
/// request unread, the socket would be reset, and a reset can reach the
/// client before the answer. So after the answer, what the client sent is
/// read (a little, for at most [`LINGER`]) until it closes its side.
async fn close_with(mut tcp: TcpStream, answer: &'static str) {
    let _ = tokio::time::timeout(HEALTH_READ, tcp.write_all(answer.as_bytes())).await;
    let _ = tcp.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut rest = [0u8; 1024];
        for _ in 0..16 {
            match tcp.read(&mut rest).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Whether the request head on `tcp` is a `GET /healthz`.
async fn asks_for_health(tcp: &mut TcpStream) -> bool {
    const WANTED: &[u8] = b"GET /healthz ";
    let mut head = [0u8; WANTED.len()];
    tokio::time::timeout(HEALTH_READ, tcp.read_exact(&mut head))
        .await
        .is_ok_and(|read| read.is_ok() && head == WANTED)
}

/// The process's soft limit on open files, where it can be read.
fn descriptor_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

const HEALTHY: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
const FULL: &str = concat!(
    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: 103\r\n\r\n",
    r#"{"code":"too_many_connections","message":"the server holds as many connections as it can; retry later"}"#
);
const TOO_MANY_FROM_ADDRESS: &str = concat!(
    "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: 104\r\n\r\n",
    r#"{"code":"too_many_connections","message":"too many connections from your address; close some and retry"}"#
);

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn caps_the_total_and_each_address_and_frees_a_slot_on_drop() {
        let admission = Admission::new(3, 2);
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let first = admission.admit(a).expect("1");
        let second = admission.admit(a).expect("2");
        assert_eq!(admission.admit(a).err(), Some(Refusal::Address));
        let third = admission.admit(b).expect("3");
        assert_eq!(admission.admit(b).err(), Some(Refusal::Full));
        let shared = first.clone();
        drop(first);
        assert_eq!(
            admission.admit(b).err(),
            Some(Refusal::Full),
            "a clone holds it"
        );
        drop(shared);
        let again = admission.admit(b).expect("freed");
        drop((second, third, again));
        assert!(admission.lock().by_address.is_empty());
        assert_eq!(admission.lock().total, 0);
    }

    #[test]
    fn the_total_stays_below_the_descriptor_limit() {
        let admission = Admission::new(0, 10);
        if let Some(limit) = descriptor_limit() {
            assert_eq!(
                admission.total_cap() as u64,
                limit.saturating_sub(FD_RESERVE).max(1)
            );
        }
        assert!(Admission::new(usize::MAX, 1).total_cap() <= admission.total_cap());
    }

    #[test]
    fn the_canned_answers_have_the_right_lengths() {
        for answer in [HEALTHY, FULL, TOO_MANY_FROM_ADDRESS] {
            let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.parse().ok())
                .expect("a length");
            assert_eq!(length, body.len(), "{answer}");
            if body.starts_with('{') {
                let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
                assert_eq!(json["code"], "too_many_connections");
            }
        }
    }
}
