//! `require_mac_match`: which MACs a request-target names, computed on the form the backend acts
//! on. Backends percent-decode, resolve dot-segments and parse the query before they look for a
//! MAC, so a check on the raw target is bypassed by `%61`, `%2e%2e`, `%2F` or `?mac=`. This module
//! splits, decodes and normalises the target the way a backend would, refuses the spellings on
//! which backends disagree (encoded `/`, `..`, NUL, `\`, broken `%`), and returns every MAC found
//! in the path segments and the query. Pure, panic-free and linear in the target's length.

use std::fmt;

/// At most this many distinct MACs are returned; the caller refuses any mismatch anyway.
const MAX_MACS: usize = 16;

/// Why a request-target is refused on a require_mac_match route (answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguous {
    EncodedSlash,
    DotDotSegment,
    Nul,
    Backslash,
    BadPercentEncoding,
    NotOriginForm,
}

impl Ambiguous {
    /// A stable snake_case name for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Ambiguous::EncodedSlash => "encoded_slash",
            Ambiguous::DotDotSegment => "dot_dot_segment",
            Ambiguous::Nul => "nul",
            Ambiguous::Backslash => "backslash",
            Ambiguous::BadPercentEncoding => "bad_percent_encoding",
            Ambiguous::NotOriginForm => "not_origin_form",
        }
    }
}

impl fmt::Display for Ambiguous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ambiguous::EncodedSlash => "the path has an encoded '/' (%2F)",
            Ambiguous::DotDotSegment => "the path has a '..' segment (possibly percent-encoded)",
            Ambiguous::Nul => "the request-target has a NUL byte (raw or %00)",
            Ambiguous::Backslash => "the request-target has a '\\' (raw or %5C)",
            Ambiguous::BadPercentEncoding => {
                "the request-target has a '%' not followed by two hex digits"
            }
            Ambiguous::NotOriginForm => {
                "the request-target is neither '/path?query' nor 'http(s)://host/path?query'"
            }
        })
    }
}

/// Every MAC (12 lower-case hex digits, deduplicated, in order of first appearance) the
/// request-target names, in its path segments or query, after percent-decoding; `extra` is the
/// operator's optional regex (first capture group = a MAC) applied to the decoded path.
pub fn target_macs(target: &[u8], extra: Option<&regex::Regex>) -> Result<Vec<String>, Ambiguous> {
    if target.contains(&0) {
        return Err(Ambiguous::Nul);
    }
    if target.contains(&b'\\') {
        return Err(Ambiguous::Backslash);
    }
    let rest = origin_part(target)?;
    let rest = rest.split(|&b| b == b'#').next().unwrap_or_default();
    let (path, query) = match rest.iter().position(|&b| b == b'?') {
        Some(q) => (
            rest.get(..q).unwrap_or_default(),
            rest.get(q + 1..).unwrap_or_default(),
        ),
        None => (rest, &[][..]),
    };
    let path: &[u8] = if path.is_empty() { b"/" } else { path };

    let mut found = Found(Vec::new());
    let decoded_path = scan_path(path, &mut found)?;
    scan_query(query, &mut found)?;
    if let Some(re) = extra {
        if !found.full() {
            let text = String::from_utf8_lossy(&decoded_path);
            if let Some(group) = re.captures(&text).and_then(|c| c.get(1)) {
                let hex: Vec<u8> = group
                    .as_str()
                    .bytes()
                    .filter(|b| !matches!(b, b':' | b'-' | b'.'))
                    .collect();
                if hex.len() == 12 && hex.iter().all(u8::is_ascii_hexdigit) {
                    found.push(&hex);
                }
            }
        }
    }
    Ok(found.0)
}

/// Every MAC a header value names (e.g. the User-Agent, `Cisco/SPA508G-7.4.8a
/// (0002FDFF2103)`, which FusionPBX falls back to when the query has no `mac`).
pub fn text_macs(text: &[u8]) -> Vec<String> {
    let mut found = Found(Vec::new());
    scan_text(text, &mut found);
    found.0
}

/// The distinct MACs seen so far, capped at [`MAX_MACS`].
struct Found(Vec<String>);

impl Found {
    fn full(&self) -> bool {
        self.0.len() >= MAX_MACS
    }

    /// `hex` is 12 ASCII hex digits, any case.
    fn push(&mut self, hex: &[u8]) {
        if self.full() {
            return;
        }
        let mac: String = hex
            .iter()
            .map(|b| char::from(b.to_ascii_lowercase()))
            .collect();
        if !self.0.contains(&mac) {
            self.0.push(mac);
        }
    }
}

/// `/path?query` of an origin-form or absolute-form (`http`/`https`, any case) target.
fn origin_part(target: &[u8]) -> Result<&[u8], Ambiguous> {
    if target.first() == Some(&b'/') {
        return Ok(target);
    }
    let after = strip_prefix_ci(target, b"http://")
        .or_else(|| strip_prefix_ci(target, b"https://"))
        .ok_or(Ambiguous::NotOriginForm)?;
    let end = after
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(after.len());
    Ok(after.get(end..).unwrap_or_default())
}

fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let (head, tail) = s.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(tail)
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Percent-decodes `raw` (and `+` as space when `form`), refusing NUL, `\`, a broken `%` and,
/// in a path segment (`!form`), an encoded `/`.
fn decode(raw: &[u8], form: bool) -> Result<Vec<u8>, Ambiguous> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        let byte = match b {
            b'%' => {
                let hi = bytes.next().and_then(|&h| hex_value(h));
                let lo = bytes.next().and_then(|&l| hex_value(l));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => (hi << 4) | lo,
                    _ => return Err(Ambiguous::BadPercentEncoding),
                }
            }
            b'+' if form => b' ',
            other => other,
        };
        match byte {
            0 => return Err(Ambiguous::Nul),
            b'\\' => return Err(Ambiguous::Backslash),
            b'/' if !form => return Err(Ambiguous::EncodedSlash),
            _ => out.push(byte),
        }
    }
    Ok(out)
}

/// Splits the path on `/`, decodes and checks each segment, scans it for MACs, and returns the
/// decoded path re-joined with `/` (`.` segments removed) for the operator's regex.
fn scan_path(path: &[u8], found: &mut Found) -> Result<Vec<u8>, Ambiguous> {
    let mut joined = Vec::with_capacity(path.len());
    let mut segments = path.split(|&b| b == b'/').peekable();
    let mut first = true;
    while let Some(raw) = segments.next() {
        let segment = decode(raw, false)?;
        // `..;x` is `..` to servlet containers; no device asks for it.
        let before_params = segment.split(|&b| b == b';').next().unwrap_or_default();
        if segment == b".." || before_params == b".." {
            return Err(Ambiguous::DotDotSegment);
        }
        let is_dot = segment == b".";
        if is_dot && segments.peek().is_some() {
            continue;
        }
        if !first {
            joined.push(b'/');
        }
        first = false;
        if !is_dot {
            scan_text(&segment, found);
            joined.extend_from_slice(&segment);
        }
    }
    Ok(joined)
}

/// Splits the query on `&` (and `;`), each part on its first `=`, form-decodes key and value and
/// scans them. A value is also scanned for the FusionPBX reading (every non-hex byte dropped).
fn scan_query(query: &[u8], found: &mut Found) -> Result<(), Ambiguous> {
    for piece in query.split(|&b| b == b'&') {
        let (key, value) = split_pair(piece);
        let key = decode(key, true)?;
        let value = decode(value, true)?;
        scan_text(&key, found);
        scan_text(&value, found);
        scan_hex_only(&value, found);
        if piece.contains(&b';') {
            for sub in piece.split(|&b| b == b';') {
                let value = decode(split_pair(sub).1, true)?;
                scan_hex_only(&value, found);
            }
        }
    }
    Ok(())
}

fn split_pair(piece: &[u8]) -> (&[u8], &[u8]) {
    match piece.iter().position(|&b| b == b'=') {
        Some(eq) => (
            piece.get(..eq).unwrap_or_default(),
            piece.get(eq + 1..).unwrap_or_default(),
        ),
        None => (piece, &[]),
    }
}

/// MACs in one decoded segment, key or value: separated spellings, then alphanumeric runs.
fn scan_text(s: &[u8], found: &mut Found) {
    if found.full() {
        return;
    }
    let mut i = 0;
    while i < s.len() && !found.full() {
        match separated_at(s, i) {
            Some(hex) => {
                found.push(&hex);
                i += 17;
            }
            None => i += 1,
        }
    }
    for run in s.split(|b| !b.is_ascii_alphanumeric()) {
        let Some(prefix_len) = run.len().checked_sub(12) else {
            continue;
        };
        let Some((prefix, tail)) = run.split_at_checked(prefix_len) else {
            continue;
        };
        if tail.iter().all(u8::is_ascii_hexdigit) && prefix.iter().all(u8::is_ascii_alphabetic) {
            found.push(tail);
        }
    }
}

/// `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff` starting at `i`, not part of a longer hex or
/// separator-hex sequence; returns its 12 hex digits.
fn separated_at(s: &[u8], i: usize) -> Option<Vec<u8>> {
    let window = s.get(i..i.checked_add(17)?)?;
    let sep = *window.get(2)?;
    if sep != b':' && sep != b'-' {
        return None;
    }
    let mut hex = Vec::with_capacity(12);
    for (pos, &b) in window.iter().enumerate() {
        if pos % 3 == 2 {
            if b != sep {
                return None;
            }
        } else if b.is_ascii_hexdigit() {
            hex.push(b);
        } else {
            return None;
        }
    }
    let at = |j: Option<usize>| j.and_then(|j| s.get(j)).copied();
    let continues = |next: Option<u8>, beyond: Option<u8>| match next {
        Some(b) if b.is_ascii_hexdigit() => true,
        Some(b) if b == sep => beyond.is_some_and(|c| c.is_ascii_hexdigit()),
        _ => false,
    };
    let before = continues(at(i.checked_sub(1)), at(i.checked_sub(2)));
    let after = continues(at(i.checked_add(17)), at(i.checked_add(18)));
    (!before && !after).then_some(hex)
}

/// The FusionPBX reading of a `mac=` value: drop every non-hex byte; exactly 12 left is a MAC.
fn scan_hex_only(value: &[u8], found: &mut Found) {
    let mut hex = Vec::with_capacity(12);
    for &b in value.iter().filter(|b| b.is_ascii_hexdigit()) {
        if hex.len() == 12 {
            return;
        }
        hex.push(b);
    }
    if hex.len() == 12 {
        found.push(&hex);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const OWN: &str = "000e08aaaaaa";

    fn macs(target: &str) -> Result<Vec<String>, Ambiguous> {
        target_macs(target.as_bytes(), None)
    }

    /// Each helper takes space-separated targets (a request-target never holds a raw space).
    fn own(targets: &str) {
        for t in targets.split_whitespace() {
            assert_eq!(macs(t), Ok(vec![OWN.to_string()]), "{t}");
        }
    }

    fn none(targets: &str) {
        for t in targets.split_whitespace() {
            assert_eq!(macs(t), Ok(vec![]), "{t}");
        }
    }

    fn refused(why: Ambiguous, targets: &str) {
        for t in targets.split_whitespace() {
            assert_eq!(macs(t), Err(why), "{t}");
        }
    }

    #[test]
    fn fusionpbx_query() {
        own("/app/provision/?mac=000e08aaaaaa /app/provision/?MAC=000E08AAAAAA");
        own("/app/provision/index.php?mac=00:0e:08:AA:AA:AA&file=spa.cfg");
        own("/?mac=000e08aaaaaa+x /?name=SEP000E08AAAAAA /?id=000e08aaaaaa#ignored");
        // FusionPBX keeps only [0-9a-f./] of `mac`, so these too name 000e08aaaaaa.
        own("/?mac=000e08aaaaa+a /?mac=0-0-0-e-0-8-a-a-a-a-a-a /?x=1;mac=000e08aa%3Baaaa");
    }

    #[test]
    fn cisco_paths() {
        own("/spa000e08aaaaaa.cfg /SPA000E08AAAAAA.xml /cisco/000e08aaaaaa/spa.cfg");
        own("/prov/000E08AAAAAA/spa504g.cfg /provision/cfg000e08aaaaaa.xml");
    }

    #[test]
    fn separated_spellings() {
        own("/p/00:0e:08:aa:aa:aa.cfg /p/00-0E-08-AA-AA-AA/x /?m=00%3A0e%3A08%3Aaa%3Aaa%3Aaa");
        // mixed separators and seven groups are not MACs
        none("/p/00:0e:08-aa:aa:aa /p/11:00:0e:08:aa:aa:aa /p/00:0e:08:aa:aa:aa:11");
    }

    #[test]
    fn encoded_bypasses_are_decoded() {
        own("/spa000e08aaaaa%61.cfg /%73pa000e08aaaaaa.cfg");
        own("/%53%50%41%30%30%30%45%30%38%41%41%41%41%41%41.cfg");
        own("/a/./spa000e08aaaaaa.cfg /a/%2e/spa000e08aaaaaa.cfg");
    }

    #[test]
    fn ambiguous_targets_are_refused() {
        refused(
            Ambiguous::EncodedSlash,
            "/x/..%2fspa000e08aaaaaa.cfg /x/%2F/spa.cfg",
        );
        let dot_dot = "/x/%2e%2e/spa.cfg /x/.%2E/spa.cfg /x/../spa.cfg /x/..;a/spa.cfg";
        refused(Ambiguous::DotDotSegment, dot_dot);
        refused(Ambiguous::Nul, "/spa%00.cfg /?mac=%00 /spa\0.cfg");
        refused(Ambiguous::Backslash, "/x\\spa.cfg /x%5cspa.cfg /?mac=%5C");
        refused(
            Ambiguous::BadPercentEncoding,
            "/spa%zz.cfg /spa%4 /?mac=%4 /?%g0",
        );
        let not_origin = "* prov.example.com:443 ftp://prov.example.com/spa.cfg";
        refused(Ambiguous::NotOriginForm, not_origin);
        assert_eq!(macs(""), Err(Ambiguous::NotOriginForm));
    }

    #[test]
    fn absolute_form() {
        own("http://prov.example.com/spa000e08aaaaaa.cfg http://prov.example.com?mac=000e08aaaaaa");
        own("HTTPS://prov.example.com:8443/spa000e08aaaaaa.cfg");
        none("http://000e08bbbbbb.example.com/");
    }

    #[test]
    fn two_macs_are_both_returned() {
        assert_eq!(
            macs("/000e08bbbbbb/spa000e08aaaaaa.cfg?mac=000E08BBBBBB"),
            Ok(vec!["000e08bbbbbb".to_string(), OWN.to_string()])
        );
        assert_eq!(
            macs("/spa000e08aaaaaa.cfg?mac=00:0e:08:bb:bb:bb"),
            Ok(vec![OWN.to_string(), "000e08bbbbbb".to_string()])
        );
    }

    #[test]
    fn no_mac() {
        none("/ /firmware/spa525g2-7-6-2.bin /a/0123456789abcdef0123456789abcdef/x.cfg");
        none("/000e08aaaaaacfg.xml /spa504g.cfg?file=spa.cfg");
    }

    #[test]
    fn extra_regex_adds_a_hit() {
        let re = regex::Regex::new(r"/dev/([0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4})$").unwrap();
        let got = target_macs(b"/dev/000e.08aa.aaa%61", Some(&re));
        assert_eq!(got, Ok(vec![OWN.to_string()]));
        // the regex sees the decoded path without '.' segments
        let re = regex::Regex::new(r"^/p/x1([0-9a-f]{12})$").unwrap();
        assert_eq!(target_macs(b"/p/x1000e08aaaaaa", None), Ok(vec![]));
        let got = target_macs(b"/p/./x1%30%30%30e08aaaaaa?q=1", Some(&re));
        assert_eq!(got, Ok(vec![OWN.to_string()]));
        assert_eq!(target_macs(b"/other", Some(&re)), Ok(vec![]));
    }

    #[test]
    fn capped_at_sixteen() {
        let query: Vec<String> = (0..100).map(|n| format!("m={n:012x}")).collect();
        let got = macs(&format!("/?{}", query.join("&"))).unwrap();
        assert_eq!(got.len(), MAX_MACS);
        assert_eq!(got.first().map(String::as_str), Some("000000000000"));
    }

    #[test]
    fn hostile_targets_finish_quickly() {
        let started = Instant::now();
        let big = format!("/{}", "%41".repeat(1 << 20));
        assert!(macs(&big).is_ok());
        let _ = macs(&format!("/{}", "aa:".repeat(1 << 18)));
        let _ = macs(&format!("/?{}", "&a=%2b;".repeat(1 << 17)));
        let _ = macs(&"/.".repeat(1 << 19));
        assert_eq!(
            macs(&format!("/{}%4", "a".repeat(1 << 20))),
            Err(Ambiguous::BadPercentEncoding)
        );
        let re = regex::Regex::new(r"([0-9a-f:]{12,17})x").unwrap();
        let _ = target_macs(format!("/{}", "0".repeat(1 << 20)).as_bytes(), Some(&re));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn labels_and_messages() {
        assert_eq!(Ambiguous::EncodedSlash.label(), "encoded_slash");
        assert_eq!(Ambiguous::NotOriginForm.label(), "not_origin_form");
        assert!(Ambiguous::EncodedSlash.to_string().contains("%2F"));
        assert!(Ambiguous::Backslash.to_string().contains('\\'));
    }
}
