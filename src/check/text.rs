//! The human table `provgate check` prints without `--json`: certificates, client CAs, each
//! listener's routes with the TLS in effect, then the warnings.

use super::Report;

impl Report {
    /// The human table.
    pub fn human(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "{}: valid", self.file);
        let _ = writeln!(out, "\ncertificates");
        for c in &self.certificates {
            let family = c.vendor_ca.map_or_else(
                || "unknown issuer (not a built-in vendor CA)".to_string(),
                |v| format!("{} -> trusted by {}", v.family, v.devices),
            );
            let _ = writeln!(out, "  {}", c.name);
            let _ = writeln!(out, "    subject    {}", c.subject);
            let _ = writeln!(out, "    issuer     {}", c.issuer);
            let _ = writeln!(out, "    vendor CA  {family}");
            if !c.devices.is_empty() {
                let _ = writeln!(out, "    trusted by (device, firmware; source)");
            }
            for d in &c.devices {
                let note = if d.note.is_empty() {
                    String::new()
                } else {
                    format!(": {}", d.note)
                };
                let _ = writeln!(out, "      {}{note}; {}", d.label(), d.source);
            }
            let _ = writeln!(
                out,
                "    CN         {} ({})",
                c.cn.as_deref().unwrap_or("-"),
                if c.cn_is_fqdn {
                    "host name"
                } else {
                    "not a host name"
                }
            );
            if !c.dns_names.is_empty() {
                let _ = writeln!(out, "    DNS names  {}", c.dns_names.join(", "));
            }
            let _ = writeln!(out, "    serial     {}", c.serial);
            let _ = writeln!(
                out,
                "    key        {}; signed {}; chain of {}",
                c.key, c.signature, c.chain_length
            );
            let _ = writeln!(
                out,
                "    valid      {} .. {} ({} days left)",
                c.not_before, c.not_after, c.days_left
            );
            if let Some(why) = &c.rustls_unusable {
                let _ = writeln!(out, "    rustls     cannot use it: {why}");
            }
            if let Some(mode) = &c.key_mode {
                let _ = writeln!(out, "    key file   {} (mode {mode})", c.key_file);
            }
        }
        if !self.client_cas.is_empty() {
            let _ = writeln!(out, "\nclient certificate CAs");
            for ca in &self.client_cas {
                let family = ca
                    .vendor_ca
                    .map_or("not a built-in vendor CA", |v| v.family);
                let _ = writeln!(
                    out,
                    "  {}: {} (until {}; {family})",
                    ca.file, ca.subject, ca.not_after
                );
            }
        }
        for l in &self.listeners {
            let _ = writeln!(out, "\nlistener {}  bind {}", l.name, l.bind.join(", "));
            for r in &l.routes {
                let sni = if r.sni.is_empty() {
                    String::new()
                } else {
                    format!("  sni {}", r.sni.join(", "))
                };
                let _ = writeln!(out, "  route {}{sni}", r.name);
                let _ = writeln!(
                    out,
                    "    certificate {}  backend {}  client_auth {}",
                    r.certificate.as_deref().unwrap_or("none (plain HTTP)"),
                    r.backend,
                    r.client_auth
                );
                let versions = if r.versions.is_empty() {
                    String::new()
                } else {
                    format!("; versions {}", r.versions.join(", "))
                };
                let _ = writeln!(out, "    tls {}: {}{versions}", r.profile, r.engine);
                if let Some(ciphers) = &r.openssl_ciphers {
                    let _ = writeln!(out, "    OpenSSL ciphers (configured) {ciphers}");
                }
                if let Some(suites) = &r.openssl_suites {
                    let list: Vec<String> = suites
                        .iter()
                        .map(|s| format!("{} ({})", s.name, s.id))
                        .collect();
                    let list = if list.is_empty() {
                        "none".to_string()
                    } else {
                        list.join(", ")
                    };
                    let _ = writeln!(
                        out,
                        "    OpenSSL suites (server order, this build, this key) {list}"
                    );
                }
                if let Some(dh) = &r.dh {
                    let _ = writeln!(out, "    DH {dh}");
                }
                if let Some(suites) = &r.rustls_suites {
                    let _ = writeln!(
                        out,
                        "    rustls suites (server order) {}",
                        suites.join(", ")
                    );
                }
                if let Some(on) = r.session_tickets {
                    let _ = writeln!(out, "    session tickets {}", if on { "on" } else { "off" });
                }
            }
        }
        if self.dns.skipped {
            let _ = writeln!(
                out,
                "\nDNS lookups skipped (--offline): cn_does_not_resolve and \
                 cn_resolves_elsewhere not checked"
            );
        } else {
            let _ = writeln!(
                out,
                "\nDNS (CN looked up as the devices do: A records, {} ms for all)",
                self.dns.timeout_ms.unwrap_or_default()
            );
            if self.dns.names.is_empty() {
                let _ = writeln!(out, "  no CN to look up");
            }
            for n in &self.dns.names {
                let answer = match &n.error {
                    Some(why) => why.clone(),
                    None => n
                        .addresses
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                let _ = writeln!(out, "  {} -> {answer}", n.name);
            }
        }
        let _ = writeln!(out, "\nwarnings: {}", self.warnings.len());
        for w in &self.warnings {
            let place = match (&w.listener, &w.route) {
                (Some(l), Some(r)) => format!("{l} {r}: "),
                _ => String::new(),
            };
            let _ = writeln!(out, "  WARNING [{}] {place}{}", w.code, w.message);
        }
        out
    }
}
