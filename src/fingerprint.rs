//! ClientHello fingerprints: JA4 (FoxIO's TLS-client fingerprint, the `JA4` part only) and the
//! bounded `/fingerprints` view that tells an operator which device generation sends which
//! hello.
//!
//! JA4 = `a_b_c`:
//! - a: `t`, version (`13`,`12`,`11`,`10`,`s3`,`s2`; highest supported_versions entry, else the
//!   hello's version), `d`/`i` (SNI present or not), 2-digit cipher and extension counts (GREASE
//!   excluded, capped at 99), first and last character of the first ALPN value (`00` if none);
//! - b: first 12 hex of SHA-256 over the sorted cipher codes (4 hex digits, comma-joined);
//! - c: first 12 hex of SHA-256 over the sorted extension codes without SNI and ALPN, then `_`
//!   and the signature algorithms in offered order (no `_` when there are none).
//!
//! Device ids: SPA User-Agents carry the MAC and serial number
//! (`Cisco/SPA508G-7.5.5 (000E08ABCDEF)(CCQ162810LA)`). Unless `admin.show_device_ids` is on,
//! User-Agents are masked *before* they are stored (see [`mask_device_ids`]), so the table
//! never holds them; the setting is read once at start.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};

use serde::Serialize;

use crate::hello::{ClientHello, HelloFormat, ProtocolVersion};

const EXT_SNI: u16 = 0x0000;
const EXT_ALPN: u16 = 0x0010;

pub fn ja4(h: &ClientHello) -> String {
    let version = match h.max_version() {
        ProtocolVersion::TLS1_3 => "13",
        ProtocolVersion::TLS1_2 => "12",
        ProtocolVersion::TLS1_1 => "11",
        ProtocolVersion::TLS1_0 => "10",
        ProtocolVersion::SSL3 => "s3",
        ProtocolVersion::SSL2 => "s2",
        _ => "00",
    };
    let sni = if h.extensions.contains(&EXT_SNI) {
        'd'
    } else {
        'i'
    };
    let alpn = h
        .alpn
        .first()
        .map_or_else(|| "00".to_string(), |a| alpn_chars(a.as_bytes()));
    let a = format!(
        "t{version}{sni}{:02}{:02}{alpn}",
        h.cipher_suites.len().min(99),
        h.extensions.len().min(99)
    );

    let mut ciphers = h.cipher_suites.clone();
    ciphers.sort_unstable();
    let b = hash12(&hex_list(&ciphers));

    let mut exts: Vec<u16> = h
        .extensions
        .iter()
        .copied()
        .filter(|e| *e != EXT_SNI && *e != EXT_ALPN)
        .collect();
    exts.sort_unstable();
    let c = if exts.is_empty() {
        "000000000000".to_string()
    } else {
        let mut input = hex_list(&exts);
        if !h.signature_algorithms.is_empty() {
            input.push('_');
            input.push_str(&hex_list(&h.signature_algorithms));
        }
        hash12(&input)
    };
    format!("{a}_{b}_{c}")
}

fn alpn_chars(v: &[u8]) -> String {
    let (Some(&first), Some(&last)) = (v.first(), v.last()) else {
        return "00".to_string();
    };
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        format!("{}{}", first as char, last as char)
    } else {
        let hex = format!("{first:02x}{last:02x}");
        let bytes = hex.as_bytes();
        format!("{}{}", bytes[0] as char, bytes[3] as char)
    }
}

fn hex_list(v: &[u16]) -> String {
    v.iter()
        .map(|x| format!("{x:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn hash12(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".to_string();
    }
    openssl::sha::sha256(s.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How many fingerprints `/fingerprints` keeps (least recently seen dropped first).
pub const MAX_FINGERPRINTS: usize = 1024;
/// How many distinct User-Agents are kept per fingerprint, and how long each may be.
pub const MAX_AGENTS: usize = 8;
pub const MAX_AGENT_LEN: usize = 160;

#[derive(Debug, Clone, Serialize)]
pub struct FingerprintStats {
    pub ja4: String,
    pub format: &'static str,
    pub max_version: String,
    pub connections: u64,
    pub user_agents: Vec<String>,
}

/// What a masked device id reads as.
pub const MASKED: &str = "(masked)";

/// Bare MAC-like tokens: 12 or more hex digits in a row, or a MAC written `00:0e:08:ab:cd:ef`,
/// `00-0e-08-ab-cd-ef` or `000e.08ab.cdef`.
static BARE_ID: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"(?i)\b(?:[0-9a-f]{2}(?::[0-9a-f]{2}){5}|[0-9a-f]{2}(?:-[0-9a-f]{2}){5}|[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}|[0-9a-f]{12,})\b",
    )
    .expect("BARE_ID is a valid regex")
});

/// A User-Agent without the device's MAC and serial, keeping vendor, model and firmware:
/// every parenthesised group (nested or cut off at the end included) and every bare MAC-like
/// token becomes `(masked)`. The form does not reveal the lengths either.
///
/// `Cisco/SPA508G-7.5.5 (000E08ABCDEF)(CCQ162810LA)` -> `Cisco/SPA508G-7.5.5 (masked)(masked)`.
pub fn mask_device_ids(agent: &str) -> String {
    let mut grouped = String::with_capacity(agent.len());
    let mut depth = 0usize;
    for c in agent.chars() {
        match (c, depth) {
            ('(', 0) => {
                grouped.push_str(MASKED);
                depth = 1;
            }
            ('(', _) => depth += 1,
            (')', 0) => grouped.push(c),
            (')', _) => depth -= 1,
            (_, 0) => grouped.push(c),
            _ => {}
        }
    }
    BARE_ID.replace_all(&grouped, MASKED).into_owned()
}

/// Recently seen hellos, bounded in entries and per-entry size.
#[derive(Debug)]
pub struct Fingerprints {
    lru: Mutex<lru::LruCache<String, FingerprintStats>>,
    /// Store User-Agents as sent (`admin.show_device_ids`); off: masked before storing.
    show_device_ids: AtomicBool,
}

impl Default for Fingerprints {
    fn default() -> Self {
        Self::new(MAX_FINGERPRINTS)
    }
}

impl Fingerprints {
    pub fn new(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Fingerprints {
            lru: Mutex::new(lru::LruCache::new(cap)),
            show_device_ids: AtomicBool::new(false),
        }
    }

    /// Keep User-Agents unmasked from now on (`admin.show_device_ids`; set once at start).
    pub fn set_show_device_ids(&self, show: bool) {
        self.show_device_ids.store(show, Ordering::Relaxed);
    }

    pub fn connection(&self, ja4: &str, hello: &ClientHello) {
        let mut lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(seen) = lru.get_mut(ja4) {
            seen.connections += 1;
            return;
        }
        lru.put(
            ja4.to_string(),
            FingerprintStats {
                ja4: ja4.to_string(),
                format: match hello.format {
                    HelloFormat::Tls => "tls",
                    HelloFormat::Sslv2 => "sslv2",
                },
                max_version: hello.max_version().to_string(),
                connections: 1,
                user_agents: Vec::new(),
            },
        );
    }

    /// Record a User-Agent seen over `ja4` (masked unless `show_device_ids`; then cut to
    /// [`MAX_AGENT_LEN`] characters).
    pub fn user_agent(&self, ja4: &str, agent: &str) {
        {
            // Cheap exit before masking when there is no room (or no entry) anyway.
            let lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
            if lru
                .peek(ja4)
                .is_none_or(|seen| seen.user_agents.len() >= MAX_AGENTS)
            {
                return;
            }
        }
        // Masked before the cut, so a MAC at the cut cannot survive as a shorter prefix.
        let clean: String = agent.chars().filter(|c| !c.is_control()).collect();
        let clean = if self.show_device_ids.load(Ordering::Relaxed) {
            clean
        } else {
            mask_device_ids(&clean)
        };
        let agent: String = clean.chars().take(MAX_AGENT_LEN).collect();
        let mut lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        let Some(seen) = lru.peek_mut(ja4) else {
            return;
        };
        if seen.user_agents.len() < MAX_AGENTS && !seen.user_agents.contains(&agent) {
            seen.user_agents.push(agent);
        }
    }

    /// Most recently seen first.
    pub fn snapshot(&self) -> Vec<FingerprintStats> {
        let lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        lru.iter().map(|(_, v)| v.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hello::{parse, Parse};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Reference values from tests/data/ja4-reference.tsv (see its header for the source).
    #[test]
    fn ja4_matches_independent_reference_values() {
        let text = include_str!("../tests/data/ja4-reference.tsv");
        let mut rows = 0;
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let mut cols = line.split('\t');
            let (name, want, bytes) = (
                cols.next().unwrap(),
                cols.next().unwrap(),
                hex(cols.next().unwrap().trim()),
            );
            let Parse::Parsed(h) = parse(&bytes) else {
                panic!("{name}: does not parse");
            };
            assert_eq!(ja4(&h), want, "{name}");
            rows += 1;
        }
        assert!(rows >= 3, "reference file has only {rows} rows");
    }

    #[test]
    fn alpn_rule() {
        assert_eq!(alpn_chars(b"h2"), "h2");
        assert_eq!(alpn_chars(b"http/1.1"), "h1");
        assert_eq!(alpn_chars(&[0xab, 0x01]), "a1");
    }

    #[test]
    fn masking_keeps_model_and_firmware_but_no_mac_or_serial() {
        for (ua, want) in [
            (
                "Cisco/SPA508G-7.5.5 (000E08ABCDEF)(CCQ162810LA)",
                "Cisco/SPA508G-7.5.5 (masked)(masked)",
            ),
            (
                "Linksys/SPA-2102-2.0.5 (88012BA01234)",
                "Linksys/SPA-2102-2.0.5 (masked)",
            ),
            (
                "Cisco-CP-8841-3PCC/11.0 (00562b043615)",
                "Cisco-CP-8841-3PCC/11.0 (masked)",
            ),
            (
                "Sipura/SPA2000-2.0.13 (a(b)c)",
                "Sipura/SPA2000-2.0.13 (masked)",
            ),
            // Cut off inside a group: the rest is masked too.
            (
                "Cisco/SPA504G-7.4.9 (000E08AB",
                "Cisco/SPA504G-7.4.9 (masked)",
            ),
            ("x) y", "x) y"),
            // Bare MAC-like tokens.
            ("Foo/1.0 000e08abcdef", "Foo/1.0 (masked)"),
            ("Foo/1.0 mac=00:0E:08:AB:CD:EF;", "Foo/1.0 mac=(masked);"),
            ("Foo/1.0 00-0e-08-ab-cd-ef", "Foo/1.0 (masked)"),
            ("Foo/1.0 000e.08ab.cdef", "Foo/1.0 (masked)"),
            ("Foo/1.0 id 000E08ABCDEF0102", "Foo/1.0 id (masked)"),
            // Model and firmware stay, shorter hex runs stay.
            ("Cisco/SPA525G2-7.6.2", "Cisco/SPA525G2-7.6.2"),
            ("Foo/1.0 deadbeef 1.2.3.4", "Foo/1.0 deadbeef 1.2.3.4"),
            ("", ""),
        ] {
            assert_eq!(mask_device_ids(ua), want, "{ua}");
        }
    }

    #[test]
    fn user_agents_are_stored_masked_unless_shown() {
        let bytes = hex("160301002f0100002b03011111111111111111111111111111111111111111111111111111111111111111000004002f00350100");
        let Parse::Parsed(h) = parse(&bytes) else {
            panic!("test hello does not parse");
        };
        let ua = "Cisco/SPA508G-7.5.5 (000E08ABCDEF)(CCQ162810LA)";
        let masked = Fingerprints::new(4);
        masked.connection("fp", &h);
        masked.user_agent("fp", ua);
        // Another device of the same model and firmware: the same masked entry.
        masked.user_agent("fp", "Cisco/SPA508G-7.5.5 (000E08000001)(CCQ162810LB)");
        let agents = &masked.snapshot()[0].user_agents;
        assert_eq!(
            agents,
            &["Cisco/SPA508G-7.5.5 (masked)(masked)".to_string()]
        );
        let text = format!("{:?}", masked.lru);
        assert!(!text.contains("000E08") && !text.contains("CCQ"), "{text}");

        // A MAC at the length cut is masked, not kept as a prefix.
        let long = format!("{} 000E08ABCDEF", "z".repeat(MAX_AGENT_LEN - 6));
        masked.user_agent("fp", &long);
        let agents = &masked.snapshot()[0].user_agents;
        assert!(agents[1].ends_with(" (mask"), "{}", agents[1]);
        assert_eq!(agents[1].chars().count(), MAX_AGENT_LEN);
        assert!(!agents[1].contains("000E"), "{}", agents[1]);

        let shown = Fingerprints::new(4);
        shown.set_show_device_ids(true);
        shown.connection("fp", &h);
        shown.user_agent("fp", ua);
        assert_eq!(shown.snapshot()[0].user_agents, vec![ua.to_string()]);
    }

    #[test]
    fn fingerprint_view_is_bounded() {
        let bytes = hex("160301002f0100002b03011111111111111111111111111111111111111111111111111111111111111111000004002f00350100");
        let Parse::Parsed(h) = parse(&bytes) else {
            panic!("test hello does not parse");
        };
        let f = Fingerprints::new(4);
        for i in 0..100 {
            f.connection(&format!("fp{i}"), &h);
            for j in 0..20 {
                f.user_agent(&format!("fp{i}"), &format!("agent {j} {}", "x".repeat(500)));
            }
        }
        let s = f.snapshot();
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].ja4, "fp99");
        assert_eq!(s[0].user_agents.len(), MAX_AGENTS);
        assert!(s[0]
            .user_agents
            .iter()
            .all(|a| a.chars().count() <= MAX_AGENT_LEN));
    }
}
