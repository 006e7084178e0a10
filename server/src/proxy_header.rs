//! The PROXY protocol header (HAProxy's, versions 1 and 2) that a trusted
//! proxy sends before a connection's first byte (`--proxy-protocol-from`):
//! it names the client the proxy is relaying, so that the login throttle,
//! the registration rates and the logs see the client's address, not the
//! proxy's. Exactly the header is read; what follows is the client's own
//! stream (HTTP or TLS), left untouched.

use std::net::{IpAddr, SocketAddr};

use ppp::{v1, v2, HeaderResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The 12 bytes every version 2 header starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The shortest version 1 header: `PROXY UNKNOWN\r\n`.
const V1_SHORTEST: usize = 15;
/// The longest version 1 header, by the specification.
const V1_LONGEST: usize = 107;

/// Why a connection from a trusted proxy was not served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeaderError {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header")]
    Malformed,
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the header from `tcp` and returns the client's address, or `None`
/// when the header names none (a v2 `LOCAL` connection, such as the
/// proxy's own health check, or v1 `UNKNOWN`): then the connection is the
/// proxy's.
pub(crate) async fn read(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, HeaderError> {
    let mut header = vec![0u8; V1_SHORTEST];
    tcp.read_exact(&mut header).await?;
    if header.starts_with(V2_SIGNATURE) {
        // Signature, version and command, family, then the length that follows.
        header.resize(16, 0);
        tcp.read_exact(&mut header[V1_SHORTEST..]).await?;
        let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
        header.resize(16 + length, 0);
        tcp.read_exact(&mut header[16..]).await?;
    } else if header.starts_with(b"PROXY ") {
        // Byte by byte up to its CRLF, so that nothing after it is taken.
        while !header.ends_with(b"\r\n") {
            if header.len() >= V1_LONGEST {
                return Err(HeaderError::Malformed);
            }
            header.push(tcp.read_u8().await?);
        }
    } else {
        return Err(HeaderError::Missing);
    }
    source(&header)
}

/// The client's address named by a whole header.
fn source(header: &[u8]) -> Result<Option<SocketAddr>, HeaderError> {
    let addressed = |ip: IpAddr, port: u16| Some(SocketAddr::new(ip, port));
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(header)) => Ok(match header.addresses {
            v1::Addresses::Tcp4(a) => addressed(a.source_address.into(), a.source_port),
            v1::Addresses::Tcp6(a) => addressed(a.source_address.into(), a.source_port),
            v1::Addresses::Unknown => None,
        }),
        HeaderResult::V2(Ok(header)) => Ok(match (header.command, header.addresses) {
            (v2::Command::Local, _) => None,
            (_, v2::Addresses::IPv4(a)) => addressed(a.source_address.into(), a.source_port),
            (_, v2::Addresses::IPv6(a)) => addressed(a.source_address.into(), a.source_port),
            (_, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => None,
        }),
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => Err(HeaderError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_versions_name_the_client() {
        let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 8080\r\n";
        assert_eq!(
            source(v1).expect("parses"),
            Some("203.0.113.7:51000".parse().expect("addr"))
        );
        let v1_unknown = b"PROXY UNKNOWN\r\n";
        assert_eq!(source(v1_unknown).expect("parses"), None);
        let mut v2 = V2_SIGNATURE.to_vec();
        // PROXY command, TCP over IPv4, 12 bytes of addresses.
        v2.extend_from_slice(&[
            0x21, 0x11, 0, 12, 198, 51, 100, 9, 127, 0, 0, 1, 0x1f, 0x90, 0x1f, 0x91,
        ]);
        assert_eq!(
            source(&v2).expect("parses"),
            Some("198.51.100.9:8080".parse().expect("addr"))
        );
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(source(&local).expect("parses"), None, "the proxy's own");
        assert!(matches!(
            source(b"PROXY TCP4 nonsense\r\n"),
            Err(HeaderError::Malformed)
        ));
    }
}
