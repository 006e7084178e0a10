//! The WebSocket wire, as lean as a load generator needs it: the client
//! handshake, a frame reader over one growable buffer, and masked frame
//! encoding.
//!
//! A full client library (tungstenite) spends more per message than the
//! servers under test do; with one core for the generator and a million
//! deliveries a second, the generator would become the bottleneck. This reads
//! frames in place, without a copy or an allocation per message.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;

/// Text frame opcode.
pub const TEXT: u8 = 0x1;
/// Continuation frame opcode.
pub const CONTINUATION: u8 = 0x0;
/// Close frame opcode.
pub const CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const PING: u8 = 0x9;
/// Pong frame opcode.
pub const PONG: u8 = 0xA;

/// Where to connect, and with what TLS settings.
#[derive(Clone)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// TLS, for wss and https.
    pub tls: Option<Tls>,
}

/// A TLS client setup trusting the benchmark's own certificate.
#[derive(Clone)]
pub struct Tls {
    /// The connector (no session resumption: every handshake is a full one).
    pub connector: TlsConnector,
    /// The name the certificate is issued to.
    pub name: rustls::pki_types::ServerName<'static>,
}

impl Tls {
    /// Trusts exactly `cert_pem`, for the host name `localhost`.
    pub fn trusting(cert_pem: &str) -> anyhow::Result<Self> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
            roots.add(cert.context("parsing the benchmark certificate")?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            name: rustls::pki_types::ServerName::try_from("localhost")?,
        })
    }
}

/// A TCP connection, plain or wrapped in TLS.
pub enum Io {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Io {
    /// Connects to `target`, with TLS if it asks for it.
    pub async fn connect(target: &Target) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("connecting to {}", target.addr))?;
        tcp.set_nodelay(true)?;
        Ok(match &target.tls {
            None => Self::Plain(tcp),
            Some(tls) => Self::Tls(Box::new(
                tls.connector
                    .connect(tls.name.clone(), tcp)
                    .await
                    .context("TLS handshake")?,
            )),
        })
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One frame in a [`FrameBuf`]; its payload is [`FrameBuf::payload`].
#[derive(Debug, Clone)]
pub struct Frame {
    /// The final fragment of a message.
    pub fin: bool,
    /// The opcode.
    pub opcode: u8,
    payload: Range<usize>,
}

/// Incoming bytes, parsed into frames in place.
pub struct FrameBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameBuf {
    /// A buffer that reads up to `capacity` bytes at a time; it grows for
    /// larger frames.
    pub fn new(capacity: usize) -> Self {
        Self {
            data: vec![0; capacity.max(64)],
            start: 0,
            end: 0,
        }
    }

    /// Reads more bytes; `Ok(0)` at the end of the stream. Invalidates the
    /// payload ranges of frames returned so far.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.end == self.data.len() {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.data.len() {
            let len = self.data.len() * 2;
            self.data.resize(len, 0);
        }
        let n = reader.read(&mut self.data[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// The next whole frame, if the buffer holds one.
    pub fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        let bytes = &self.data[self.start..self.end];
        if bytes.len() < 2 {
            return Ok(None);
        }
        let fin = bytes[0] & 0x80 != 0;
        let opcode = bytes[0] & 0x0F;
        let masked = bytes[1] & 0x80 != 0;
        let (len, mut header) = match bytes[1] & 0x7F {
            126 if bytes.len() >= 4 => (u64::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 if bytes.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(n), 10)
            }
            126 | 127 => return Ok(None),
            n => (u64::from(n), 2),
        };
        if masked {
            header += 4;
        }
        let Ok(len) = usize::try_from(len) else {
            bail!("frame of {len} bytes");
        };
        if len > 64 * 1024 * 1024 {
            bail!("frame of {len} bytes");
        }
        let total = header + len;
        if bytes.len() < total {
            // Make room now so that the next fill can complete the frame.
            if self.start + total > self.data.len() {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if total > self.data.len() {
                    self.data.resize(total.next_power_of_two(), 0);
                }
            }
            return Ok(None);
        }
        let payload = self.start + header..self.start + total;
        if masked {
            let key_at = self.start + header - 4;
            let mut key = [0u8; 4];
            key.copy_from_slice(&self.data[key_at..key_at + 4]);
            for (i, b) in self.data[payload.clone()].iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        self.start += total;
        Ok(Some(Frame {
            fin,
            opcode,
            payload,
        }))
    }

    /// The payload of a frame that [`Self::next_frame`] just returned.
    pub fn payload(&self, frame: &Frame) -> &[u8] {
        &self.data[frame.payload.clone()]
    }

    /// Bytes received but not yet parsed.
    fn unparsed(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
    }
}

/// Appends a masked, final frame to `out`, as a client must send it.
pub fn encode(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let key = fastrand::u32(..).to_be_bytes();
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
}

/// A masked Close frame with status 1000.
pub fn close_frame() -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    encode(CLOSE, &1000u16.to_be_bytes(), &mut out);
    out
}

/// Sends the upgrade request for `path` and checks the `101` answer. Bytes
/// the server sent after its answer stay in the returned buffer.
pub async fn upgrade(
    io: &mut Io,
    host: &str,
    path: &str,
    buffer: usize,
) -> anyhow::Result<FrameBuf> {
    let key = generate_key();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    io.write_all(request.as_bytes()).await?;
    let mut buf = FrameBuf::new(buffer.max(1024));
    loop {
        if buf.fill(io).await? == 0 {
            bail!("connection closed during the upgrade");
        }
        let mut headers = [httparse::EMPTY_HEADER; 24];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = response.parse(buf.unparsed())? else {
            continue;
        };
        if response.code != Some(101) {
            bail!("upgrade refused with status {:?}", response.code);
        }
        let accept = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
            .map(|h| h.value);
        if accept != Some(derive_accept_key(key.as_bytes()).as_bytes()) {
            bail!("bad Sec-WebSocket-Accept");
        }
        buf.consume(len);
        return Ok(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_buffer() {
        let mut wire = Vec::new();
        encode(TEXT, b"hello", &mut wire);
        encode(TEXT, &[b'x'; 300], &mut wire);
        encode(TEXT, &vec![b'y'; 70_000], &mut wire);
        let mut buf = FrameBuf::new(64);
        let mut reader = &wire[..];
        let mut seen = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            loop {
                while let Some(frame) = buf.next_frame().expect("valid frames") {
                    assert!(frame.fin);
                    assert_eq!(frame.opcode, TEXT);
                    seen.push(buf.payload(&frame).to_vec());
                }
                if buf.fill(&mut reader).await.expect("read") == 0 {
                    break;
                }
            }
        });
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0], b"hello");
        assert_eq!(seen[1], vec![b'x'; 300]);
        assert_eq!(seen[2], vec![b'y'; 70_000]);
    }
}
