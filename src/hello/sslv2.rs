//! SSLv2-format ("compat") ClientHellos: a 2-byte header with the high bit set, then the
//! CLIENT-HELLO fields (RFC 6101 appendix E, RFC 5246 appendix E.2).

use super::{
    empty_hello, is_grease, malformed, record_version_ok, ClientHello, HelloFormat, NotTls,
    ProtocolVersion, Reader, Step, Verdict, MAX_HELLO_BYTES,
};

/// Smallest SSLv2 ClientHello after the 2-byte header: 9 fixed bytes, one cipher spec,
/// a 16-byte challenge.
const MIN_SSLV2_BODY: usize = 9 + 3 + 16;

/// SSLv2-format compat ClientHello with a 2-byte header.
pub(super) fn parse_sslv2(buf: &[u8]) -> Step<ClientHello> {
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
