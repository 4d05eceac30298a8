//! What a profile's OpenSSL cipher string really means on this build: the suites it selects,
//! in server order ([`effective_suites`]), and the words OpenSSL silently ignores
//! ([`cipher_issues`]).

use std::collections::HashMap;
use std::sync::OnceLock;

use openssl::ssl::{HandshakeError, Ssl, SslContextBuilder, SslMethod, SslOptions};

use super::{cipher_rule, init, ssl_version, version_setup};
use crate::config::Profile;

/// One cipher suite as OpenSSL resolves it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Suite {
    /// The IANA code, as `0x0016`.
    pub id: String,
    /// OpenSSL's name.
    pub name: &'static str,
    /// The lowest protocol version it works with (`SSLv3`, `TLSv1.2`).
    pub version: &'static str,
    /// Key exchange and authentication in OpenSSL's words (`DH`, `RSA`; `ECDH`, `ECDSA`).
    pub kx: String,
    pub auth: String,
}

impl Suite {
    /// Whether a certificate with this kind of key can serve the suite.
    pub fn usable_with(&self, key: openssl::pkey::Id) -> bool {
        use openssl::pkey::Id;
        match self.auth.as_str() {
            "RSA" => key == Id::RSA,
            "ECDSA" => key == Id::EC,
            "DSS" => key == Id::DSA,
            _ => true,
        }
    }

    fn from_openssl(c: &openssl::ssl::SslCipherRef) -> Suite {
        let description = c.description();
        let field = |tag: &str| {
            description
                .split_whitespace()
                .find_map(|w| w.strip_prefix(tag))
                .unwrap_or("?")
                .to_string()
        };
        Suite {
            id: format!("0x{:04x}", u16::from_be_bytes(c.protocol_id())),
            name: c.name(),
            version: c.version(),
            kx: field("Kx="),
            auth: field("Au="),
        }
    }
}

/// Swallows what OpenSSL writes and has nothing to read: a client handshake over it stops
/// right after the ClientHello.
#[derive(Debug, Default)]
struct Capture(Vec<u8>);

impl std::io::Read for Capture {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn reasons(e: &openssl::error::ErrorStack) -> String {
    let r: Vec<&str> = e.errors().iter().filter_map(|e| e.reason()).collect();
    if r.is_empty() {
        e.to_string()
    } else {
        r.join("; ")
    }
}

/// The suites the legacy engine can negotiate for a profile on this build, in server order:
/// OpenSSL resolves the profile's cipher rule ([`cipher_rule`]) at security level 0 and keeps
/// what the profile's versions allow. (The list is read from the ClientHello of an OpenSSL
/// client set up like the server: OpenSSL offers exactly its resolved list, in order, minus
/// the suites the enabled versions cannot use; the crate has no unsafe code to read a
/// server context's list directly.) `Err` carries OpenSSL's reason when it rejects the string
/// outright; an empty list means the string selects nothing these versions can use.
pub fn effective_suites(profile: &Profile) -> Result<Vec<Suite>, String> {
    init();
    let Some((min, max, holes)) = version_setup(profile) else {
        return Ok(Vec::new());
    };
    let internal = |e: openssl::error::ErrorStack| format!("cannot set up OpenSSL: {e}");
    let mut b = SslContextBuilder::new(SslMethod::tls_client()).map_err(internal)?;
    b.set_security_level(0);
    b.clear_options(SslOptions::NO_SSLV3);
    b.set_options(holes);
    b.set_min_proto_version(Some(ssl_version(min)))
        .map_err(internal)?;
    b.set_max_proto_version(Some(ssl_version(max)))
        .map_err(internal)?;
    b.set_cipher_list(&cipher_rule(profile))
        .map_err(|e| reasons(&e))?;
    let ctx = b.build();
    let ssl = Ssl::new(&ctx).map_err(internal)?;
    let mid = match ssl.connect(Capture::default()) {
        Err(HandshakeError::WouldBlock(mid)) => mid,
        Err(HandshakeError::Failure(mid)) => {
            // OpenSSL refuses to send a hello without a suite for the enabled versions.
            let reason = mid.error().ssl_error().map(reasons).unwrap_or_default();
            return if reason.contains("no ciphers available") {
                Ok(Vec::new())
            } else {
                Err(format!("cannot resolve the cipher list: {reason}"))
            };
        }
        Err(e) => return Err(format!("cannot resolve the cipher list: {e}")),
        Ok(_) => return Err("cannot resolve the cipher list: handshake completed".into()),
    };
    let hello = match crate::hello::parse(&mid.get_ref().0) {
        crate::hello::Parse::Parsed(h) => h,
        other => return Err(format!("cannot read OpenSSL's own hello: {other:?}")),
    };
    let bytes: Vec<u8> = hello
        .cipher_suites
        .iter()
        .flat_map(|c| c.to_be_bytes())
        .collect();
    let lists = mid
        .ssl()
        .bytes_to_cipher_list(&bytes, false)
        .map_err(internal)?;
    Ok(lists.suites.iter().map(Suite::from_openssl).collect())
}

/// Every cipher suite name the linked OpenSSL knows (OpenSSL and IANA spellings), with the
/// lowest version each works with; whether or not this build can serve it.
fn known_suites() -> &'static HashMap<&'static str, &'static str> {
    static KNOWN: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut known = HashMap::new();
        let every_code: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_be_bytes).collect();
        let ssl = SslContextBuilder::new(SslMethod::tls()).and_then(|b| Ssl::new(&b.build()));
        if let Ok(lists) = ssl.and_then(|s| s.bytes_to_cipher_list(&every_code, false)) {
            for c in &lists.suites {
                known.insert(c.name(), c.version());
                if let Some(std) = c.standard_name() {
                    known.insert(std, c.version());
                }
            }
        }
        known
    })
}

/// The keywords of OpenSSL 3's cipher strings (`cipher_aliases[]` in ssl/ssl_ciph.c of the
/// vendored 3.6). Case matters. `DEFAULT` and `SUITEB*` count only as the first element.
const CIPHER_KEYWORDS: &[&str] = &[
    "ALL",
    "COMPLEMENTOFALL",
    "COMPLEMENTOFDEFAULT",
    "kRSA",
    "kEDH",
    "kDHE",
    "DH",
    "kEECDH",
    "kECDHE",
    "ECDH",
    "kPSK",
    "kRSAPSK",
    "kECDHEPSK",
    "kDHEPSK",
    "kSRP",
    "kGOST",
    "kGOST18",
    "aRSA",
    "aDSS",
    "DSS",
    "aNULL",
    "aECDSA",
    "ECDSA",
    "aPSK",
    "aGOST01",
    "aGOST12",
    "aGOST",
    "aSRP",
    "EDH",
    "DHE",
    "EECDH",
    "ECDHE",
    "NULL",
    "RSA",
    "ADH",
    "AECDH",
    "PSK",
    "SRP",
    "3DES",
    "RC4",
    "RC2",
    "IDEA",
    "SEED",
    "eNULL",
    "GOST89",
    "AES128",
    "AES256",
    "AES",
    "AESGCM",
    "AESCCM",
    "AESCCM8",
    "CAMELLIA128",
    "CAMELLIA256",
    "CAMELLIA",
    "CHACHA20",
    "GOST2012-GOST8912-GOST8912",
    "ARIA",
    "ARIAGCM",
    "ARIA128",
    "ARIA256",
    "CBC",
    "MD5",
    "SHA1",
    "SHA",
    "GOST94",
    "GOST89MAC",
    "SHA256",
    "SHA384",
    "GOST12",
    "SSLv3",
    "TLSv1",
    "TLSv1.0",
    "TLSv1.2",
    "LOW",
    "MEDIUM",
    "HIGH",
    "FIPS",
];

/// A part of a cipher string that OpenSSL ignores (it never says so itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CipherIssue {
    /// Neither a cipher suite name nor a keyword of OpenSSL 3.
    Unknown {
        word: String,
        suggestion: Option<String>,
    },
    /// A TLS 1.3 suite: cipher strings set the suites of TLS 1.2 and older only.
    Tls13 { word: String },
    /// `DEFAULT` or `SUITEB*` after the first element.
    Misplaced { word: String },
    /// Known words that select no suite this build can serve (algorithms not available).
    Unavailable { element: String },
}

impl std::fmt::Display for CipherIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CipherIssue::Unknown { word, suggestion } => {
                write!(
                    f,
                    "'{word}' is not an OpenSSL 3 cipher suite name or keyword; OpenSSL \
                     ignores it"
                )?;
                if let Some(s) = suggestion {
                    write!(f, " (the OpenSSL 3 name is '{s}')")?;
                }
                Ok(())
            }
            CipherIssue::Tls13 { word } => write!(
                f,
                "'{word}' is a TLS 1.3 suite; a cipher string only sets TLS 1.2-and-older \
                 suites, so OpenSSL ignores it"
            ),
            CipherIssue::Misplaced { word } => write!(
                f,
                "'{word}' only counts as the first element of a cipher string; OpenSSL \
                 ignores it here"
            ),
            CipherIssue::Unavailable { element } => write!(
                f,
                "'{element}' selects no suite on this OpenSSL build (its algorithms are not \
                 available)"
            ),
        }
    }
}

fn suggest(word: &str) -> Option<String> {
    let known = known_suites();
    // OpenSSL 1.1.0 renamed EDH-* to DHE-* and EECDH-* to ECDHE-*; the old names are gone.
    for (old, new) in [("EDH-", "DHE-"), ("EECDH-", "ECDHE-")] {
        if let Some(rest) = word.strip_prefix(old) {
            let renamed = format!("{new}{rest}");
            if known.contains_key(renamed.as_str()) {
                return Some(renamed);
            }
        }
    }
    known
        .keys()
        .chain(CIPHER_KEYWORDS)
        .find(|k| k.eq_ignore_ascii_case(word))
        .map(|k| (*k).to_string())
}

/// What OpenSSL will silently ignore in a cipher string: unknown names (typos, pre-1.1.0
/// names such as `EDH-RSA-DES-CBC3-SHA`), TLS 1.3 suites, misplaced `DEFAULT`, and added
/// elements that select nothing on this build. Keywords (`HIGH`, `!aNULL`, `+RSA`,
/// `kEDH+AESGCM`) and commands (`@STRENGTH`, `@SECLEVEL=0`) are fine. The tokenising follows
/// `ssl_cipher_process_rulestr`: elements split at `:`, ` `, `;`, `,`; one prefix of `!`, `-`,
/// `+` or `@`; words joined by `+`.
pub fn cipher_issues(ciphers: &str) -> Vec<CipherIssue> {
    init();
    let known = known_suites();
    let mut probe = SslContextBuilder::new(SslMethod::tls()).ok();
    if let Some(p) = probe.as_mut() {
        p.set_security_level(0);
    }
    let mut issues = Vec::new();
    let elements = ciphers
        .split([':', ' ', ';', ','])
        .filter(|e| !e.is_empty());
    for (i, element) in elements.enumerate() {
        let (prefix, body) = match element.chars().next() {
            Some(c @ ('!' | '-' | '+' | '@')) => (Some(c), &element[1..]),
            _ => (None, element),
        };
        // Commands: @STRENGTH and @SECLEVEL=n work, anything else fails the whole string.
        if prefix == Some('@') {
            continue;
        }
        if i == 0 && prefix.is_none() && (body == "DEFAULT" || body.starts_with("SUITEB")) {
            continue;
        }
        let mut all_known = true;
        for word in body.split('+').filter(|w| !w.is_empty()) {
            if CIPHER_KEYWORDS.contains(&word) {
                continue;
            }
            all_known = false;
            match known.get(word) {
                Some(&"TLSv1.3") => issues.push(CipherIssue::Tls13 { word: word.into() }),
                Some(_) => all_known = true,
                None if word == "DEFAULT" || word.starts_with("SUITEB") => {
                    issues.push(CipherIssue::Misplaced { word: word.into() })
                }
                None => issues.push(CipherIssue::Unknown {
                    word: word.into(),
                    suggestion: suggest(word),
                }),
            }
            if !all_known {
                break;
            }
        }
        // Removing or reordering what is not there does no harm; adding it does nothing.
        if all_known && prefix.is_none() {
            if let Some(p) = probe.as_mut() {
                if p.set_cipher_list(body).is_err() {
                    issues.push(CipherIssue::Unavailable {
                        element: element.into(),
                    });
                }
            }
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::super::LegacyContext;
    use super::*;
    use crate::config::{DhGroup, TlsVersion};
    use crate::config::{EngineKind, LEGACY_CIPHERS};
    use crate::pki::{Ca, CertSpec};
    use crate::tls::certs::LoadedCert;
    use std::pin::Pin;
    use tokio_openssl::SslStream;

    fn profile(versions: &[TlsVersion], ciphers: &str) -> Profile {
        Profile {
            name: "t".into(),
            engine: EngineKind::Legacy,
            versions: versions.iter().copied().collect(),
            ciphers: ciphers.into(),
            dh_bits: 1024,
            dh_group: DhGroup::Rfc2409,
            dh_params: None,
            session_tickets: true,
        }
    }

    fn names(suites: &[Suite]) -> Vec<&'static str> {
        suites.iter().map(|s| s.name).collect()
    }

    #[test]
    fn the_builtin_string_is_all_openssl3_names_and_serves_0x0016() {
        assert_eq!(cipher_issues(LEGACY_CIPHERS), vec![]);
        use TlsVersion::*;
        let all = effective_suites(&profile(&[Tls10, Tls11, Tls12], LEGACY_CIPHERS)).unwrap();
        assert_eq!(
            names(&all),
            [
                "AES256-SHA",
                "AES128-SHA",
                "DHE-RSA-AES256-SHA",
                "DHE-RSA-AES128-SHA",
                "DES-CBC3-SHA",
                "DHE-RSA-DES-CBC3-SHA",
                "AES256-GCM-SHA384",
                "AES128-GCM-SHA256",
                "ECDHE-RSA-AES256-GCM-SHA384",
                "ECDHE-RSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
            ]
        );
        let des3_dhe = &all[5];
        assert_eq!(
            (
                des3_dhe.id.as_str(),
                des3_dhe.kx.as_str(),
                des3_dhe.auth.as_str()
            ),
            ("0x0016", "DH", "RSA")
        );
        // TLS 1.0 only: the GCM suites (TLS 1.2) drop out.
        let tls10 = effective_suites(&profile(&[Tls10], LEGACY_CIPHERS)).unwrap();
        assert_eq!(names(&tls10), names(&all[..6]));
        // dh_bits: 0 strikes every DHE suite.
        let mut nodhe = profile(&[Tls10], LEGACY_CIPHERS);
        nodhe.dh_bits = 0;
        assert_eq!(
            names(&effective_suites(&nodhe).unwrap()),
            ["AES256-SHA", "AES128-SHA", "DES-CBC3-SHA"]
        );
    }

    #[test]
    fn unknown_names_are_named_and_keywords_are_not() {
        let issues = cipher_issues("AES128-SHA:EDH-RSA-DES-CBC3-SHA:!FOO-BAR:high");
        assert_eq!(
            issues,
            vec![
                CipherIssue::Unknown {
                    word: "EDH-RSA-DES-CBC3-SHA".into(),
                    suggestion: Some("DHE-RSA-DES-CBC3-SHA".into()),
                },
                CipherIssue::Unknown {
                    word: "FOO-BAR".into(),
                    suggestion: None,
                },
                CipherIssue::Unknown {
                    word: "high".into(),
                    suggestion: Some("HIGH".into()),
                },
            ]
        );
        assert!(issues[0].to_string().contains("'DHE-RSA-DES-CBC3-SHA'"));
        for fine in [
            "DEFAULT:!aNULL",
            "HIGH:!aNULL:!MD5:@STRENGTH:@SECLEVEL=0",
            "ALL:+RSA:-kDHE:kEDH+AESGCM,RC4-SHA;3DES TLS_RSA_WITH_AES_128_CBC_SHA",
            "COMPLEMENTOFDEFAULT:!kGOST:!kSRP:TLSv1.0:SSLv3",
        ] {
            assert_eq!(cipher_issues(fine), vec![], "{fine}");
        }
        assert_eq!(
            cipher_issues("AES128-SHA:DEFAULT:TLS_AES_128_GCM_SHA256:kGOST"),
            vec![
                CipherIssue::Misplaced {
                    word: "DEFAULT".into()
                },
                CipherIssue::Tls13 {
                    word: "TLS_AES_128_GCM_SHA256".into()
                },
                CipherIssue::Unavailable {
                    element: "kGOST".into()
                },
            ]
        );
    }

    #[test]
    fn openssl_ignores_what_cipher_issues_names() {
        // The premise: an unknown name changes nothing and raises no error.
        use TlsVersion::*;
        let with = effective_suites(&profile(&[Tls10], "AES128-SHA:EDH-RSA-DES-CBC3-SHA")).unwrap();
        assert_eq!(names(&with), ["AES128-SHA"]);
        let none = effective_suites(&profile(&[Tls10], "EDH-RSA-DES-CBC3-SHA"));
        assert!(none.unwrap_err().contains("no cipher match"));
        // IANA names work as well as OpenSSL's.
        let iana = effective_suites(&profile(&[Tls10], "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA"));
        assert_eq!(names(&iana.unwrap()), ["DHE-RSA-DES-CBC3-SHA"]);
        // Names valid only for TLS 1.2 leave a TLS 1.0 profile nothing.
        let gcm = effective_suites(&profile(&[Tls10], "AES128-GCM-SHA256")).unwrap();
        assert_eq!(gcm, vec![]);
    }

    /// The order `effective_suites` reads from an OpenSSL client's hello is the order the
    /// server context really prefers: offer the list reversed, take what the server picks,
    /// strike it, repeat.
    #[tokio::test]
    async fn effective_order_is_the_servers_preference() {
        use TlsVersion::*;
        let ca = Ca::new("Order CA", "provgate tests").unwrap();
        let (cert, key) = ca.issue(&CertSpec::legacy_server("order.test")).unwrap();
        let cert = LoadedCert::from_pem(
            "order",
            std::path::Path::new("order.pem"),
            &cert.to_pem().unwrap(),
            std::path::Path::new("order.key"),
            &key.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();
        let p = profile(&[Tls10, Tls11, Tls12], LEGACY_CIPHERS);
        let ctx = LegacyContext::build(&cert, &p, None).unwrap();
        let want: Vec<&str> = effective_suites(&p)
            .unwrap()
            .into_iter()
            .filter(|s| s.usable_with(openssl::pkey::Id::RSA))
            .map(|s| s.name)
            .collect();
        let mut offer: Vec<&str> = want.iter().rev().copied().collect();
        let mut picked = Vec::new();
        while !offer.is_empty() {
            let (client_io, server_io) = tokio::io::duplex(64 * 1024);
            let server = tokio::spawn({
                let ctx = LegacyContext {
                    ctx: ctx.ctx.clone(),
                };
                async move { ctx.accept(server_io).await.map(|_| ()) }
            });
            let mut b = SslContextBuilder::new(SslMethod::tls_client()).unwrap();
            b.set_security_level(0);
            b.set_cipher_list(&offer.join(":")).unwrap();
            b.set_verify(openssl::ssl::SslVerifyMode::NONE);
            let ssl = Ssl::new(&b.build()).unwrap();
            let mut s = SslStream::new(ssl, client_io).unwrap();
            Pin::new(&mut s).connect().await.unwrap();
            server.await.unwrap().unwrap();
            let name = s.ssl().current_cipher().unwrap().name();
            picked.push(name);
            offer.retain(|n| *n != name);
        }
        assert_eq!(picked, want);
    }
}
