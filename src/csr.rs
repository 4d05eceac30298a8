//! `provgate csr`: a private key and a certificate signing request (CSR) for one vendor CA
//! family, with the subject the vendor's instructions ask for (CN = the FQDN the devices
//! connect to, emailAddress = a contact), and the next steps for that family.
//!
//! The devices resolve the certificate's CN in DNS (A records) and compare the address with
//! the one they connected to; they do not accept wildcards. So the CN must be one plain host
//! name: wildcards, IP addresses and anything else are refused before a key is made.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::ValueEnum;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509NameBuilder, X509Req, X509ReqBuilder};

use crate::cli::EXIT_CONFIG;

/// A vendor CA family that signs device-facing server certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Family {
    /// Cisco 2k Small Business CA ("Provisioning Root Authority 2").
    Cisco2k,
    /// Cisco Small Business CA.
    #[value(alias = "sb")]
    Ciscosb,
    /// Sipura CA.
    Sipura,
    /// Linksys CA.
    Linksys,
}

/// RSA key sizes the families are known to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Bits {
    #[value(name = "2048")]
    B2048,
    #[value(name = "1024")]
    B1024,
}

impl Bits {
    fn get(self) -> u32 {
        match self {
            Bits::B2048 => 2048,
            Bits::B1024 => 1024,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct CsrArgs {
    /// The vendor CA family that will sign the certificate.
    #[arg(long, value_enum)]
    family: Family,
    /// The certificate's CN: the fully qualified host name the devices connect to (its DNS A
    /// record must point at the listener's address). No wildcards, no IP addresses.
    #[arg(long)]
    cn: String,
    /// Contact e-mail address for the request (emailAddress in the subject).
    #[arg(long)]
    email: String,
    /// RSA key size [default: 2048 for cisco2k and ciscosb, 1024 for sipura and linksys].
    #[arg(long, value_enum)]
    bits: Option<Bits>,
    /// Folder for `<cn>.key` and `<cn>.csr` (created if missing).
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

/// What the operator needs to know about one family.
struct FamilyInfo {
    /// The vendor table's name fragment (`check::vendor_ca`), for the device list.
    vendor_table_name: &'static str,
    title: &'static str,
    default_bits: u32,
    /// Why that key size.
    bits_note: &'static str,
    /// How to submit the CSR (`{csr}` is replaced with the file name).
    submit: &'static str,
    /// Anything else the operator should know before sending it.
    caveat: Option<&'static str>,
}

const EMAIL_PROCESS: &str = "Zip {csr} and e-mail it to ciscosb-certadmin@cisco.com (Cisco's \
    process for the Small Business families: CN = the FQDN, a contact e-mail).";

fn info(family: Family) -> FamilyInfo {
    match family {
        Family::Cisco2k => FamilyInfo {
            vendor_table_name: "cisco 2k",
            title: "Cisco 2k Small Business CA (Provisioning Root Authority 2)",
            default_bits: 2048,
            bits_note: "2048 bits: this CA serves the newest firmware, and operators use \
                2048-bit keys with Cisco-signed certificates (--bits 1024 if asked for it)",
            submit: "Submit {csr} on Cisco's self-service portal, \
                https://software.cisco.com/software/cda/home. Choose SHA256 as the hash (the \
                portal also offers MD5 and SHA1; Cisco recommends SHA256) and a signing \
                duration (\"Sign in Duration\", for example 1 year).",
            caveat: None,
        },
        Family::Ciscosb => FamilyInfo {
            vendor_table_name: "cisco small business",
            title: "Cisco Small Business CA",
            default_bits: 2048,
            bits_note: "2048 bits: operators use 2048-bit keys with Cisco-signed SPA \
                certificates; Cisco's own examples show 1024 (--bits 1024)",
            submit: EMAIL_PROCESS,
            caveat: Some(
                "An operator reports that Cisco stopped signing new Sipura and Cisco SB \
                 requests on 1 December 2022 (not confirmed by Cisco). Ask; for devices that \
                 trust Root Authority 2 (SPA1xx/SPA232D fw >= 1.3.3, SPA5xx fw >= 7.5.6) \
                 request --family cisco2k instead.",
            ),
        },
        Family::Sipura => FamilyInfo {
            vendor_table_name: "sipura",
            title: "Sipura CA",
            default_bits: 1024,
            bits_note: "1024 bits: what the vendor's instructions show and what the oldest \
                firmware (PAP2T, SPA9xx) is known to take; 2048 (--bits 2048) is not \
                confirmed on those devices",
            submit: EMAIL_PROCESS,
            caveat: Some(
                "An operator reports that Cisco stopped signing new Sipura and Cisco SB \
                 requests on 1 December 2022 (not confirmed by Cisco). Ask before you rely on \
                 it, and keep the certificate you have until a new one is signed.",
            ),
        },
        Family::Linksys => FamilyInfo {
            vendor_table_name: "linksys",
            title: "Linksys CA",
            default_bits: 1024,
            bits_note: "1024 bits: what the vendor's instructions show and what the oldest \
                firmware is known to take",
            submit: EMAIL_PROCESS,
            caveat: Some(
                "Cisco reportedly no longer signs with the Linksys CA, and the Linksys root in \
                 SPA50x firmware expired at the end of June 2015 (7.6.2 and later reject it). \
                 Devices that trust Linksys mostly trust Sipura too (PAP2T, SPA-962, SPA112, \
                 SPA508G in a field test): consider --family sipura.",
            ),
        },
    }
}

/// A refusal or failure, with the exit status it maps to.
#[derive(Debug, thiserror::Error)]
enum CsrError {
    /// Bad input or a file that is in the way: exit 64.
    #[error("{0}")]
    Refused(String),
    /// OpenSSL or the file system failed: exit 1.
    #[error("{0}")]
    Failed(String),
}

impl CsrError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CsrError::Refused(_) => ExitCode::from(EXIT_CONFIG),
            CsrError::Failed(_) => ExitCode::FAILURE,
        }
    }
}

/// `provgate csr`: write the key and the CSR, print the next steps.
pub fn run(args: &CsrArgs) -> ExitCode {
    match write(args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("provgate csr: {e}");
            e.exit_code()
        }
    }
}

fn write(args: &CsrArgs) -> Result<String, CsrError> {
    check_cn(&args.cn).map_err(CsrError::Refused)?;
    check_email(&args.email).map_err(CsrError::Refused)?;
    let family = info(args.family);
    let bits = args.bits.map_or(family.default_bits, Bits::get);

    std::fs::create_dir_all(&args.out).map_err(|e| {
        CsrError::Refused(format!(
            "cannot create the --out folder {}: {e}",
            args.out.display()
        ))
    })?;
    let key_path = args.out.join(format!("{}.key", args.cn));
    let csr_path = args.out.join(format!("{}.csr", args.cn));
    for path in [&key_path, &csr_path] {
        if path.symlink_metadata().is_ok() {
            return Err(exists(path));
        }
    }

    let failed = |e: openssl::error::ErrorStack| {
        CsrError::Failed(format!(
            "OpenSSL could not make the key or the request: {e}"
        ))
    };
    let key = PKey::from_rsa(Rsa::generate(bits).map_err(failed)?).map_err(failed)?;
    let req = request(&args.cn, &args.email, &key).map_err(failed)?;
    let pem = req.to_pem().map_err(failed)?;

    pem_files(&key_path, &csr_path, &key, &pem)?;
    Ok(next_steps(args, &family, bits, &key_path, &csr_path))
}

fn exists(path: &Path) -> CsrError {
    CsrError::Refused(format!(
        "{} already exists: provgate csr never overwrites a key or a request (the key may \
         be the one behind a certificate you already use); move it away or choose another \
         --out folder",
        path.display()
    ))
}

/// The key (new file, 0600) and then the request; no key is left behind without its request.
fn pem_files(
    key_path: &Path,
    csr_path: &Path,
    key: &PKey<Private>,
    csr_pem: &[u8],
) -> Result<(), CsrError> {
    let io = |path: &Path, e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            exists(path)
        } else {
            CsrError::Failed(format!("cannot write {}: {e}", path.display()))
        }
    };
    crate::pki::write_new_key(key_path, key).map_err(|e| io(key_path, e))?;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(csr_path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, csr_pem));
    if let Err(e) = written {
        let _ = std::fs::remove_file(key_path);
        return Err(io(csr_path, e));
    }
    Ok(())
}

/// A PKCS#10 request: subject CN + emailAddress, the CN also as a DNS subjectAltName (modern
/// clients read only SANs), signed with SHA-256.
fn request(
    cn: &str,
    email: &str,
    key: &PKey<Private>,
) -> Result<X509Req, openssl::error::ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    name.append_entry_by_nid(Nid::PKCS9_EMAILADDRESS, email)?;
    let name = name.build();
    let mut b = X509ReqBuilder::new()?;
    b.set_version(0)?;
    b.set_subject_name(&name)?;
    b.set_pubkey(key)?;
    let san = SubjectAlternativeName::new()
        .dns(cn)
        .build(&b.x509v3_context(None))?;
    let mut extensions = Stack::new()?;
    extensions.push(san)?;
    b.add_extensions(&extensions)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// Why `cn` cannot be a device-facing certificate's CN, if it cannot.
fn check_cn(cn: &str) -> Result<(), String> {
    const WHY: &str = "the devices look the certificate's CN up in DNS (A records) and \
                       compare the address with the one they connected to";
    if cn.is_empty() {
        return Err(
            "--cn is empty: give the fully qualified host name the devices connect \
                    to, e.g. prov.example.com"
                .into(),
        );
    }
    if cn.contains('*') {
        return Err(format!(
            "--cn {cn:?} is a wildcard: {WHY}, and they do not accept wildcard certificates; \
             request one certificate per host name"
        ));
    }
    if cn
        .trim_matches(['[', ']'])
        .parse::<std::net::IpAddr>()
        .is_ok()
    {
        return Err(format!(
            "--cn {cn:?} is an IP address: {WHY}, so the CN must be a host name whose A \
             record points at the listener's address"
        ));
    }
    if cn.contains('/') {
        return Err(format!(
            "--cn {cn:?} contains '/': give the host name alone (it also names the files)"
        ));
    }
    if cn.ends_with('.') {
        return Err(format!(
            "--cn {cn:?} ends with a dot: write the host name without it"
        ));
    }
    if cn.len() > 64 {
        return Err(format!(
            "--cn is {} characters long: a certificate's CN holds at most 64",
            cn.len()
        ));
    }
    if !crate::check::looks_like_fqdn(cn) {
        return Err(format!(
            "--cn {cn:?} is not a fully qualified host name: {WHY}, so it must be a name such \
             as prov.example.com (at least two dot-separated labels of letters, digits and \
             '-', not all-numeric at the end)"
        ));
    }
    Ok(())
}

/// A rough e-mail check: one `@`, a local part without spaces or controls, a host-name domain.
fn check_email(email: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "--email {email:?} is not an e-mail address (name@example.com): the vendor's \
             instructions ask for a contact address in the request"
        ))
    };
    let Some((local, domain)) = email.split_once('@') else {
        return bad();
    };
    let local_ok = !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"@<>()[]\\,;:\"".contains(&b));
    if !local_ok || !crate::check::looks_like_fqdn(domain) || domain.contains(['/', '*']) {
        return bad();
    }
    if email.len() > 128 {
        return Err(format!(
            "--email is {} characters long: a certificate's emailAddress holds at most 128",
            email.len()
        ));
    }
    Ok(())
}

fn next_steps(
    args: &CsrArgs,
    family: &FamilyInfo,
    bits: u32,
    key_path: &Path,
    csr_path: &Path,
) -> String {
    let (cn, key, csr) = (&args.cn, key_path.display(), csr_path.display());
    let devices = crate::check::vendor_ca(family.vendor_table_name).map_or(
        "see README \"Getting a certificate for each family\"",
        |ca| ca.devices,
    );
    let csr_name = csr_path
        .file_name()
        .map_or_else(|| csr.to_string(), |n| n.to_string_lossy().into_owned());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Wrote {key} (RSA {bits}, mode 0600: keep it on this host, never send it)\n\
         and   {csr} (CN={cn}, emailAddress={}, SHA-256).\n\
         Key size: {}.\n",
        args.email, family.bits_note
    );
    let _ = writeln!(s, "Next steps for the {}:", family.title);
    let mut step = 0;
    let mut item = |s: &mut String, text: &str| {
        step += 1;
        let _ = writeln!(s, "  {step}. {text}");
    };
    item(&mut s, &family.submit.replace("{csr}", &csr_name));
    item(
        &mut s,
        &format!(
            "List the device types you provision in the request (\"so we know what \
             certificates to generate\"). This CA is trusted by: {devices}."
        ),
    );
    if let Some(caveat) = family.caveat {
        item(&mut s, caveat);
    }
    item(
        &mut s,
        &format!(
            "Give {cn} a DNS A record pointing at the address the devices connect to \
             (the listener's bind, or its public address behind NAT): the devices resolve \
             the CN and compare."
        ),
    );
    item(
        &mut s,
        &format!(
            "Save the signed certificate (leaf first, exactly the chain the devices should \
             receive) next to the key, name both under certificates: in the config \
             ({{ chain: {cn}.pem, key: {cn}.key }}), and run `provgate check --config FILE`: \
             it names the issuing family and the devices that trust it."
        ),
    );
    item(
        &mut s,
        "Renew before the signing period ends: check warns 30 days ahead (`expiring`), \
         and firmware 7.6.2 and later refuse an expired certificate, so request early: run \
         provgate csr again into a new --out folder (it never overwrites a key).",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_pass_and_the_rest_is_refused_with_a_reason() {
        assert_eq!(check_cn("prov.example.com"), Ok(()));
        assert_eq!(check_cn("a-1.b.example"), Ok(()));
        for (cn, why) in [
            ("*.example.com", "wildcard"),
            ("prov.*.com", "wildcard"),
            ("192.0.2.10", "IP address"),
            ("[2001:db8::1]", "IP address"),
            ("2001:db8::1", "IP address"),
            ("prov", "not a fully qualified host name"),
            ("prov.example.com/spa", "contains '/'"),
            ("prov.example.com.", "ends with a dot"),
            ("pr ov.example.com", "not a fully qualified"),
            ("-prov.example.com", "not a fully qualified"),
            ("prov.example.123", "not a fully qualified"),
            ("", "empty"),
        ] {
            let e = check_cn(cn).expect_err(cn);
            assert!(e.contains(why), "{cn}: {e}");
        }
        let long = format!("{}.example.com", "a".repeat(60));
        assert!(check_cn(&long).unwrap_err().contains("at most 64"));
    }

    #[test]
    fn rough_email_check() {
        assert_eq!(check_email("ops@example.com"), Ok(()));
        assert_eq!(check_email("first.last+prov@mail.example.org"), Ok(()));
        for bad in [
            "ops",
            "@example.com",
            "ops@",
            "ops@localhost",
            "o ps@example.com",
            "a@b@example.com",
            "ops@exa mple.com",
            "ops@*.example.com",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_family_finds_its_devices_in_the_vendor_table() {
        for f in Family::value_variants() {
            let info = info(*f);
            let ca =
                crate::check::vendor_ca(info.vendor_table_name).unwrap_or_else(|| panic!("{f:?}"));
            assert_eq!(ca.family, info.title, "{f:?}");
        }
    }
}
