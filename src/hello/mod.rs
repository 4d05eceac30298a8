//! Sniffing the first flight of a TLS client, so a connection can be routed before its bytes
//! are replayed, untouched, to the TLS engine (OpenSSL or rustls).
//!
//! Two wire formats are understood:
//!
//! * **TLS records** (SSLv3 and every TLS version): a 5-byte record header (content type 22 =
//!   handshake, version `0x0300..=0x0304`, 16-bit length) followed by a handshake message
//!   (type 1 = ClientHello, 24-bit length). The message may be fragmented over several
//!   consecutive handshake records; they are reassembled. The body is `client_version`,
//!   32 bytes of random, a session id, the cipher suites, the compression methods and an
//!   optional extensions block (SSLv3 and many TLS 1.0 clients send none).
//! * **SSLv2-format ("compat") ClientHello** (RFC 6101 appendix E, RFC 5246 appendix E.2), still
//!   sent by very old VoIP phones: a 2-byte header with the high bit set holding a 15-bit
//!   length, then msg_type 1, the version, three 16-bit lengths (cipher specs, session id,
//!   challenge) and those three fields. Cipher specs are 3 bytes; those starting with 0x00
//!   are TLS suites, the others are SSLv2-only kinds. There are no extensions, so no SNI.
//!
//! [`parse`] is pure and total. Given the bytes received so far it answers:
//!
//! * [`Parse::Incomplete`]: every byte so far is consistent with a ClientHello but more are
//!   needed. Every strict prefix of a valid hello gets this answer (and an empty input too).
//! * [`Parse::Parsed`]: a whole ClientHello; [`ClientHello::wire_len`] says how many input
//!   bytes (whole records) it took. Bytes after it (e.g. TLS 1.3 early data) are ignored.
//! * [`Parse::NotTls`]: the bytes cannot be a ClientHello; [`NotTls`] says why, in words fit
//!   for a log line.
//!
//! The parser never panics, allocates O(input) and runs in O(input log input) time at worst.
//! It never asks for more than [`MAX_HELLO_BYTES`] of input.
//!
//! Layout: this file holds the public types, [`parse`] and the helpers both formats share;
//! `tls.rs` parses TLS-record hellos, `sslv2.rs` SSLv2-format ones, `ciphers.rs` names cipher
//! suites ([`cipher_name`], [`sslv2_cipher_name`]); `builder.rs` (tests and the `test-util`
//! feature only) builds hello bytes for tests.

use std::fmt;

#[cfg(any(test, feature = "test-util"))]
pub mod builder;
mod ciphers;
mod sslv2;
mod tls;

pub use ciphers::{cipher_name, sslv2_cipher_name};

/// Cap on the ClientHello handshake message (its 4-byte header included): 2^16 + 1 KiB, room
/// for one of the hello's 16-bit vectors (the extensions block or the cipher suites) at its
/// wire-format maximum of 2^16 - 1 bytes plus everything else a hello carries. The format
/// itself allows up to 131,396 body bytes (both vectors full, OpenSSL's limit); real hellos,
/// even with post-quantum key shares, stay under 2 KiB. A longer message is
/// [`NotTls::TooLarge`].
pub const MAX_HELLO_MESSAGE: usize = 64 * 1024 + 1024;

/// Cap on how many input bytes a ClientHello may occupy (all of its records, headers
/// included), and so on what a sniffer ever has to buffer: [`MAX_HELLO_MESSAGE`] plus 4 KiB of
/// record headers, enough to split a maximal hello into 2^14-byte records or a typical one
/// into single-byte records. A hello that would need more is [`NotTls::TooLarge`].
/// [`Parse::Incomplete::needed`] never exceeds this.
pub const MAX_HELLO_BYTES: usize = MAX_HELLO_MESSAGE + 4096;

/// Which wire format the hello arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloFormat {
    /// Ordinary TLS handshake record(s).
    Tls,
    /// SSLv2-format compat ClientHello.
    Sslv2,
}

/// A protocol version as it appears on the wire (`0x0301` is TLS 1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion(pub u16);

impl ProtocolVersion {
    pub const SSL2: Self = Self(0x0002);
    pub const SSL3: Self = Self(0x0300);
    pub const TLS1_0: Self = Self(0x0301);
    pub const TLS1_1: Self = Self(0x0302);
    pub const TLS1_2: Self = Self(0x0303);
    pub const TLS1_3: Self = Self(0x0304);
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0x0002 => f.write_str("sslv2"),
            0x0300 => f.write_str("ssl3"),
            0x0301 => f.write_str("tls1.0"),
            0x0302 => f.write_str("tls1.1"),
            0x0303 => f.write_str("tls1.2"),
            0x0304 => f.write_str("tls1.3"),
            other => write!(f, "0x{other:04x}"),
        }
    }
}

/// What the client offered. GREASE values (RFC 8701) are removed from every list and only
/// recorded in [`ClientHello::has_grease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    pub format: HelloFormat,
    /// Record header version; for the SSLv2 format, the hello's version field.
    pub record_version: ProtocolVersion,
    /// The (legacy_)version field of the hello body.
    pub client_version: ProtocolVersion,
    /// Extension 43 (supported_versions) in offered order; empty if absent.
    pub supported_versions: Vec<ProtocolVersion>,
    /// TLS cipher suites in offered order. For the SSLv2 format: the 3-byte specs whose first
    /// byte is 0x00, as their low 16 bits.
    pub cipher_suites: Vec<u16>,
    /// SSLv2 cipher specs that are not TLS suites (always empty for the TLS format).
    pub sslv2_only_ciphers: Vec<u32>,
    /// Compression methods (always empty for the SSLv2 format, which has no such field).
    pub compression_methods: Vec<u8>,
    /// Extension types in offered order.
    pub extensions: Vec<u16>,
    /// server_name (extension 0), first host_name entry, lower-cased, trailing dot removed.
    /// `None` if absent or not a plausible DNS name (letters, digits, `-`, `_`, dots between
    /// non-empty labels, at most 253 bytes).
    pub sni: Option<String>,
    /// ALPN protocol names (extension 16), lossy UTF-8.
    pub alpn: Vec<String>,
    /// Extension 13.
    pub signature_algorithms: Vec<u16>,
    /// Extension 10.
    pub supported_groups: Vec<u16>,
    /// A GREASE value was seen among ciphers, extensions, versions, groups or signature
    /// algorithms.
    pub has_grease: bool,
    /// Input bytes the hello occupied: all of its records (or the SSLv2 header plus body).
    pub wire_len: usize,
}

impl ClientHello {
    /// Highest version the client offers: the max of `supported_versions` if that is
    /// non-empty, else `client_version`.
    pub fn max_version(&self) -> ProtocolVersion {
        self.supported_versions
            .iter()
            .copied()
            .max()
            .unwrap_or(self.client_version)
    }

    /// Whether `suite` (an IANA TLS cipher suite code) is among the offered suites.
    pub fn offers_cipher(&self, suite: u16) -> bool {
        self.cipher_suites.contains(&suite)
    }
}

/// Verdict on the bytes received so far.
// `Parsed` is much larger than the other variants, but the value is short-lived and the
// variant shape is part of the API other modules match on.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// Not enough bytes yet; `needed` is a lower bound on the total input length required
    /// (if known). It is always greater than the input length and never above
    /// [`MAX_HELLO_BYTES`].
    Incomplete {
        needed: Option<usize>,
    },
    Parsed(ClientHello),
    NotTls(NotTls),
}

/// Why the bytes are not a ClientHello. `Display` gives a short plain-English reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotTls {
    /// The first byte is neither a TLS handshake record (0x16) nor an SSLv2 header.
    NotHandshake { first_byte: u8 },
    /// An HTTP request line ("GET ", "POST", "HEAD", "PUT ", "PRI ", ...).
    PlainHttp,
    /// A PROXY protocol (v1 or v2) header.
    ProxyProtocol,
    /// The record header version is not 0x0300..=0x0304.
    BadRecordVersion(u16),
    /// A record header claims more than 2^14 bytes.
    RecordTooLong(usize),
    /// A record of another content type arrived before the ClientHello was complete.
    UnexpectedRecord { content_type: u8 },
    /// The handshake message is not a ClientHello (carries the handshake type).
    NotClientHello(u8),
    /// An SSLv2-format message that is not a CLIENT-HELLO (carries the message type).
    Sslv2NotClientHello(u8),
    /// The hello's version field is not a known SSL/TLS version.
    BadClientVersion(u16),
    /// Structurally invalid; the text says what is wrong.
    Malformed(&'static str),
    /// The hello would need more than [`MAX_HELLO_BYTES`] of input, or its handshake message
    /// more than [`MAX_HELLO_MESSAGE`] bytes.
    TooLarge,
}

impl fmt::Display for NotTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NotTls::NotHandshake { first_byte } => {
                write!(
                    f,
                    "first byte 0x{first_byte:02x} is not a TLS handshake record"
                )?;
                match first_byte {
                    0x14 => f.write_str(" (TLS change_cipher_spec record)"),
                    0x15 => f.write_str(" (TLS alert record)"),
                    0x17 => f.write_str(" (TLS application data record)"),
                    b'A'..=b'Z' => f.write_str(" (looks like plain HTTP)"),
                    0x20..=0x7e => f.write_str(" (looks like plain text)"),
                    _ => Ok(()),
                }
            }
            NotTls::PlainHttp => f.write_str("plain HTTP request on a TLS port"),
            NotTls::ProxyProtocol => {
                f.write_str("PROXY protocol header on a port not configured for it")
            }
            NotTls::BadRecordVersion(v) => {
                write!(f, "TLS record version 0x{v:04x} is not SSLv3..TLS1.3")
            }
            NotTls::RecordTooLong(n) => {
                write!(f, "TLS record length {n} exceeds the protocol maximum")
            }
            NotTls::UnexpectedRecord { content_type } => write!(
                f,
                "record of content type {content_type} interrupts the ClientHello"
            ),
            NotTls::NotClientHello(t) => {
                write!(f, "handshake message type {t} is not a ClientHello")
            }
            NotTls::Sslv2NotClientHello(t) => {
                write!(f, "SSLv2-format message type {t} is not a CLIENT-HELLO")
            }
            NotTls::BadClientVersion(v) => {
                write!(f, "ClientHello version 0x{v:04x} is not an SSL/TLS version")
            }
            NotTls::Malformed(what) => write!(f, "malformed ClientHello: {what}"),
            NotTls::TooLarge => write!(
                f,
                "ClientHello would exceed the sniffing limit ({MAX_HELLO_MESSAGE}-byte message, \
                 {MAX_HELLO_BYTES} bytes of records)"
            ),
        }
    }
}

impl std::error::Error for NotTls {}

/// Classify and, if possible, parse the first bytes a client sent. See the module docs.
pub fn parse(buf: &[u8]) -> Parse {
    let result = match buf.first() {
        None => return Parse::Incomplete { needed: Some(2) },
        Some(0x16) => tls::parse_tls(buf),
        Some(&b) if b & 0x80 != 0 => sslv2::parse_sslv2(buf),
        Some(&first_byte) => Err(classify_other(buf, first_byte)),
    };
    match result {
        Ok(hello) => Parse::Parsed(hello),
        Err(Verdict::Incomplete(needed)) => Parse::Incomplete {
            needed: Some(needed.min(MAX_HELLO_BYTES)),
        },
        Err(Verdict::NotTls(e)) => Parse::NotTls(e),
    }
}

/// Internal early-exit type: either "wait for at least this many bytes" or a rejection.
enum Verdict {
    Incomplete(usize),
    NotTls(NotTls),
}

impl From<NotTls> for Verdict {
    fn from(e: NotTls) -> Self {
        Verdict::NotTls(e)
    }
}

type Step<T> = Result<T, Verdict>;

fn malformed(what: &'static str) -> NotTls {
    NotTls::Malformed(what)
}

/// Name what a non-TLS, non-SSLv2 first flight looks like.
fn classify_other(buf: &[u8], first_byte: u8) -> Verdict {
    const HTTP_METHODS: [&[u8; 4]; 10] = [
        b"GET ", b"POST", b"HEAD", b"PUT ", b"PRI ", b"DELE", b"OPTI", b"CONN", b"PATC", b"TRAC",
    ];
    const PROXY_V2_SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
    if buf.starts_with(b"PROXY ") || buf.starts_with(PROXY_V2_SIG) {
        return NotTls::ProxyProtocol.into();
    }
    if HTTP_METHODS.iter().any(|m| buf.starts_with(&m[..])) {
        return NotTls::PlainHttp.into();
    }
    NotTls::NotHandshake { first_byte }.into()
}

/// A cursor over a byte slice whose reads are all checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Reader { rest }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let head = self.rest.get(..n)?;
        self.rest = self.rest.get(n..)?;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes(b.try_into().ok()?))
    }

    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some(b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    }

    /// A vector with a one-byte length prefix.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A vector with a two-byte length prefix.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// RFC 8701 GREASE: 0x0a0a, 0x1a1a, ..., 0xfafa.
fn is_grease(v: u16) -> bool {
    let [hi, lo] = v.to_be_bytes();
    hi == lo && lo & 0x0f == 0x0a
}

fn record_version_ok(v: u16) -> bool {
    (0x0300..=0x0304).contains(&v)
}

fn empty_hello(format: HelloFormat, record_version: ProtocolVersion) -> ClientHello {
    ClientHello {
        format,
        record_version,
        client_version: record_version,
        supported_versions: Vec::new(),
        cipher_suites: Vec::new(),
        sslv2_only_ciphers: Vec::new(),
        compression_methods: Vec::new(),
        extensions: Vec::new(),
        sni: None,
        alpn: Vec::new(),
        signature_algorithms: Vec::new(),
        supported_groups: Vec::new(),
        has_grease: false,
        wire_len: 0,
    }
}

#[cfg(test)]
mod tests;
