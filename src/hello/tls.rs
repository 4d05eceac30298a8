//! ClientHellos in TLS handshake records (SSLv3 and every TLS version): record reassembly,
//! the hello body and its extensions.

use super::{
    empty_hello, is_grease, malformed, record_version_ok, ClientHello, HelloFormat, NotTls,
    ProtocolVersion, Reader, Step, Verdict, MAX_HELLO_BYTES, MAX_HELLO_MESSAGE,
};

/// Largest TLS record fragment accepted: 2^14, the TLSPlaintext limit (RFC 5246 6.2.1, RFC 8446
/// 5.1). A hello is never compressed or encrypted, so the larger ciphertext limits do not
/// apply; OpenSSL answers a longer record with `record_overflow`, and so does the sniffer
/// ([`NotTls::RecordTooLong`]).
const MAX_RECORD_LEN: usize = 16 * 1024;
/// TLS record header length.
const RECORD_HEADER: usize = 5;
/// Smallest ClientHello body: version, random, empty session id, one suite, one method.
const MIN_CLIENT_HELLO_BODY: usize = 2 + 32 + 1 + 2 + 2 + 1 + 1;

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

/// Reassemble the handshake message from consecutive handshake records and parse it.
pub(super) fn parse_tls(buf: &[u8]) -> Step<ClientHello> {
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
