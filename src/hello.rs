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

use std::fmt;

/// Largest TLS record fragment accepted: 2^14, the TLSPlaintext limit (RFC 5246 6.2.1, RFC 8446
/// 5.1). A hello is never compressed or encrypted, so the larger ciphertext limits do not
/// apply; OpenSSL answers a longer record with `record_overflow`, and so does the sniffer
/// ([`NotTls::RecordTooLong`]).
const MAX_RECORD_LEN: usize = 16 * 1024;

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

/// TLS record header length.
const RECORD_HEADER: usize = 5;
/// Smallest ClientHello body: version, random, empty session id, one suite, one method.
const MIN_CLIENT_HELLO_BODY: usize = 2 + 32 + 1 + 2 + 2 + 1 + 1;
/// Smallest SSLv2 ClientHello after the 2-byte header: 9 fixed bytes, one cipher spec,
/// a 16-byte challenge.
const MIN_SSLV2_BODY: usize = 9 + 3 + 16;

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
        Some(0x16) => parse_tls(buf),
        Some(&b) if b & 0x80 != 0 => parse_sslv2(buf),
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

/// Big-endian u16s from `data` (even length required), GREASE removed and noted.
fn u16_list(data: &[u8], grease: &mut bool, what: &'static str) -> Result<Vec<u16>, NotTls> {
    let pairs = data.chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return Err(malformed(what));
    }
    let mut out = Vec::with_capacity(data.len() / 2);
    for pair in pairs {
        let v = u16::from_be_bytes(pair.try_into().map_err(|_| malformed(what))?);
        if is_grease(v) {
            *grease = true;
        } else {
            out.push(v);
        }
    }
    Ok(out)
}

fn record_version_ok(v: u16) -> bool {
    (0x0300..=0x0304).contains(&v)
}

/// Reassemble the handshake message from consecutive handshake records and parse it.
fn parse_tls(buf: &[u8]) -> Step<ClientHello> {
    let mut msg: Vec<u8> = Vec::new();
    let mut record_version = None;
    let mut off = 0usize;
    loop {
        // Total handshake message length (header included), once its header is in.
        let msg_total = handshake_total(&msg)?;
        // Fewest bytes that must still follow the next record header.
        let still = match msg_total {
            Some(total) => total.saturating_sub(msg.len()),
            None => 4usize.saturating_sub(msg.len()),
        };
        let rest = buf.get(off..).unwrap_or_default();
        let Some(header) = rest.get(..RECORD_HEADER) else {
            check_partial_header(rest)?;
            return Err(need(off + RECORD_HEADER + still));
        };
        let mut r = Reader::new(header);
        let (Some(content_type), Some(version), Some(len)) = (r.u8(), r.u16(), r.u16()) else {
            return Err(malformed("truncated record header").into());
        };
        let len = usize::from(len);
        if content_type != 0x16 {
            return Err(NotTls::UnexpectedRecord { content_type }.into());
        }
        if !record_version_ok(version) {
            return Err(NotTls::BadRecordVersion(version).into());
        }
        if len > MAX_RECORD_LEN {
            return Err(NotTls::RecordTooLong(len).into());
        }
        if len == 0 {
            return Err(malformed("empty handshake record").into());
        }
        let record_end = off + RECORD_HEADER + len;
        if record_end > MAX_HELLO_BYTES {
            return Err(NotTls::TooLarge.into());
        }
        let first_version = *record_version.get_or_insert(version);

        let fragment_end = msg.len() + len; // msg length once this whole fragment is in
        let avail = rest.get(RECORD_HEADER..).unwrap_or_default();
        let fragment = avail.get(..len).unwrap_or(avail);
        msg.extend_from_slice(fragment);
        if let Some(total) = handshake_total(&msg)? {
            if fragment_end > total {
                return Err(malformed("record continues past the end of the ClientHello").into());
            }
        }
        if fragment.len() < len {
            return Err(need(record_end));
        }
        off = record_end;
        if let Some(total) = handshake_total(&msg)? {
            if msg.len() == total {
                let body = msg.get(4..).unwrap_or_default();
                let hello = parse_tls_body(body, ProtocolVersion(first_version), off)?;
                return Ok(hello);
            }
        }
    }
}

/// Too few bytes; `needed` is a lower bound on the whole input, or too many for the cap.
fn need(needed: usize) -> Verdict {
    if needed > MAX_HELLO_BYTES {
        NotTls::TooLarge.into()
    } else {
        Verdict::Incomplete(needed)
    }
}

/// Validate the handshake header bytes seen so far; the message's total length if known.
fn handshake_total(msg: &[u8]) -> Step<Option<usize>> {
    if let Some(&t) = msg.first() {
        if t != 1 {
            return Err(NotTls::NotClientHello(t).into());
        }
    }
    let mut r = Reader::new(msg);
    let (Some(_), Some(len)) = (r.u8(), r.u24()) else {
        return Ok(None);
    };
    if len < MIN_CLIENT_HELLO_BODY {
        return Err(malformed("ClientHello too short").into());
    }
    let total = 4 + len;
    if total > MAX_HELLO_MESSAGE || total + RECORD_HEADER > MAX_HELLO_BYTES {
        return Err(NotTls::TooLarge.into());
    }
    Ok(Some(total))
}

/// Reject a partial record header as soon as what is there is wrong.
fn check_partial_header(rest: &[u8]) -> Step<()> {
    if let Some(&content_type) = rest.first() {
        if content_type != 0x16 {
            return Err(NotTls::UnexpectedRecord { content_type }.into());
        }
    }
    if let Some(v) = rest.get(1..3) {
        let version = u16::from_be_bytes(v.try_into().map_err(|_| malformed("record header"))?);
        if !record_version_ok(version) {
            return Err(NotTls::BadRecordVersion(version).into());
        }
    }
    if let Some(v) = rest.get(3..5) {
        let len = usize::from(u16::from_be_bytes(
            v.try_into().map_err(|_| malformed("record header"))?,
        ));
        if len > MAX_RECORD_LEN {
            return Err(NotTls::RecordTooLong(len).into());
        }
    }
    Ok(())
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

/// Parse a complete ClientHello body (after the 4-byte handshake header).
fn parse_tls_body(
    body: &[u8],
    record_version: ProtocolVersion,
    wire_len: usize,
) -> Result<ClientHello, NotTls> {
    let mut h = empty_hello(HelloFormat::Tls, record_version);
    h.wire_len = wire_len;
    let mut r = Reader::new(body);

    let version = r.u16().ok_or(malformed("truncated client_version"))?;
    if version >> 8 != 3 {
        return Err(NotTls::BadClientVersion(version));
    }
    h.client_version = ProtocolVersion(version);
    r.take(32).ok_or(malformed("truncated random"))?;
    let session_id = r
        .vec8()
        .ok_or(malformed("session id overruns the message"))?;
    if session_id.len() > 32 {
        return Err(malformed("session id longer than 32 bytes"));
    }
    let suites = r
        .vec16()
        .ok_or(malformed("cipher suites overrun the message"))?;
    if suites.is_empty() {
        return Err(malformed("no cipher suites"));
    }
    h.cipher_suites = u16_list(suites, &mut h.has_grease, "odd cipher suites length")?;
    let compression = r
        .vec8()
        .ok_or(malformed("compression methods overrun the message"))?;
    if compression.is_empty() {
        return Err(malformed("no compression methods"));
    }
    h.compression_methods = compression.to_vec();
    if r.is_empty() {
        return Ok(h); // SSLv3 / early TLS: no extensions block at all.
    }
    let extensions = r
        .vec16()
        .ok_or(malformed("extensions overrun the message"))?;
    if !r.is_empty() {
        return Err(malformed("trailing bytes after the extensions"));
    }
    parse_extensions(extensions, &mut h)?;
    Ok(h)
}

fn parse_extensions(data: &[u8], h: &mut ClientHello) -> Result<(), NotTls> {
    let mut r = Reader::new(data);
    let mut all_types = Vec::new();
    while !r.is_empty() {
        let ext_type = r.u16().ok_or(malformed("truncated extension header"))?;
        let ext = r
            .vec16()
            .ok_or(malformed("extension overruns the extensions block"))?;
        all_types.push(ext_type);
        if is_grease(ext_type) {
            h.has_grease = true;
            continue;
        }
        h.extensions.push(ext_type);
        match ext_type {
            0 => h.sni = parse_sni(ext)?,
            10 => {
                let list = whole_vec16(ext, "bad supported_groups extension")?;
                h.supported_groups = u16_list(list, &mut h.has_grease, "odd supported_groups")?;
            }
            13 => {
                let list = whole_vec16(ext, "bad signature_algorithms extension")?;
                h.signature_algorithms =
                    u16_list(list, &mut h.has_grease, "odd signature_algorithms")?;
            }
            16 => h.alpn = parse_alpn(ext)?,
            43 => {
                let mut er = Reader::new(ext);
                let list = er
                    .vec8()
                    .filter(|l| !l.is_empty())
                    .ok_or(malformed("bad supported_versions extension"))?;
                if !er.is_empty() {
                    return Err(malformed("bad supported_versions extension"));
                }
                h.supported_versions = u16_list(list, &mut h.has_grease, "odd supported_versions")?
                    .into_iter()
                    .map(ProtocolVersion)
                    .collect();
            }
            _ => {}
        }
    }
    all_types.sort_unstable();
    if all_types.windows(2).any(|w| w.first() == w.get(1)) {
        return Err(malformed("duplicate extension"));
    }
    Ok(())
}

/// The contents of a u16-length-prefixed vector that must fill `data` exactly.
fn whole_vec16<'a>(data: &'a [u8], what: &'static str) -> Result<&'a [u8], NotTls> {
    let mut r = Reader::new(data);
    let inner = r.vec16().ok_or(malformed(what))?;
    if !r.is_empty() {
        return Err(malformed(what));
    }
    Ok(inner)
}

fn parse_sni(ext: &[u8]) -> Result<Option<String>, NotTls> {
    if ext.is_empty() {
        return Ok(None);
    }
    let list = whole_vec16(ext, "bad server_name extension")?;
    let mut r = Reader::new(list);
    let mut host = None;
    while !r.is_empty() {
        let name_type = r.u8().ok_or(malformed("bad server_name entry"))?;
        let name = r.vec16().ok_or(malformed("bad server_name entry"))?;
        if name_type == 0 && host.is_none() {
            host = Some(name);
        }
    }
    Ok(host.and_then(normalize_hostname))
}

/// Lower-case, drop one trailing dot, and accept only plausible DNS names.
fn normalize_hostname(name: &[u8]) -> Option<String> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    let plausible = !name.is_empty()
        && name.len() <= 253
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.split(|&b| b == b'.').all(|label| !label.is_empty());
    plausible.then(|| {
        name.iter()
            .map(|&b| char::from(b.to_ascii_lowercase()))
            .collect()
    })
}

fn parse_alpn(ext: &[u8]) -> Result<Vec<String>, NotTls> {
    let list = whole_vec16(ext, "bad ALPN extension")?;
    let mut r = Reader::new(list);
    let mut out = Vec::new();
    while !r.is_empty() {
        let name = r
            .vec8()
            .filter(|n| !n.is_empty())
            .ok_or(malformed("bad ALPN protocol name"))?;
        out.push(String::from_utf8_lossy(name).into_owned());
    }
    Ok(out)
}

/// SSLv2-format compat ClientHello with a 2-byte header.
fn parse_sslv2(buf: &[u8]) -> Step<ClientHello> {
    let mut r = Reader::new(buf);
    let Some(header) = r.u16() else {
        return Err(Verdict::Incomplete(2));
    };
    let len = usize::from(header & 0x7fff);
    if len < MIN_SSLV2_BODY {
        return Err(malformed("SSLv2 record too short for a CLIENT-HELLO").into());
    }
    // Check what of the fixed part has arrived before asking for more.
    if let Some(&msg_type) = buf.get(2) {
        if msg_type != 1 {
            return Err(NotTls::Sslv2NotClientHello(msg_type).into());
        }
    }
    let fixed = buf.get(2..11).unwrap_or_default();
    let mut f = Reader::new(fixed);
    let _msg_type = f.u8();
    let version = f.u16();
    if let Some(v) = version {
        if v != 0x0002 && !record_version_ok(v) {
            return Err(NotTls::BadClientVersion(v).into());
        }
    }
    if let (Some(v), Some(specs), Some(sid), Some(challenge)) = (version, f.u16(), f.u16(), f.u16())
    {
        let (specs, sid, challenge) =
            (usize::from(specs), usize::from(sid), usize::from(challenge));
        if specs == 0 || specs / 3 * 3 != specs {
            return Err(malformed("SSLv2 cipher spec length not a positive multiple of 3").into());
        }
        if sid > 32 {
            return Err(malformed("SSLv2 session id longer than 32 bytes").into());
        }
        if !(16..=32).contains(&challenge) {
            return Err(malformed("SSLv2 challenge not 16..32 bytes").into());
        }
        if 9 + specs + sid + challenge != len {
            return Err(malformed("SSLv2 field lengths do not add up to the record length").into());
        }
        let wire_len = 2 + len;
        if wire_len > MAX_HELLO_BYTES {
            return Err(NotTls::TooLarge.into());
        }
        let Some(spec_bytes) = buf.get(11..11 + specs) else {
            return Err(Verdict::Incomplete(wire_len));
        };
        if buf.len() < wire_len {
            return Err(Verdict::Incomplete(wire_len));
        }
        let mut h = empty_hello(HelloFormat::Sslv2, ProtocolVersion(v));
        h.wire_len = wire_len;
        for spec in spec_bytes.chunks_exact(3) {
            let value = spec.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
            match u16::try_from(value) {
                Ok(suite) if is_grease(suite) => h.has_grease = true,
                Ok(suite) => h.cipher_suites.push(suite),
                Err(_) => h.sslv2_only_ciphers.push(value),
            }
        }
        return Ok(h);
    }
    let wire_len = 2 + len;
    if wire_len > MAX_HELLO_BYTES {
        return Err(NotTls::TooLarge.into());
    }
    Err(Verdict::Incomplete(wire_len))
}

/// OpenSSL-style name (OpenSSL 1.1+ spelling; 1.0.2 spelling for suites it dropped) of an
/// IANA cipher suite code; TLS 1.3 suites and SCSVs use their IANA names. `None` if unknown.
pub fn cipher_name(suite: u16) -> Option<&'static str> {
    Some(match suite {
        0x0001 => "NULL-MD5",
        0x0002 => "NULL-SHA",
        0x0003 => "EXP-RC4-MD5",
        0x0004 => "RC4-MD5",
        0x0005 => "RC4-SHA",
        0x0006 => "EXP-RC2-CBC-MD5",
        0x0007 => "IDEA-CBC-SHA",
        0x0008 => "EXP-DES-CBC-SHA",
        0x0009 => "DES-CBC-SHA",
        0x000a => "DES-CBC3-SHA",
        0x0011 => "EXP-EDH-DSS-DES-CBC-SHA",
        0x0012 => "EDH-DSS-DES-CBC-SHA",
        0x0013 => "DHE-DSS-DES-CBC3-SHA",
        0x0014 => "EXP-EDH-RSA-DES-CBC-SHA",
        0x0015 => "EDH-RSA-DES-CBC-SHA",
        0x0016 => "DHE-RSA-DES-CBC3-SHA",
        0x0017 => "EXP-ADH-RC4-MD5",
        0x0018 => "ADH-RC4-MD5",
        0x0019 => "EXP-ADH-DES-CBC-SHA",
        0x001a => "ADH-DES-CBC-SHA",
        0x001b => "ADH-DES-CBC3-SHA",
        0x002f => "AES128-SHA",
        0x0032 => "DHE-DSS-AES128-SHA",
        0x0033 => "DHE-RSA-AES128-SHA",
        0x0034 => "ADH-AES128-SHA",
        0x0035 => "AES256-SHA",
        0x0038 => "DHE-DSS-AES256-SHA",
        0x0039 => "DHE-RSA-AES256-SHA",
        0x003a => "ADH-AES256-SHA",
        0x003b => "NULL-SHA256",
        0x003c => "AES128-SHA256",
        0x003d => "AES256-SHA256",
        0x0040 => "DHE-DSS-AES128-SHA256",
        0x0041 => "CAMELLIA128-SHA",
        0x0045 => "DHE-RSA-CAMELLIA128-SHA",
        0x0060 => "EXP1024-RC4-MD5",
        0x0061 => "EXP1024-RC2-CBC-MD5",
        0x0062 => "EXP1024-DES-CBC-SHA",
        0x0063 => "EXP1024-DHE-DSS-DES-CBC-SHA",
        0x0064 => "EXP1024-RC4-SHA",
        0x0065 => "EXP1024-DHE-DSS-RC4-SHA",
        0x0066 => "DHE-DSS-RC4-SHA",
        0x0067 => "DHE-RSA-AES128-SHA256",
        0x006a => "DHE-DSS-AES256-SHA256",
        0x006b => "DHE-RSA-AES256-SHA256",
        0x0084 => "CAMELLIA256-SHA",
        0x0088 => "DHE-RSA-CAMELLIA256-SHA",
        0x0096 => "SEED-SHA",
        0x009c => "AES128-GCM-SHA256",
        0x009d => "AES256-GCM-SHA384",
        0x009e => "DHE-RSA-AES128-GCM-SHA256",
        0x009f => "DHE-RSA-AES256-GCM-SHA384",
        0x00a2 => "DHE-DSS-AES128-GCM-SHA256",
        0x00a3 => "DHE-DSS-AES256-GCM-SHA384",
        0x00ff => "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0x1304 => "TLS_AES_128_CCM_SHA256",
        0x1305 => "TLS_AES_128_CCM_8_SHA256",
        0x5600 => "TLS_FALLBACK_SCSV",
        0xc002 => "ECDH-ECDSA-RC4-SHA",
        0xc003 => "ECDH-ECDSA-DES-CBC3-SHA",
        0xc004 => "ECDH-ECDSA-AES128-SHA",
        0xc005 => "ECDH-ECDSA-AES256-SHA",
        0xc006 => "ECDHE-ECDSA-NULL-SHA",
        0xc007 => "ECDHE-ECDSA-RC4-SHA",
        0xc008 => "ECDHE-ECDSA-DES-CBC3-SHA",
        0xc009 => "ECDHE-ECDSA-AES128-SHA",
        0xc00a => "ECDHE-ECDSA-AES256-SHA",
        0xc00c => "ECDH-RSA-RC4-SHA",
        0xc00d => "ECDH-RSA-DES-CBC3-SHA",
        0xc00e => "ECDH-RSA-AES128-SHA",
        0xc00f => "ECDH-RSA-AES256-SHA",
        0xc010 => "ECDHE-RSA-NULL-SHA",
        0xc011 => "ECDHE-RSA-RC4-SHA",
        0xc012 => "ECDHE-RSA-DES-CBC3-SHA",
        0xc013 => "ECDHE-RSA-AES128-SHA",
        0xc014 => "ECDHE-RSA-AES256-SHA",
        0xc023 => "ECDHE-ECDSA-AES128-SHA256",
        0xc024 => "ECDHE-ECDSA-AES256-SHA384",
        0xc027 => "ECDHE-RSA-AES128-SHA256",
        0xc028 => "ECDHE-RSA-AES256-SHA384",
        0xc02b => "ECDHE-ECDSA-AES128-GCM-SHA256",
        0xc02c => "ECDHE-ECDSA-AES256-GCM-SHA384",
        0xc02f => "ECDHE-RSA-AES128-GCM-SHA256",
        0xc030 => "ECDHE-RSA-AES256-GCM-SHA384",
        0xc09c => "AES128-CCM",
        0xc09d => "AES256-CCM",
        0xc09e => "DHE-RSA-AES128-CCM",
        0xc09f => "DHE-RSA-AES256-CCM",
        0xc0ac => "ECDHE-ECDSA-AES128-CCM",
        0xc0ad => "ECDHE-ECDSA-AES256-CCM",
        0xcca8 => "ECDHE-RSA-CHACHA20-POLY1305",
        0xcca9 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        0xccaa => "DHE-RSA-CHACHA20-POLY1305",
        _ => return None,
    })
}

/// Name of an SSLv2-only 3-byte cipher spec (see [`ClientHello::sslv2_only_ciphers`]): the
/// OpenSSL 1.0 name prefixed with `SSL2-`, since several clash with TLS suite names.
/// `None` if unknown.
pub fn sslv2_cipher_name(spec: u32) -> Option<&'static str> {
    Some(match spec {
        0x01_0080 => "SSL2-RC4-MD5",
        0x02_0080 => "SSL2-EXP-RC4-MD5",
        0x03_0080 => "SSL2-RC2-CBC-MD5",
        0x04_0080 => "SSL2-EXP-RC2-CBC-MD5",
        0x05_0080 => "SSL2-IDEA-CBC-MD5",
        0x06_0040 => "SSL2-DES-CBC-MD5",
        0x07_00c0 => "SSL2-DES-CBC3-MD5",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- builders -------------------------------------------------------------------

    fn u16be(v: u16) -> [u8; 2] {
        v.to_be_bytes()
    }

    fn u24be(n: usize) -> [u8; 3] {
        let b = (n as u32).to_be_bytes();
        [b[1], b[2], b[3]]
    }

    fn vec16(data: &[u8]) -> Vec<u8> {
        let mut v = u16be(data.len() as u16).to_vec();
        v.extend_from_slice(data);
        v
    }

    fn u16s(vals: &[u16]) -> Vec<u8> {
        vals.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    /// A ClientHello body plus its 4-byte handshake header.
    struct HelloBuilder {
        version: u16,
        session_id: Vec<u8>,
        suites: Vec<u16>,
        compression: Vec<u8>,
        /// `None`: no extensions block at all.
        extensions: Option<Vec<(u16, Vec<u8>)>>,
    }

    impl HelloBuilder {
        fn new(version: u16, suites: &[u16]) -> Self {
            HelloBuilder {
                version,
                session_id: Vec::new(),
                suites: suites.to_vec(),
                compression: vec![0],
                extensions: None,
            }
        }

        fn ext(mut self, ext_type: u16, data: Vec<u8>) -> Self {
            self.extensions
                .get_or_insert_with(Vec::new)
                .push((ext_type, data));
            self
        }

        fn body(&self) -> Vec<u8> {
            let mut b = u16be(self.version).to_vec();
            b.extend((0..32u8).map(|i| i.wrapping_mul(7)));
            b.push(self.session_id.len() as u8);
            b.extend_from_slice(&self.session_id);
            b.extend(vec16(&u16s(&self.suites)));
            b.push(self.compression.len() as u8);
            b.extend_from_slice(&self.compression);
            if let Some(exts) = &self.extensions {
                let mut block = Vec::new();
                for (t, data) in exts {
                    block.extend(u16be(*t));
                    block.extend(vec16(data));
                }
                b.extend(vec16(&block));
            }
            b
        }

        fn handshake(&self) -> Vec<u8> {
            handshake_msg(1, &self.body())
        }

        /// One record with record version 0x0301.
        fn wire(&self) -> Vec<u8> {
            records(0x0301, &self.handshake(), &[])
        }
    }

    fn handshake_msg(msg_type: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![msg_type];
        m.extend(u24be(body.len()));
        m.extend_from_slice(body);
        m
    }

    /// Wrap `msg` in handshake records, cutting fragments at the given `cuts` (offsets
    /// into `msg`).
    fn records(version: u16, msg: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(msg.len());
        for w in bounds.windows(2) {
            let frag = &msg[w[0]..w[1]];
            out.push(0x16);
            out.extend(u16be(version));
            out.extend(vec16(frag));
        }
        out
    }

    fn ext_sni(name: &str) -> Vec<u8> {
        let mut entry = vec![0u8];
        entry.extend(vec16(name.as_bytes()));
        vec16(&entry)
    }

    fn ext_alpn(names: &[&str]) -> Vec<u8> {
        let mut list = Vec::new();
        for n in names {
            list.push(n.len() as u8);
            list.extend_from_slice(n.as_bytes());
        }
        vec16(&list)
    }

    fn ext_u16_list(vals: &[u16]) -> Vec<u8> {
        vec16(&u16s(vals))
    }

    fn ext_supported_versions(vals: &[u16]) -> Vec<u8> {
        let list = u16s(vals);
        let mut v = vec![list.len() as u8];
        v.extend(list);
        v
    }

    fn sslv2_hello(version: u16, specs: &[u32], session_id: &[u8], challenge: &[u8]) -> Vec<u8> {
        let spec_bytes: Vec<u8> = specs
            .iter()
            .flat_map(|s| s.to_be_bytes()[1..].to_vec())
            .collect();
        let mut body = vec![1u8];
        body.extend(u16be(version));
        body.extend(u16be(spec_bytes.len() as u16));
        body.extend(u16be(session_id.len() as u16));
        body.extend(u16be(challenge.len() as u16));
        body.extend(spec_bytes);
        body.extend_from_slice(session_id);
        body.extend_from_slice(challenge);
        let mut out = u16be(0x8000 | body.len() as u16).to_vec();
        out.extend(body);
        out
    }

    // ---- sample hellos ----------------------------------------------------------------

    const SPA_SUITES: [u16; 9] = [
        0x0039, 0x0035, 0x0033, 0x002f, 0x0005, 0x0004, 0x0064, 0x0060, 0x0003,
    ];

    fn spa_tls10() -> Vec<u8> {
        HelloBuilder::new(0x0301, &SPA_SUITES).wire()
    }

    const SSLV2_SPECS: [u32; 7] = [
        0x00_0039, 0x00_002f, 0x01_0080, 0x00_0005, 0x07_00c0, 0x02_0080, 0x00_0004,
    ];

    fn sslv2_compat() -> Vec<u8> {
        sslv2_hello(0x0301, &SSLV2_SPECS, &[], &[0x5a; 16])
    }

    fn modern_builder() -> HelloBuilder {
        HelloBuilder::new(
            0x0303,
            &[0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xcca9],
        )
        .ext(0x0a0a, Vec::new())
        .ext(0, ext_sni("Prov.Example.com."))
        .ext(23, Vec::new())
        .ext(0xff01, vec![0])
        .ext(10, ext_u16_list(&[0x3a3a, 0x001d, 0x0017, 0x0018]))
        .ext(16, ext_alpn(&["h2", "http/1.1"]))
        .ext(13, ext_u16_list(&[0x0403, 0x0804, 0x0401, 0x0503]))
        .ext(43, ext_supported_versions(&[0x5a5a, 0x0304, 0x0303]))
        .ext(51, vec16(&[0x3a, 0x3a, 0x00, 0x01, 0x00]))
        .ext(0x1a1a, vec![0])
    }

    fn modern_tls13() -> Vec<u8> {
        let mut b = modern_builder();
        b.session_id = vec![0x11; 32];
        b.wire()
    }

    fn split_two_records() -> Vec<u8> {
        let msg = modern_builder().handshake();
        records(0x0301, &msg, &[msg.len() / 2])
    }

    fn samples() -> Vec<(&'static str, Vec<u8>)> {
        let msg = modern_builder().handshake();
        vec![
            ("spa_tls10", spa_tls10()),
            ("sslv2_compat", sslv2_compat()),
            ("modern_tls13", modern_tls13()),
            ("split_two_records", split_two_records()),
            // Handshake header itself split, and a 1-byte record.
            ("split_header", records(0x0301, &msg, &[2, 3, 40])),
            (
                "ssl3",
                records(
                    0x0300,
                    &HelloBuilder::new(0x0300, &[0x000a]).handshake(),
                    &[],
                ),
            ),
            (
                "pure_sslv2",
                sslv2_hello(0x0002, &[0x01_0080], &[], &[1; 16]),
            ),
        ]
    }

    fn parsed(buf: &[u8]) -> ClientHello {
        match parse(buf) {
            Parse::Parsed(h) => h,
            other => panic!("expected Parsed, got {other:?}"),
        }
    }

    fn not_tls(buf: &[u8]) -> NotTls {
        match parse(buf) {
            Parse::NotTls(e) => e,
            other => panic!("expected NotTls, got {other:?}"),
        }
    }

    // ---- valid hellos -------------------------------------------------------------------

    #[test]
    fn empty_input_is_incomplete() {
        assert!(matches!(parse(&[]), Parse::Incomplete { .. }));
    }

    #[test]
    fn tls10_without_extensions_spa_firmware() {
        let wire = spa_tls10();
        let h = parsed(&wire);
        assert_eq!(h.format, HelloFormat::Tls);
        assert_eq!(h.record_version, ProtocolVersion::TLS1_0);
        assert_eq!(h.client_version, ProtocolVersion::TLS1_0);
        assert_eq!(h.max_version(), ProtocolVersion::TLS1_0);
        assert_eq!(h.max_version().to_string(), "tls1.0");
        assert_eq!(h.cipher_suites, SPA_SUITES);
        assert!(h.offers_cipher(0x0064));
        assert!(!h.offers_cipher(0xc02f));
        assert!(h.sslv2_only_ciphers.is_empty());
        assert_eq!(h.compression_methods, vec![0]);
        assert!(h.extensions.is_empty());
        assert!(h.supported_versions.is_empty());
        assert_eq!(h.sni, None);
        assert!(h.alpn.is_empty());
        assert!(!h.has_grease);
        assert_eq!(h.wire_len, wire.len());
        let names: Vec<_> = h.cipher_suites.iter().map(|&c| cipher_name(c)).collect();
        assert_eq!(
            names,
            [
                "DHE-RSA-AES256-SHA",
                "AES256-SHA",
                "DHE-RSA-AES128-SHA",
                "AES128-SHA",
                "RC4-SHA",
                "RC4-MD5",
                "EXP1024-RC4-SHA",
                "EXP1024-RC4-MD5",
                "EXP-RC4-MD5"
            ]
            .map(Some)
        );
    }

    #[test]
    fn sslv2_compat_hello() {
        let wire = sslv2_compat();
        let h = parsed(&wire);
        assert_eq!(h.format, HelloFormat::Sslv2);
        assert_eq!(h.record_version, ProtocolVersion(0x0301));
        assert_eq!(h.client_version, ProtocolVersion(0x0301));
        assert_eq!(h.max_version(), ProtocolVersion(0x0301));
        assert_eq!(h.cipher_suites, vec![0x0039, 0x002f, 0x0005, 0x0004]);
        assert_eq!(h.sslv2_only_ciphers, vec![0x01_0080, 0x07_00c0, 0x02_0080]);
        assert_eq!(sslv2_cipher_name(0x07_00c0), Some("SSL2-DES-CBC3-MD5"));
        assert!(h.extensions.is_empty() && h.compression_methods.is_empty());
        assert_eq!(h.sni, None);
        assert_eq!(h.wire_len, wire.len());
        assert_eq!(h.wire_len, 2 + 9 + 21 + 16);
    }

    #[test]
    fn pure_sslv2_hello_reports_version_2() {
        let wire = sslv2_hello(0x0002, &[0x01_0080, 0x06_0040], &[7; 16], &[1; 32]);
        let h = parsed(&wire);
        assert_eq!(h.client_version, ProtocolVersion::SSL2);
        assert_eq!(h.max_version().to_string(), "sslv2");
        assert!(h.cipher_suites.is_empty());
        assert_eq!(h.sslv2_only_ciphers, vec![0x01_0080, 0x06_0040]);
    }

    fn check_modern(h: &ClientHello) {
        assert_eq!(h.format, HelloFormat::Tls);
        assert_eq!(h.client_version, ProtocolVersion::TLS1_2);
        assert_eq!(h.max_version(), ProtocolVersion::TLS1_3);
        assert_eq!(h.max_version().to_string(), "tls1.3");
        assert_eq!(
            h.supported_versions,
            vec![ProtocolVersion::TLS1_3, ProtocolVersion::TLS1_2]
        );
        assert_eq!(
            h.cipher_suites,
            vec![0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xcca9]
        );
        assert_eq!(h.extensions, vec![0, 23, 0xff01, 10, 16, 13, 43, 51]);
        assert_eq!(h.sni.as_deref(), Some("prov.example.com"));
        assert_eq!(h.alpn, vec!["h2".to_string(), "http/1.1".to_string()]);
        assert_eq!(h.signature_algorithms, vec![0x0403, 0x0804, 0x0401, 0x0503]);
        assert_eq!(h.supported_groups, vec![0x001d, 0x0017, 0x0018]);
        assert!(h.has_grease);
    }

    #[test]
    fn tls13_with_grease_sni_alpn() {
        let wire = modern_tls13();
        let h = parsed(&wire);
        check_modern(&h);
        assert_eq!(h.record_version, ProtocolVersion::TLS1_0);
        assert_eq!(h.wire_len, wire.len());
        assert_eq!(cipher_name(0x1303), Some("TLS_CHACHA20_POLY1305_SHA256"));
    }

    #[test]
    fn hello_split_across_records() {
        for (name, wire) in samples() {
            if name.starts_with("split") {
                let h = parsed(&wire);
                check_modern(&h);
                assert_eq!(h.wire_len, wire.len(), "{name}");
            }
        }
        // A record version other than the first one is fine; the first one is reported.
        let msg = modern_builder().handshake();
        let mut wire = records(0x0303, &msg[..10], &[]);
        wire.extend(records(0x0301, &msg[10..], &[]));
        assert_eq!(parsed(&wire).record_version, ProtocolVersion::TLS1_2);
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        for (name, wire) in samples() {
            for n in 0..wire.len() {
                match parse(&wire[..n]) {
                    Parse::Incomplete { needed } => {
                        if let Some(needed) = needed {
                            assert!(needed > n, "{name}: prefix {n} needed {needed}");
                            assert!(needed <= wire.len(), "{name}: prefix {n} needed {needed}");
                            assert!(needed <= MAX_HELLO_BYTES);
                        }
                    }
                    other => panic!("{name}: prefix of {n} bytes gave {other:?}"),
                }
            }
            assert_eq!(parsed(&wire).wire_len, wire.len(), "{name}");
        }
    }

    #[test]
    fn bytes_after_the_hello_are_not_consumed() {
        for (name, wire) in samples() {
            let mut more = wire.clone();
            more.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3]);
            assert_eq!(parsed(&more).wire_len, wire.len(), "{name}");
        }
    }

    #[test]
    fn largest_allowed_hello_parses_and_needed_stays_capped() {
        // An extensions block at its 16-bit maximum, in 2^14-byte records (tlsfuzzer's
        // test-large-hello sends such hellos, with the first record only 2 bytes long).
        let big = HelloBuilder::new(0x0303, &[0x1301]).ext(21, vec![0; 65_535 - 4]);
        let msg = big.handshake();
        assert!(msg.len() <= MAX_HELLO_MESSAGE);
        let cuts: Vec<usize> = std::iter::once(2)
            .chain((1..).map(|i| 2 + i * 16_384))
            .take_while(|&c| c < msg.len())
            .collect();
        let wire = records(0x0303, &msg, &cuts);
        assert!(wire.len() <= MAX_HELLO_BYTES);
        assert_eq!(parsed(&wire).wire_len, wire.len());
        // Full 2^14-byte records; a record may not be longer.
        let full_cuts: Vec<usize> = (1..=msg.len() / 16_384).map(|i| i * 16_384).collect();
        let full = records(0x0303, &msg, &full_cuts);
        assert_eq!(parsed(&full).wire_len, full.len());
        assert_eq!(
            not_tls(&[0x16, 3, 1, 0x40, 0x01]),
            NotTls::RecordTooLong(16_385)
        );
        // The message cap itself: a header announcing exactly the cap waits for the rest,
        // one byte more is refused at once.
        let announce = |len: usize| {
            let mut w = vec![0x16, 3, 1, 0x40, 0x00, 1];
            w.extend(u24be(len));
            w
        };
        assert!(matches!(
            parse(&announce(MAX_HELLO_MESSAGE - 4)),
            Parse::Incomplete { .. }
        ));
        assert_eq!(
            not_tls(&announce(MAX_HELLO_MESSAGE - 4 + 1)),
            NotTls::TooLarge
        );
        for n in [0, 3, 5, 6, 7, 100, 16_389, 16_390, wire.len() - 1] {
            match parse(&wire[..n]) {
                Parse::Incomplete {
                    needed: Some(needed),
                } => assert!(needed > n && needed <= wire.len()),
                other => panic!("prefix {n}: {other:?}"),
            }
        }
    }

    #[test]
    fn sni_normalisation() {
        let sni = |name: &str| {
            parsed(
                &HelloBuilder::new(0x0303, &[0x1301])
                    .ext(0, ext_sni(name))
                    .wire(),
            )
            .sni
        };
        assert_eq!(sni("A-b_c.EXAMPLE.org"), Some("a-b_c.example.org".into()));
        assert_eq!(sni("bad name.example"), None);
        assert_eq!(sni("a..b"), None);
        assert_eq!(sni("."), None);
        assert_eq!(sni("x\u{e9}.example"), None);
        // A non-host_name entry first is skipped.
        let mut list = vec![7u8];
        list.extend(vec16(b"ignored"));
        list.push(0);
        list.extend(vec16(b"Phone.Example"));
        let h = parsed(
            &HelloBuilder::new(0x0303, &[0x1301])
                .ext(0, vec16(&list))
                .wire(),
        );
        assert_eq!(h.sni.as_deref(), Some("phone.example"));
    }

    // ---- not TLS ------------------------------------------------------------------------

    #[test]
    fn plain_http_and_proxy_protocol() {
        let e = not_tls(b"GET / HTTP/1.1\r\nHost: prov.example.com\r\n\r\n");
        assert_eq!(e, NotTls::PlainHttp);
        assert!(e.to_string().contains("plain HTTP"));
        for req in [&b"POST /x"[..], b"HEAD /", b"PUT /a", b"PRI * HTTP/2.0"] {
            assert_eq!(not_tls(req), NotTls::PlainHttp);
        }
        assert_eq!(not_tls(b"PROXY TCP4 1.2.3.4"), NotTls::ProxyProtocol);
        let e = not_tls(b"G");
        assert_eq!(e, NotTls::NotHandshake { first_byte: b'G' });
        assert_eq!(
            e.to_string(),
            "first byte 0x47 is not a TLS handshake record (looks like plain HTTP)"
        );
        assert_eq!(
            not_tls(&[0x15, 3, 1, 0, 2, 2, 40]),
            NotTls::NotHandshake { first_byte: 0x15 }
        );
    }

    #[test]
    fn record_header_errors() {
        assert_eq!(
            not_tls(&[0x16, 0x03, 0x01, 0x41, 0x01]),
            NotTls::RecordTooLong(0x4101)
        );
        assert_eq!(
            not_tls(&[0x16, 0x03, 0x01, 0xff, 0xff, 1]),
            NotTls::RecordTooLong(0xffff)
        );
        assert_eq!(
            not_tls(&[0x16, 0x02, 0x00]),
            NotTls::BadRecordVersion(0x0200)
        );
        assert_eq!(
            not_tls(&[0x16, 0x03, 0x05]),
            NotTls::BadRecordVersion(0x0305)
        );
        assert!(matches!(not_tls(&[0x16, 3, 1, 0, 0]), NotTls::Malformed(_)));
    }

    #[test]
    fn non_handshake_record_in_between() {
        let msg = modern_builder().handshake();
        let mut wire = records(0x0301, &msg[..50], &[]);
        wire.extend_from_slice(&[0x15, 3, 1, 0, 2, 1, 0]);
        assert_eq!(
            not_tls(&wire),
            NotTls::UnexpectedRecord { content_type: 0x15 }
        );
        // Already rejected when only the stray record's first byte has arrived.
        assert_eq!(
            not_tls(&wire[..56]),
            NotTls::UnexpectedRecord { content_type: 0x15 }
        );
    }

    #[test]
    fn wrong_handshake_type() {
        let body = HelloBuilder::new(0x0303, &[0x1301]).body();
        let wire = records(0x0303, &handshake_msg(2, &body), &[]);
        assert_eq!(not_tls(&wire), NotTls::NotClientHello(2));
        // Detected as soon as the type byte is in.
        assert_eq!(not_tls(&wire[..6]), NotTls::NotClientHello(2));
    }

    #[test]
    fn extension_length_overrun() {
        let mut body = HelloBuilder::new(0x0303, &[0x1301])
            .ext(16, ext_alpn(&["h2"]))
            .body();
        // The extension's own length claims one byte more than is there.
        let n = body.len();
        body[n - 6] += 1;
        let wire = records(0x0303, &handshake_msg(1, &body), &[]);
        assert!(matches!(not_tls(&wire), NotTls::Malformed(_)));

        // The extensions block length overruns the message.
        let mut body = HelloBuilder::new(0x0303, &[0x1301]).ext(23, vec![]).body();
        let n = body.len();
        body[n - 5] += 1;
        let wire = records(0x0303, &handshake_msg(1, &body), &[]);
        assert_eq!(
            not_tls(&wire),
            NotTls::Malformed("extensions overrun the message")
        );
    }

    #[test]
    fn odd_cipher_suite_length() {
        let mut body = HelloBuilder::new(0x0301, &[0x002f, 0x0035]).body();
        // cipher_suites length is at 2 + 32 + 1 (empty session id).
        body[36] = 3;
        body.insert(38 + 3, 0); // keep the message self-consistent otherwise
        let wire = records(0x0301, &handshake_msg(1, &body), &[]);
        assert_eq!(
            not_tls(&wire),
            NotTls::Malformed("odd cipher suites length")
        );
    }

    #[test]
    fn other_structural_errors() {
        // Trailing garbage after a hello without extensions.
        let mut body = HelloBuilder::new(0x0301, &[0x002f]).body();
        body.push(0);
        let wire = records(0x0301, &handshake_msg(1, &body), &[]);
        assert!(matches!(not_tls(&wire), NotTls::Malformed(_)));
        // Duplicate extension.
        let wire = HelloBuilder::new(0x0303, &[0x1301])
            .ext(23, vec![])
            .ext(23, vec![])
            .wire();
        assert_eq!(not_tls(&wire), NotTls::Malformed("duplicate extension"));
        // Record longer than the handshake message it carries.
        let mut msg = HelloBuilder::new(0x0301, &[0x002f]).handshake();
        msg.extend_from_slice(&[0x14, 0, 0, 0]);
        assert!(matches!(
            not_tls(&records(0x0301, &msg, &[])),
            NotTls::Malformed(_)
        ));
        // Client version that is not SSL/TLS.
        let wire = HelloBuilder::new(0x0201, &[0x002f]).wire();
        assert_eq!(not_tls(&wire), NotTls::BadClientVersion(0x0201));
        // Handshake length beyond the cap.
        let mut wire = vec![0x16, 3, 1, 0x40, 0, 1];
        wire.extend(u24be(100_000));
        assert_eq!(not_tls(&wire), NotTls::TooLarge);
        // Many tiny records would need more than the cap.
        let msg = HelloBuilder::new(0x0303, &[0x1301])
            .ext(21, vec![0; 12_000])
            .handshake();
        let cuts: Vec<usize> = (1..msg.len()).collect();
        assert_eq!(not_tls(&records(0x0303, &msg, &cuts)), NotTls::TooLarge);
    }

    #[test]
    fn sslv2_errors() {
        let good = sslv2_compat();
        let mut bad = good.clone();
        bad[2] = 4; // SERVER-HELLO
        assert_eq!(not_tls(&bad[..3]), NotTls::Sslv2NotClientHello(4));
        let mut bad = good.clone();
        bad[3] = 0x01;
        assert_eq!(not_tls(&bad), NotTls::BadClientVersion(0x0101));
        let mut bad = good.clone();
        bad[6] += 1; // cipher spec length no longer a multiple of 3
        assert!(matches!(not_tls(&bad[..11]), NotTls::Malformed(_)));
        let mut bad = good.clone();
        bad[10] = 8; // challenge too short
        assert!(matches!(not_tls(&bad), NotTls::Malformed(_)));
        assert!(matches!(not_tls(&[0x80, 0x05]), NotTls::Malformed(_)));
    }

    #[test]
    fn display_texts() {
        assert_eq!(ProtocolVersion::SSL3.to_string(), "ssl3");
        assert_eq!(ProtocolVersion::TLS1_1.to_string(), "tls1.1");
        assert_eq!(ProtocolVersion::TLS1_2.to_string(), "tls1.2");
        assert_eq!(ProtocolVersion(0x7f1c).to_string(), "0x7f1c");
        assert_eq!(
            NotTls::RecordTooLong(20000).to_string(),
            "TLS record length 20000 exceeds the protocol maximum"
        );
        assert!(NotTls::TooLarge.to_string().contains("66560-byte message"));
    }

    #[test]
    fn cipher_names() {
        assert_eq!(
            cipher_name(0x00ff),
            Some("TLS_EMPTY_RENEGOTIATION_INFO_SCSV")
        );
        assert_eq!(cipher_name(0x5600), Some("TLS_FALLBACK_SCSV"));
        assert_eq!(cipher_name(0x1301), Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!(cipher_name(0x000a), Some("DES-CBC3-SHA"));
        assert_eq!(cipher_name(0xc030), Some("ECDHE-RSA-AES256-GCM-SHA384"));
        assert_eq!(cipher_name(0x0002), Some("NULL-SHA"));
        assert_eq!(cipher_name(0x0a0a), None);
    }

    // ---- robustness ---------------------------------------------------------------------

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn check_invariants(buf: &[u8]) {
        match parse(buf) {
            Parse::Incomplete { needed } => {
                if let Some(n) = needed {
                    assert!(n > buf.len() && n <= MAX_HELLO_BYTES, "{buf:?}");
                }
            }
            Parse::Parsed(h) => assert!(h.wire_len <= buf.len()),
            Parse::NotTls(e) => assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for i in 0..20_000 {
            let len = rng.below(600);
            let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Make a share of inputs look like a handshake record or an SSLv2 header.
            match (i % 4, buf.len()) {
                (0, 5..) => buf[..3].copy_from_slice(&[0x16, 0x03, 0x01]),
                (1, 1..) => buf[0] |= 0x80,
                _ => {}
            }
            check_invariants(&buf);
        }
    }

    #[test]
    fn mutated_hellos_never_panic() {
        let mut rng = XorShift(42);
        for (_, wire) in samples() {
            for _ in 0..3_000 {
                let mut buf = wire.clone();
                let at = rng.below(buf.len());
                buf[at] = rng.next() as u8;
                if rng.below(4) == 0 {
                    buf.truncate(rng.below(buf.len() + 1));
                }
                check_invariants(&buf);
            }
        }
    }
}
