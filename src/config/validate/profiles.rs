//! Validating `tls_profiles`: inheritance from a base (built-in or defined), versions per
//! engine, DH groups and files, and cipher strings checked against this OpenSSL build.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::Validator;
use crate::config::raw::{DhGroup, RawProfile};
use crate::config::tls::{
    DhParams, EngineKind, Profile, TlsVersion, DH_GROUP_BITS, MAX_LEGACY_DH_BITS, PLAIN,
};
use crate::config::ConfigError;

impl Validator<'_> {
    pub(super) fn profiles(
        &self,
        raw: &BTreeMap<String, RawProfile>,
    ) -> Result<BTreeMap<String, Profile>, ConfigError> {
        if raw.contains_key(PLAIN) {
            return Err(self.err(
                format!("tls_profiles.{PLAIN}"),
                "'plain' is reserved (tls: plain means HTTP without TLS); pick another name",
            ));
        }
        let mut out: BTreeMap<String, Profile> = ["legacy", "modern", "auto", PLAIN]
            .into_iter()
            .filter_map(Profile::builtin)
            .map(|p| (p.name.clone(), p))
            .collect();
        for name in raw.keys() {
            let p = self.resolve_profile(name, raw, &mut Vec::new())?;
            out.insert(name.clone(), p);
        }
        Ok(out)
    }

    fn resolve_profile(
        &self,
        name: &str,
        raw: &BTreeMap<String, RawProfile>,
        seen: &mut Vec<String>,
    ) -> Result<Profile, ConfigError> {
        let key = format!("tls_profiles.{name}");
        let Some(rp) = raw.get(name) else {
            return Profile::builtin(name)
                .ok_or_else(|| self.err(&key, format!("unknown TLS profile '{name}'")));
        };
        if seen.iter().any(|s| s == name) {
            return Err(self.err(
                format!("{key}.base"),
                format!(
                    "profiles inherit in a loop: {} -> {name}",
                    seen.join(" -> ")
                ),
            ));
        }
        seen.push(name.to_string());
        let base_name = rp.base.as_deref().unwrap_or("legacy");
        if base_name == PLAIN {
            return Err(self.err(
                format!("{key}.base"),
                "plain is not a TLS profile to build on; write tls: plain on the listener",
            ));
        }
        let mut p = if raw.contains_key(base_name) {
            self.resolve_profile(base_name, raw, seen)?
        } else {
            Profile::builtin(base_name).ok_or_else(|| {
                self.err(
                    format!("{key}.base"),
                    format!(
                        "unknown base profile '{base_name}' (built-ins: legacy, modern, auto; \
                         or a profile defined under tls_profiles)"
                    ),
                )
            })?
        };
        p.name = name.to_string();
        if let Some(vs) = &rp.versions {
            let mut set = BTreeSet::new();
            for (i, v) in vs.iter().enumerate() {
                set.insert(self.tls_version(&format!("{key}.versions[{i}]"), v)?);
            }
            if set.is_empty() {
                return Err(self.err(format!("{key}.versions"), "lists no version"));
            }
            p.versions = set;
        }
        if let Some(c) = &rp.ciphers {
            if c.trim().is_empty() {
                return Err(self.err(format!("{key}.ciphers"), "is empty"));
            }
            p.ciphers = c.clone();
        }
        if let Some(bits) = rp.dh_bits {
            p.dh_bits = bits;
        }
        self.dh_settings(&key, rp, &mut p)?;
        if let Some(t) = rp.session_tickets {
            p.session_tickets = t.is_on();
        }
        self.check_profile(&key, &p)?;
        if rp.ciphers.is_some() && matches!(p.engine, EngineKind::Legacy | EngineKind::Auto) {
            for issue in crate::tls::legacy::cipher_issues(&p.ciphers) {
                tracing::warn!(
                    key = %format!("{key}.ciphers"),
                    "{}: {issue}",
                    self.file.display()
                );
            }
        }
        Ok(p)
    }

    /// `dh_group` and `dh_params` (the more specific profile wins over its base; one profile
    /// may not name both). The file must hold a group no larger than `dh_bits` allows (1024 by
    /// default, 2048 with `dh_bits: 2048`) and of at least 1024 bits.
    fn dh_settings(&self, key: &str, rp: &RawProfile, p: &mut Profile) -> Result<(), ConfigError> {
        if let (Some(_), Some(_)) = (rp.dh_group, &rp.dh_params) {
            return Err(self.err(
                format!("{key}.dh_group"),
                "dh_group picks a built-in group and dh_params names your own; keep one",
            ));
        }
        if let Some(group) = rp.dh_group {
            p.dh_group = group;
            p.dh_params = None;
        }
        if let Some(file) = &rp.dh_params {
            let dh_key = format!("{key}.dh_params");
            if p.dh_bits == 0 {
                return Err(self.err(
                    dh_key,
                    "dh_bits is 0 (no DHE), so no DH group is used; remove one of them",
                ));
            }
            let path = self.file.parent().unwrap_or(Path::new(".")).join(file);
            let pem = std::fs::read(&path)
                .map_err(|e| self.err(&dh_key, format!("cannot read {}: {e}", path.display())))?;
            let bits = crate::tls::legacy::dh_params_bits(&pem)
                .map_err(|e| self.err(&dh_key, format!("{}: {e}", path.display())))?;
            p.dh_params = Some(DhParams { path, pem, bits });
        } else if p.dh_bits == 0 {
            // An inherited file is dropped with DHE.
            p.dh_params = None;
        }
        if let Some(own) = &p.dh_params {
            let at = if rp.dh_params.is_some() {
                format!("{key}.dh_params")
            } else {
                format!("{key}.dh_bits")
            };
            if own.bits < MAX_LEGACY_DH_BITS {
                return Err(self.err(
                    at,
                    format!(
                        "{} holds a {}-bit group, weaker than the built-in {MAX_LEGACY_DH_BITS}-bit \
                         ones; use at least {MAX_LEGACY_DH_BITS} bits",
                        own.path.display(),
                        own.bits
                    ),
                ));
            }
            if own.bits > p.dh_bits {
                return Err(self.err(
                    at,
                    format!(
                        "{} holds a {}-bit group but dh_bits is {} (old devices fail above \
                         {MAX_LEGACY_DH_BITS}); set dh_bits: 2048 to serve it anyway",
                        own.path.display(),
                        own.bits,
                        p.dh_bits
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_profile(&self, key: &str, p: &Profile) -> Result<(), ConfigError> {
        match p.engine {
            EngineKind::Legacy => {
                if p.versions.contains(&TlsVersion::Tls13) {
                    return Err(self.err(
                        format!("{key}.versions"),
                        "tls1.3 is not served by the legacy engine (OpenSSL here serves \
                         ssl3..tls1.2); use base: auto to add rustls for TLS 1.3 clients",
                    ));
                }
            }
            EngineKind::Modern => {
                if let Some(v) = p.versions.iter().find(|v| **v < TlsVersion::Tls12) {
                    return Err(self.err(
                        format!("{key}.versions"),
                        format!(
                            "{v} is not served by the modern engine (rustls: tls1.2 and tls1.3); \
                             use base: legacy or auto"
                        ),
                    ));
                }
            }
            EngineKind::Auto | EngineKind::Plain => {}
        }
        if p.dh_group == DhGroup::Rfc5114
            && p.dh_params.is_none()
            && p.dh_bits != MAX_LEGACY_DH_BITS
        {
            return Err(self.err(
                format!("{key}.dh_group"),
                format!(
                    "rfc5114 is a {MAX_LEGACY_DH_BITS}-bit group, but dh_bits is {}",
                    p.dh_bits
                ),
            ));
        }
        if !DH_GROUP_BITS.contains(&p.dh_bits) {
            return Err(self.err(
                format!("{key}.dh_bits"),
                format!(
                    "{} is not supported: use 0 (no DHE), {MAX_LEGACY_DH_BITS} (the fixed group \
                     old devices need) or 2048",
                    p.dh_bits
                ),
            ));
        }
        self.check_ciphers(key, p)
    }

    /// A cipher string must leave the legacy engine at least one suite for the profile's
    /// versions on this OpenSSL build; unknown names inside it are warnings only (OpenSSL
    /// strings mix suite names with keywords such as `HIGH` or `!aNULL`).
    fn check_ciphers(&self, key: &str, p: &Profile) -> Result<(), ConfigError> {
        if !matches!(p.engine, EngineKind::Legacy | EngineKind::Auto)
            || p.legacy_versions().is_empty()
        {
            return Ok(());
        }
        let no_dhe = if p.dh_bits == 0 {
            " once DHE is struck (dh_bits: 0)"
        } else {
            ""
        };
        match crate::tls::legacy::effective_suites(p) {
            Ok(suites) if !suites.is_empty() => Ok(()),
            Ok(_) => Err(self.err(
                format!("{key}.ciphers"),
                format!(
                    "'{}' selects no cipher suite that {} can use{no_dhe} on this OpenSSL build",
                    p.ciphers,
                    p.legacy_versions()
                        .iter()
                        .map(|v| v.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            Err(why) => Err(self.err(
                format!("{key}.ciphers"),
                format!(
                    "OpenSSL selects no cipher suite from '{}'{no_dhe}: {why}",
                    p.ciphers
                ),
            )),
        }
    }
}
