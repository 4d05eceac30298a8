//! Plain-words reasons for failed handshakes: what the client offered against what the route's
//! profile allows, so an operator can fix the config without a packet capture.

use crate::config::{EngineKind, Profile};
use crate::hello::{cipher_name, ClientHello};
use crate::tls::{Engine, Reason};

/// The families a cipher name belongs to, for a short summary ("DHE", "RC4", ...).
fn family(name: &str) -> &'static str {
    if name.starts_with("TLS_AES") || name.starts_with("TLS_CHACHA") {
        "TLS 1.3"
    } else if name.contains("EXP") {
        "export"
    } else if name.contains("RC4") {
        "RC4"
    } else if name.contains("DES-CBC3") || name.contains("3DES") {
        "3DES"
    } else if name.starts_with("ECDHE") {
        "ECDHE"
    } else if name.starts_with("DHE") || name.starts_with("EDH") {
        "DHE"
    } else if name.contains("SCSV") {
        ""
    } else if name.starts_with("AES") {
        "AES (RSA key exchange)"
    } else {
        "other"
    }
}

pub fn offered_cipher_names(h: &ClientHello) -> Vec<String> {
    h.cipher_suites
        .iter()
        .map(|c| cipher_name(*c).map_or_else(|| format!("0x{c:04x}"), str::to_string))
        .collect()
}

/// The offered cipher suites for a log line, summarised when long (see [`summarize`]).
pub fn offered_ciphers(h: &ClientHello) -> String {
    summarize(&offered_cipher_names(h), "suites")
}

/// The offered versions for a log line: `up to tls1.0`, or the supported_versions list
/// (summarised when long: a client may list 127 of them).
pub fn offered_versions(h: &ClientHello) -> String {
    if h.supported_versions.is_empty() {
        format!("up to {}", h.client_version)
    } else {
        let names: Vec<String> = h
            .supported_versions
            .iter()
            .map(ToString::to_string)
            .collect();
        summarize(&names, "versions")
    }
}

// ---------------------------------------------------------------- bounded log text
//
// Everything a client controls (its lists, its server name, error texts that quote it) goes
// through these before it reaches a log line, so one line stays under about a kilobyte
// whatever the client sends, and carries no control bytes (no forged lines, no terminal
// escapes).

/// A list is written out in full when it has at most this many entries...
pub const LIST_FULL_ITEMS: usize = 8;
/// ...and they fit in this many bytes, joined with commas.
pub const LIST_FULL_BYTES: usize = 120;
/// How many entries a summarised list names.
pub const LIST_HEAD: usize = 3;
/// Longest entry of a list, in bytes (cipher names are at most ~40).
const ITEM_MAX: usize = 48;
/// Cap for a server name in a log line (DNS allows 253 bytes).
pub const SNI_MAX: usize = 128;
/// Cap for free text: library error details, the explanation.
pub const TEXT_MAX: usize = 400;

/// `a,b,c` for a short list; for a long one the count and the first [`LIST_HEAD`] entries,
/// quoted: `"32 suites: AES256-SHA,AES128-SHA,DES-CBC3-SHA,... (+29)"`. `-` when empty.
/// Entries are escaped; the result never exceeds about 200 bytes.
pub fn summarize(items: &[String], noun: &str) -> String {
    if items.is_empty() {
        return "-".to_string();
    }
    let escaped: Vec<String> = items
        .iter()
        .take(LIST_FULL_ITEMS + 1)
        .map(|i| escape(i, ITEM_MAX))
        .collect();
    let full_len = escaped.iter().map(|i| i.len() + 1).sum::<usize>();
    let plain = |s: &String| !s.contains([' ', '"', '=']);
    if items.len() <= LIST_FULL_ITEMS
        && full_len <= LIST_FULL_BYTES + 1
        && escaped.iter().all(plain)
    {
        return escaped.join(",");
    }
    let head = escaped[..LIST_HEAD.min(escaped.len())].join(",");
    let rest = items.len().saturating_sub(LIST_HEAD);
    if rest == 0 {
        format!("\"{} {noun}: {head}\"", items.len())
    } else {
        format!("\"{} {noun}: {head},... (+{rest})\"", items.len())
    }
}

/// `s` with every byte that could break a log line made visible: backslash and `"` are
/// backslash-escaped, `\n` `\r` `\t` spelled so, other control characters and DEL as `\xNN`,
/// non-ASCII as `\u{...}`. Cut at about `max` bytes, with `...(+N bytes)` saying how much
/// of the input was left out.
pub fn escape(s: &str, max: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len().min(max) + 16);
    for (i, c) in s.char_indices() {
        let before = out.len();
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c if c.is_ascii() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
        if out.len() > max {
            out.truncate(before);
            let _ = write!(out, "...(+{} bytes)", s.len() - i);
            break;
        }
    }
    out
}

/// A client-controlled value as a log field: escaped and capped like [`escape`], and quoted
/// when it is empty or holds a space, `=` or `"` (so it cannot pose as further fields).
pub struct Field(String);

impl Field {
    pub fn new(s: &str, max: usize) -> Field {
        let e = escape(s, max);
        if e.is_empty() || e.contains([' ', '=', '"']) {
            Field(format!("\"{e}\""))
        } else {
            Field(e)
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The server name for a log line: the name, `-` when the hello has none, `<invalid>` when
/// it carries a server_name extension the parser refused (not a plausible DNS name: such
/// bytes are never echoed).
pub fn sni_field(h: &ClientHello) -> Field {
    match &h.sni {
        Some(name) => Field::new(name, SNI_MAX),
        None if h.extensions.contains(&0) => Field("<invalid>".to_string()),
        None => Field("-".to_string()),
    }
}

/// One sentence explaining a failed handshake.
pub fn explain(
    reason: Reason,
    engine: Engine,
    h: &ClientHello,
    p: &Profile,
    detail: &str,
) -> String {
    let allowed_versions: Vec<&str> = match engine {
        Engine::Legacy => p.legacy_versions().iter().map(|v| v.name()).collect(),
        Engine::Modern => p.modern_versions().iter().map(|v| v.name()).collect(),
        Engine::Plain => Vec::new(),
    };
    match reason {
        Reason::NoSharedCipher => {
            let mut fams: Vec<&str> = offered_cipher_names(h)
                .iter()
                .map(|n| family(n))
                .filter(|f| !f.is_empty())
                .collect();
            fams.dedup();
            let mut seen = Vec::new();
            for f in fams {
                if !seen.contains(&f) {
                    seen.push(f);
                }
            }
            let allows = match engine {
                Engine::Legacy => format!("allows '{}'", p.ciphers),
                Engine::Modern => "is served by rustls (TLS 1.3 and ECDHE AEAD suites only)".into(),
                Engine::Plain => "speaks plain HTTP".into(),
            };
            let dh = if engine == Engine::Legacy && p.dh_bits == 0 {
                " with DHE off (dh_bits: 0)"
            } else {
                ""
            };
            format!(
                "client offers only {} suites; profile '{}' {allows}{dh}",
                seen.join(" and "),
                p.name
            )
        }
        Reason::ProtocolVersion => format!(
            "client offers {} ({}); profile '{}' on the {} engine serves {}{}",
            offered_versions(h),
            if h.format == crate::hello::HelloFormat::Sslv2 {
                "SSLv2-format hello"
            } else {
                "TLS hello"
            },
            p.name,
            engine.name(),
            allowed_versions.join(", "),
            if p.engine == EngineKind::Modern {
                "; old devices need tls: legacy or auto"
            } else {
                ""
            }
        ),
        Reason::NoCertificate => {
            "client sent no certificate, and client_auth is required on this route".to_string()
        }
        Reason::UnknownCa => {
            format!("client certificate does not chain to the configured client_auth CA ({detail})")
        }
        Reason::BadCertificate => format!("client certificate rejected ({detail})"),
        Reason::ClientCertDenied => format!(
            "client certificate verified, but client_auth deny_serials/allow_serials refuse \
             its serial ({detail})"
        ),
        Reason::ClientAlert => format!(
            "the client aborted the handshake with an alert ({detail}); often it does not trust \
             the route's certificate (wrong CA family?) or rejects its dates"
        ),
        Reason::ClientClosed => "the client closed the connection during the handshake".into(),
        Reason::Internal => format!("internal error: {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hello::{self, Parse};

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("SUITE-{i}")).collect()
    }

    #[test]
    fn short_lists_are_written_out_long_ones_summarised() {
        assert_eq!(summarize(&[], "suites"), "-");
        let two = vec!["RC4-SHA".to_string(), "RC4-MD5".to_string()];
        assert_eq!(summarize(&two, "suites"), "RC4-SHA,RC4-MD5");
        assert_eq!(
            summarize(&names(8), "suites"),
            "SUITE-0,SUITE-1,SUITE-2,SUITE-3,SUITE-4,SUITE-5,SUITE-6,SUITE-7"
        );
        assert_eq!(
            summarize(&names(32), "suites"),
            "\"32 suites: SUITE-0,SUITE-1,SUITE-2,... (+29)\""
        );
        // Few but long entries: summarised on length.
        let long: Vec<String> = (0..4).map(|i| format!("{i}{}", "X".repeat(40))).collect();
        let s = summarize(&long, "suites");
        assert!(s.starts_with("\"4 suites: 0XXX"), "{s}");
        assert!(s.ends_with(",... (+1)\""), "{s}");
        // Bounded whatever the input.
        let huge: Vec<String> = (0..1_000).map(|_| "Y".repeat(10_000)).collect();
        assert!(summarize(&huge[..], "suites").len() < 250);
    }

    #[test]
    fn summarised_entries_cannot_break_out_of_their_quotes() {
        let hostile = vec!["a\" reason=\"ok".to_string(), "b\nc".to_string()];
        let s = summarize(&hostile, "versions");
        assert_eq!(s, "\"2 versions: a\\\" reason=\\\"ok,b\\nc\"");
    }

    #[test]
    fn escape_makes_control_bytes_visible_and_caps() {
        assert_eq!(escape("prov.example.com", 64), "prov.example.com");
        assert_eq!(
            escape("evil\u{1b}[2J\r\nWARN forged reason=\"ok\"\\", 200),
            "evil\\x1b[2J\\r\\nWARN forged reason=\\\"ok\\\"\\\\"
        );
        assert_eq!(escape("\0\u{7f}\t", 64), "\\x00\\x7f\\t");
        assert_eq!(escape("caf\u{e9}\u{202e}", 64), "caf\\u{e9}\\u{202e}");
        let cut = escape(&"a".repeat(300), 128);
        assert_eq!(cut, format!("{}...(+172 bytes)", "a".repeat(128)));
        // A cut never splits an escape sequence.
        let cut = escape(&"\u{1}".repeat(100), 10);
        assert_eq!(cut, "\\x01\\x01...(+98 bytes)");
        assert!(escape(&"\u{1}".repeat(100_000), 400).len() < 430);
    }

    #[test]
    fn fields_are_quoted_when_they_could_pose_as_more_fields() {
        assert_eq!(Field::new("prov.test", 64).to_string(), "prov.test");
        assert_eq!(Field::new("", 64).to_string(), "\"\"");
        assert_eq!(Field::new("x reason=ok", 64).to_string(), "\"x reason=ok\"");
        assert_eq!(Field::new("a\"b", 64).to_string(), "\"a\\\"b\"");
    }

    /// A TLS 1.0 hello with the given extensions block.
    fn hello_with(ext: &[u8]) -> ClientHello {
        let mut body = vec![3, 1];
        body.extend_from_slice(&[0; 32]);
        body.extend_from_slice(&[0, 0, 2, 0, 0x2f, 1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(ext);
        let mut msg = vec![1, 0];
        msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
        msg.extend_from_slice(&body);
        let mut wire = vec![0x16, 3, 1];
        wire.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        wire.extend_from_slice(&msg);
        match hello::parse(&wire) {
            Parse::Parsed(h) => h,
            other => panic!("{other:?}"),
        }
    }

    fn sni_ext(name: &[u8]) -> Vec<u8> {
        let mut ext = vec![0, 0];
        ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
        ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        ext
    }

    #[test]
    fn server_name_field() {
        assert_eq!(sni_field(&hello_with(&[])).to_string(), "-");
        assert_eq!(
            sni_field(&hello_with(&sni_ext(b"Prov.Example.com"))).to_string(),
            "prov.example.com"
        );
        assert_eq!(
            sni_field(&hello_with(&sni_ext(b"evil\x1b[2J\r\nx"))).to_string(),
            "<invalid>"
        );
    }

    #[test]
    fn offered_versions_are_bounded() {
        // supported_versions with 127 entries.
        let list: Vec<u8> = (0..127u16)
            .flat_map(|v| (0x7f00 + v).to_be_bytes())
            .collect();
        let mut ext = vec![0, 43];
        ext.extend_from_slice(&((list.len() + 1) as u16).to_be_bytes());
        ext.push(list.len() as u8);
        ext.extend_from_slice(&list);
        let h = hello_with(&ext);
        assert_eq!(
            offered_versions(&h),
            "\"127 versions: 0x7f00,0x7f01,0x7f02,... (+124)\""
        );
        assert_eq!(offered_ciphers(&h), "AES128-SHA");
    }
}
