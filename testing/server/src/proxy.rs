//! A TCP proxy in front of a server that can cut a client's WebSocket right
//! before the server's next `ack` reaches it, and then refuse connections
//! until told to let them through: the message is stored, the sender never
//! learns it, and has to find out by resuming and resending. It can also cut
//! every connection at once, as a network that goes away.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Frames larger than this are not expected in a test; a bigger length is a
/// parsing error, not a reason to allocate.
const MAX_FRAME: u64 = 1 << 24;

#[derive(Default)]
struct Switches {
    /// Cut the connection that carries the next `ack`.
    armed: AtomicBool,
    /// Close every new connection at once.
    refusing: AtomicBool,
    /// Told when a cut happened.
    cut: Notify,
    cuts: std::sync::atomic::AtomicUsize,
    /// Cancelled (and replaced) to cut every connection open now.
    live: std::sync::Mutex<CancellationToken>,
}

impl Switches {
    fn live(&self) -> CancellationToken {
        self.live.lock().expect("proxy switches").clone()
    }
}

/// The running proxy; it stops when dropped.
pub struct CutProxy {
    addr: SocketAddr,
    switches: Arc<Switches>,
    stop: CancellationToken,
}

impl CutProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let stop = CancellationToken::new();
        let switches = Arc::new(Switches {
            live: std::sync::Mutex::new(stop.child_token()),
            ..Switches::default()
        });
        let (s, token) = (switches.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                if s.refusing.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                tokio::spawn(relay(client, upstream, s.clone(), s.live()));
            }
        });
        Self {
            addr,
            switches,
            stop,
        }
    }

    /// `http://` base URL of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, the WebSocket that is about to receive an `ack` is cut
    /// instead, and connections are refused until [`Self::let_through`].
    pub fn cut_before_next_ack(&self) {
        self.switches.armed.store(true, Ordering::SeqCst);
    }

    /// Waits until the armed cut has happened.
    pub async fn cut(&self) {
        loop {
            let notified = self.switches.cut.notified();
            if self.switches.cuts.load(Ordering::SeqCst) > 0 {
                return;
            }
            notified.await;
        }
    }

    /// Cuts every connection open now and refuses new ones until
    /// [`Self::let_through`].
    pub fn cut_all(&self) {
        self.switches.refusing.store(true, Ordering::SeqCst);
        let next = self.stop.child_token();
        let old = std::mem::replace(
            &mut *self.switches.live.lock().expect("proxy switches"),
            next,
        );
        old.cancel();
    }

    /// Connections go through again.
    pub fn let_through(&self) {
        self.switches.refusing.store(false, Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, s: Arc<Switches>, stop: CancellationToken) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let cut = CancellationToken::new();
    let up = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let down = async {
        if let Err(Cut) = downstream(&mut server_read, &mut client_write, &s).await {
            cut.cancel();
        } else {
            let _ = client_write.shutdown().await;
        }
    };
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        () = cut.cancelled() => {}
        () = stop.cancelled() => {}
    }
    // Dropping both halves of both sockets here is the cut: no close
    // handshake, as when a network goes away.
}

/// The connection was cut on purpose.
struct Cut;

/// Server to client: an HTTP response head, then, after a 101, WebSocket
/// frames one by one (so that an `ack` can be held back), else raw bytes.
async fn downstream(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    s: &Switches,
) -> Result<(), Cut> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match from.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return Ok(()),
        }
    }
    if to.write_all(&head).await.is_err() {
        return Ok(());
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        let _ = tokio::io::copy(from, to).await;
        return Ok(());
    }
    loop {
        let Some(frame) = read_frame(from).await else {
            return Ok(());
        };
        if frame.is_ack() && s.armed.swap(false, Ordering::SeqCst) {
            s.refusing.store(true, Ordering::SeqCst);
            s.cuts.fetch_add(1, Ordering::SeqCst);
            s.cut.notify_waiters();
            return Err(Cut);
        }
        if to.write_all(&frame.bytes).await.is_err() {
            return Ok(());
        }
    }
}

/// One WebSocket frame as it came from the server: all its bytes, and where
/// its payload starts.
struct Frame {
    bytes: Vec<u8>,
    payload_at: usize,
}

impl Frame {
    fn is_ack(&self) -> bool {
        const TEXT: u8 = 1;
        let payload = &self.bytes[self.payload_at..];
        self.bytes[0] & 0x0f == TEXT
            && serde_json::from_slice::<serde_json::Value>(payload)
                .is_ok_and(|v| v["type"] == "ack")
    }
}

async fn read_frame(from: &mut tokio::net::tcp::OwnedReadHalf) -> Option<Frame> {
    let mut bytes = vec![0u8; 2];
    from.read_exact(&mut bytes).await.ok()?;
    let masked = bytes[1] & 0x80 != 0;
    let len = match bytes[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            from.read_exact(&mut ext).await.ok()?;
            bytes.extend_from_slice(&ext);
            u64::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0u8; 8];
            from.read_exact(&mut ext).await.ok()?;
            bytes.extend_from_slice(&ext);
            u64::from_be_bytes(ext)
        }
        n => u64::from(n),
    };
    if len > MAX_FRAME {
        return None;
    }
    if masked {
        // Servers never mask; forward it unparsed all the same.
        let mut key = [0u8; 4];
        from.read_exact(&mut key).await.ok()?;
        bytes.extend_from_slice(&key);
    }
    let payload_at = bytes.len();
    bytes.resize(payload_at + usize::try_from(len).ok()?, 0);
    from.read_exact(&mut bytes[payload_at..]).await.ok()?;
    Some(Frame { bytes, payload_at })
}
