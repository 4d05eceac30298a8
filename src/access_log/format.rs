//! The access log's line formats: `combined` and `json`, with the escaping, the field caps and
//! the UTC civil dates they share.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use super::Entry;

/// Cap for the request target.
pub(super) const CAP_TARGET: usize = 2048;
/// Cap for User-Agent, Referer and Host.
pub(super) const CAP_HEADER: usize = 512;
/// Cap for every other field.
pub(super) const CAP_OTHER: usize = 256;
/// Appended to a field that was cut at its cap.
const ELLIPSIS: &str = "...";

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// Civil date (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's `civil_from_days`).
pub(super) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction; the fallbacks are never taken.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
}

fn civil(t: SystemTime) -> Civil {
    // Seconds (floored) and milliseconds since the epoch, also for times before it.
    let (secs, millis) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
            d.subsec_millis(),
        ),
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
            let ms = d.subsec_millis();
            if ms == 0 && d.subsec_nanos() == 0 {
                (-s, 0)
            } else {
                // -(s + f) = -(s + 1) + (1 - f), rounding the millis down.
                let nanos = 1_000_000_000 - d.subsec_nanos();
                (-s - 1, nanos / 1_000_000)
            }
        }
    };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400); // [0, 86399]
    let (year, month, day) = civil_from_days(days);
    let sod = u32::try_from(sod).unwrap_or(0);
    Civil {
        year,
        month,
        day,
        hour: sod / 3600,
        minute: sod / 60 % 60,
        second: sod % 60,
        millis,
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `01/Dec/2026:16:04:05 +0000`
pub(super) fn push_clf_time(out: &mut String, t: SystemTime) {
    let c = civil(t);
    let mon = MONTHS
        .get(c.month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("Jan");
    let _ = write!(
        out,
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        c.day, mon, c.year, c.hour, c.minute, c.second
    );
}

/// `2026-12-01T16:04:05.123Z`
pub(super) fn push_rfc3339(out: &mut String, t: SystemTime) {
    let c = civil(t);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    );
}

// ---------------------------------------------------------------------------------------------
// Caps and escaping
// ---------------------------------------------------------------------------------------------

/// `b` cut to at most `cap` bytes including the ellipsis; `true` when it was cut. The cut backs
/// off to a UTF-8 character boundary so valid text stays valid.
pub(super) fn capped(b: &[u8], cap: usize) -> (&[u8], bool) {
    if b.len() <= cap {
        return (b, false);
    }
    let mut cut = cap.saturating_sub(ELLIPSIS.len());
    let floor = cut.saturating_sub(3);
    while cut > floor && b.get(cut).is_some_and(|&c| c & 0xC0 == 0x80) {
        cut -= 1;
    }
    (b.get(..cut).unwrap_or(b), true)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `b` (capped) with every control character, `"`, `\`, non-ASCII byte (and, unless
/// `space_ok`, space) written as `\xHH`. Empty input is written as `-`.
fn push_escaped(out: &mut String, b: &[u8], cap: usize, space_ok: bool) {
    if b.is_empty() {
        out.push('-');
        return;
    }
    let (b, cut) = capped(b, cap);
    for &c in b {
        let plain =
            (matches!(c, 0x21..=0x7e) && c != b'"' && c != b'\\') || (c == b' ' && space_ok);
        if plain {
            out.push(char::from(c));
        } else {
            out.push_str("\\x");
            out.push(char::from(HEX[usize::from(c >> 4)]));
            out.push(char::from(HEX[usize::from(c & 0x0f)]));
        }
    }
    if cut {
        out.push_str(ELLIPSIS);
    }
}

/// A quoted field: `"value"`, or `"-"` when absent or empty.
fn push_quoted(out: &mut String, b: Option<&[u8]>, cap: usize) {
    out.push('"');
    push_escaped(out, b.unwrap_or_default(), cap, true);
    out.push('"');
}

/// ` key=value` with an unquoted, whitespace-free value (`-` when absent or empty).
fn push_kv(out: &mut String, key: &str, v: Option<&[u8]>, cap: usize) {
    out.push(' ');
    out.push_str(key);
    out.push('=');
    push_escaped(out, v.unwrap_or_default(), cap, false);
}

/// ` key="value"`.
fn push_kv_quoted(out: &mut String, key: &str, v: Option<&[u8]>, cap: usize) {
    out.push(' ');
    out.push_str(key);
    out.push('=');
    push_quoted(out, v, cap);
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Appends one `combined` line (without the trailing newline) to `out`.
pub fn format_combined(e: &Entry<'_>, out: &mut String) {
    out.reserve(320 + e.target.len() + e.user_agent.map_or(0, <[u8]>::len));
    let client: IpAddr = e.client.ip().to_canonical();
    let _ = write!(out, "{client} - - [");
    push_clf_time(out, e.time);
    out.push_str("] \"");
    push_escaped(out, e.method.as_bytes(), CAP_OTHER, false);
    out.push(' ');
    push_escaped(out, e.target, CAP_TARGET, false);
    out.push(' ');
    push_escaped(out, e.version.as_bytes(), CAP_OTHER, false);
    let _ = write!(out, "\" {} ", e.status);
    if e.bytes_out == 0 {
        out.push('-');
    } else {
        let _ = write!(out, "{}", e.bytes_out);
    }
    out.push(' ');
    push_quoted(out, e.referer, CAP_HEADER);
    out.push(' ');
    push_quoted(out, e.user_agent, CAP_HEADER);
    push_kv(out, "listener", Some(e.listener.as_bytes()), CAP_OTHER);
    push_kv(out, "route", Some(e.route.as_bytes()), CAP_OTHER);
    let _ = write!(out, " local={}", canonical(e.local));
    push_kv_quoted(out, "host", e.host, CAP_HEADER);
    push_kv(out, "sni", e.sni.map(str::as_bytes), CAP_OTHER);
    push_kv(out, "tls", Some(e.tls_version.as_bytes()), CAP_OTHER);
    push_kv(out, "cipher", Some(e.cipher.as_bytes()), CAP_OTHER);
    push_kv(out, "ja4", Some(e.ja4.as_bytes()), CAP_OTHER);
    push_kv(out, "verify", Some(e.verify.as_bytes()), CAP_OTHER);
    push_kv(out, "mac", e.mac.map(str::as_bytes), CAP_OTHER);
    push_kv_quoted(out, "serial", e.serial.map(str::as_bytes), CAP_OTHER);
    push_kv_quoted(out, "product", e.product.map(str::as_bytes), CAP_OTHER);
    let micros = e.duration.as_micros();
    let _ = write!(
        out,
        " bytes_in={} ms={}.{:03}",
        e.bytes_in,
        micros / 1000,
        micros % 1000
    );
}

/// Capped, lossy-UTF-8 text for JSON.
fn json_text(b: &[u8], cap: usize) -> Cow<'_, str> {
    let (b, cut) = capped(b, cap);
    let s = String::from_utf8_lossy(b);
    if cut {
        let mut s = s.into_owned();
        s.push_str(ELLIPSIS);
        Cow::Owned(s)
    } else {
        s
    }
}

/// A capped `&str` field for JSON.
fn text(s: &str) -> Cow<'_, str> {
    json_text(s.as_bytes(), CAP_OTHER)
}

/// `None` for an empty string.
fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[derive(serde::Serialize)]
struct JsonLine<'a> {
    time: String,
    client: String,
    client_port: u16,
    local: String,
    listener: Cow<'a, str>,
    route: Cow<'a, str>,
    method: Cow<'a, str>,
    target: Cow<'a, str>,
    version: Cow<'a, str>,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
    user_agent: Option<Cow<'a, str>>,
    referer: Option<Cow<'a, str>>,
    host: Option<Cow<'a, str>>,
    sni: Option<Cow<'a, str>>,
    tls_version: Cow<'a, str>,
    cipher: Option<Cow<'a, str>>,
    ja4: Option<Cow<'a, str>>,
    verify: Cow<'a, str>,
    mac: Option<Cow<'a, str>>,
    serial: Option<Cow<'a, str>>,
    product: Option<Cow<'a, str>>,
}

/// Appends one `json` line (without the trailing newline) to `out`.
pub fn format_json(e: &Entry<'_>, out: &mut String) {
    let mut time = String::with_capacity(24);
    push_rfc3339(&mut time, e.time);
    let line = JsonLine {
        time,
        client: e.client.ip().to_canonical().to_string(),
        client_port: e.client.port(),
        local: canonical(e.local).to_string(),
        listener: text(e.listener),
        route: text(e.route),
        method: text(e.method),
        target: json_text(e.target, CAP_TARGET),
        version: text(e.version),
        status: e.status,
        bytes_in: e.bytes_in,
        bytes_out: e.bytes_out,
        // Exact to the microsecond: the shortest round-trip form of micros / 1000.
        duration_ms: e.duration.as_micros() as f64 / 1000.0,
        user_agent: e.user_agent.map(|b| json_text(b, CAP_HEADER)),
        referer: e.referer.map(|b| json_text(b, CAP_HEADER)),
        host: e.host.map(|b| json_text(b, CAP_HEADER)),
        sni: e.sni.and_then(non_empty).map(text),
        tls_version: text(e.tls_version),
        cipher: non_empty(e.cipher).map(text),
        ja4: non_empty(e.ja4).map(text),
        verify: text(e.verify),
        mac: e.mac.map(text),
        serial: e.serial.map(text),
        product: e.product.map(text),
    };
    // Serialising strings and numbers into memory cannot fail.
    if let Ok(s) = serde_json::to_string(&line) {
        out.push_str(&s);
    }
}
