//! Byte streams to the server: TCP, or TLS over TCP.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::client::{ClientError, ServerUrl, TlsOptions};

/// How long connecting (TCP plus TLS) may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Any byte stream to the server.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connected stream, TCP or TLS.
pub(crate) type Stream = Box<dyn Io>;

/// Connects to the server, with TLS when its URL says so.
pub(crate) async fn open(server: &ServerUrl, tls: &TlsOptions) -> Result<Stream, ClientError> {
    let connect = async {
        let tcp = TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(|e| ClientError::Unreachable(format!("{}: {e}", server.authority())))?;
        let _ = tcp.set_nodelay(true);
        if !server.tls {
            return Ok(Box::new(tcp) as Stream);
        }
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls.client_config()?));
        let name = ServerName::try_from(server.host.clone())
            .map_err(|e| ClientError::Local(format!("invalid TLS server name: {e}")))?;
        let stream = connector.connect(name, tcp).await.map_err(|e| {
            ClientError::Unreachable(format!(
                "TLS handshake with {} failed: {e} (for a self-signed server use --ca-cert)",
                server.authority()
            ))
        })?;
        Ok(Box::new(stream) as Stream)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| ClientError::Unreachable(format!("{}: timed out", server.authority())))?
}
