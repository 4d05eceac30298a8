//! PROXY protocol v1/v2 in front of the ClientHello, for deployments behind an L4 load
//! balancer. Parsing is the `ppp` crate's; this module reads just enough bytes, enforces the
//! listener's mode, and hands back the real client address and whatever followed the header.

use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use ppp::{HeaderResult, PartialResult};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::config::ProxyProtocol;

/// A v1 header is at most 107 bytes; v2 headers carrying TLVs are longer. Past this the peer
/// is not sending a header we accept.
pub const MAX_HEADER_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("PROXY protocol {want:?} required, but the connection does not start with a valid header ({detail})")]
    Missing { want: ProxyProtocol, detail: String },
    #[error("PROXY protocol {got} header where only {want:?} is accepted")]
    WrongVersion {
        got: &'static str,
        want: ProxyProtocol,
    },
    #[error("client closed the connection inside the PROXY header")]
    Closed,
    #[error("i/o while reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Read a PROXY header. Returns the client address it carries (`None` for a LOCAL/UNKNOWN
/// header, e.g. a load balancer's health check) and the bytes after it.
pub async fn read_header<S: AsyncRead + Unpin>(
    io: &mut S,
    want: ProxyProtocol,
) -> Result<(Option<SocketAddr>, BytesMut), ProxyHeaderError> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        let parsed = HeaderResult::parse(&buf);
        if !parsed.is_incomplete() || buf.len() >= MAX_HEADER_BYTES {
            let (len, addr, got) = match parsed {
                HeaderResult::V1(Ok(h)) => (h.header.len(), v1_source(&h.addresses), "v1"),
                HeaderResult::V2(Ok(h)) => (h.len(), v2_source(&h.addresses), "v2"),
                HeaderResult::V1(Err(e)) => {
                    return Err(ProxyHeaderError::Missing {
                        want,
                        detail: e.to_string(),
                    })
                }
                HeaderResult::V2(Err(e)) => {
                    return Err(ProxyHeaderError::Missing {
                        want,
                        detail: e.to_string(),
                    })
                }
            };
            let allowed = matches!(
                (want, got),
                (ProxyProtocol::Any, _) | (ProxyProtocol::V1, "v1") | (ProxyProtocol::V2, "v2")
            );
            if !allowed {
                return Err(ProxyHeaderError::WrongVersion { got, want });
            }
            buf.advance(len);
            return Ok((addr, buf));
        }
        let n = (&mut *io)
            .take((MAX_HEADER_BYTES - buf.len()) as u64)
            .read_buf(&mut buf)
            .await?;
        if n == 0 {
            return Err(ProxyHeaderError::Closed);
        }
    }
}

fn v1_source(a: &ppp::v1::Addresses) -> Option<SocketAddr> {
    match a {
        ppp::v1::Addresses::Tcp4(v4) => Some(SocketAddr::from((v4.source_address, v4.source_port))),
        ppp::v1::Addresses::Tcp6(v6) => Some(SocketAddr::from((v6.source_address, v6.source_port))),
        ppp::v1::Addresses::Unknown => None,
    }
}

fn v2_source(a: &ppp::v2::Addresses) -> Option<SocketAddr> {
    match a {
        ppp::v2::Addresses::IPv4(v4) => Some(SocketAddr::from((v4.source_address, v4.source_port))),
        ppp::v2::Addresses::IPv6(v6) => Some(SocketAddr::from((v6.source_address, v6.source_port))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn v1_and_v2_headers_give_the_client_address_and_the_rest() {
        let mut v1: &[u8] = b"PROXY TCP4 10.1.2.3 192.0.2.10 40000 443\r\n\x16\x03\x01";
        let (addr, rest) = read_header(&mut v1, ProxyProtocol::Any).await.unwrap();
        assert_eq!(addr, Some("10.1.2.3:40000".parse().unwrap()));
        assert_eq!(&rest[..], b"\x16\x03\x01");

        let header = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (
                "10.9.8.7:1234".parse::<SocketAddr>().unwrap(),
                "192.0.2.1:443".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"\x16\x03\x01");
        let mut input: &[u8] = &bytes;
        let (addr, rest) = read_header(&mut input, ProxyProtocol::V2).await.unwrap();
        assert_eq!(addr, Some("10.9.8.7:1234".parse().unwrap()));
        assert_eq!(&rest[..], b"\x16\x03\x01");

        let mut input: &[u8] = &bytes;
        assert!(matches!(
            read_header(&mut input, ProxyProtocol::V1).await,
            Err(ProxyHeaderError::WrongVersion { .. })
        ));
    }

    #[tokio::test]
    async fn tls_without_header_is_missing_and_truncation_is_closed() {
        let mut tls: &[u8] = b"\x16\x03\x01\x00\x2f\x01\x00\x00\x2b\x03\x01";
        assert!(matches!(
            read_header(&mut tls, ProxyProtocol::Any).await,
            Err(ProxyHeaderError::Missing { .. })
        ));
        let mut cut: &[u8] = b"PROXY TCP4 10.1.2.3";
        assert!(matches!(
            read_header(&mut cut, ProxyProtocol::V1).await,
            Err(ProxyHeaderError::Closed)
        ));
        let long = vec![b'P'; MAX_HEADER_BYTES + 10];
        let mut long: &[u8] = &long;
        assert!(read_header(&mut long, ProxyProtocol::Any).await.is_err());
    }
}
