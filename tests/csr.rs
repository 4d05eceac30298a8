//! `provgate csr`: the real binary in a temporary folder; the request checked with the
//! `openssl req` command line and read back with the openssl crate.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::X509Req;

/// Run `provgate csr ARGS`: (exit code, stdout, stderr).
fn csr(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_provgate"))
        .arg("csr")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `openssl req -in FILE ARGS`: (success, stdout + stderr).
fn openssl_req(file: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .arg("req")
        .arg("-in")
        .arg(file)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn entry(req: &X509Req, nid: Nid) -> String {
    req.subject_name()
        .entries_by_nid(nid)
        .next()
        .unwrap()
        .data()
        .to_string()
        .unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn each_family_gets_a_verified_request_with_the_vendor_subject_and_its_next_steps() {
    for (family, bits, submit) in [
        (
            "cisco2k",
            2048,
            "https://software.cisco.com/software/cda/home",
        ),
        ("ciscosb", 2048, "ciscosb-certadmin@cisco.com"),
        ("sipura", 1024, "ciscosb-certadmin@cisco.com"),
        ("linksys", 1024, "ciscosb-certadmin@cisco.com"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("new-folder");
        let cn = format!("prov.{family}.example.com");
        let (code, stdout, stderr) = csr(&[
            "--family",
            family,
            "--cn",
            &cn,
            "--email",
            "ops@example.com",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{family}: {stderr}");
        assert_eq!(files(&out), [format!("{cn}.csr"), format!("{cn}.key")]);

        let key_path = out.join(format!("{cn}.key"));
        let csr_path = out.join(format!("{cn}.csr"));
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{family}: key mode {mode:o}");

        // The request's self-signature, checked by the OpenSSL command line.
        let (ok, text) = openssl_req(&csr_path, &["-noout", "-verify"]);
        assert!(ok && text.contains("verify OK"), "{family}: {text}");
        let (ok, text) = openssl_req(&csr_path, &["-noout", "-text"]);
        assert!(ok, "{text}");
        assert!(
            text.contains("Signature Algorithm: sha256WithRSAEncryption"),
            "{family}: {text}"
        );
        assert!(text.contains(&format!("DNS:{cn}")), "{family}: {text}");

        // Subject, key size, and that the key on disk is the request's key.
        let req = X509Req::from_pem(&std::fs::read(&csr_path).unwrap()).unwrap();
        assert_eq!(entry(&req, Nid::COMMONNAME), cn);
        assert_eq!(entry(&req, Nid::PKCS9_EMAILADDRESS), "ops@example.com");
        assert_eq!(req.subject_name().entries().count(), 2, "{family}");
        let public = req.public_key().unwrap();
        assert_eq!(public.bits(), bits, "{family}");
        let key = PKey::private_key_from_pem(&std::fs::read(&key_path).unwrap()).unwrap();
        assert!(public.public_eq(&key), "{family}: key and request differ");
        assert!(req.verify(&key).unwrap());

        // What to do next, for this family.
        assert!(stdout.contains(submit), "{family}: {stdout}");
        assert!(stdout.contains("device types"), "{family}: {stdout}");
        assert!(stdout.contains("Renew before"), "{family}: {stdout}");
        assert!(
            stdout.contains(&format!("Give {cn} a DNS A record")),
            "{family}: {stdout}"
        );
        assert_eq!(
            stdout.contains("Choose SHA256"),
            family == "cisco2k",
            "{family}: {stdout}"
        );
        let devices = match family {
            "cisco2k" => "CP-78xx/88xx-3PCC",
            "ciscosb" => "SRP521/541",
            "sipura" => "PAP2T",
            _ => "PAP2, WRTP, RTP",
        };
        assert!(stdout.contains(devices), "{family}: {stdout}");
    }
}

#[test]
fn bits_override_the_family_default() {
    for (family, bits) in [("sipura", "2048"), ("cisco2k", "1024"), ("sb", "1024")] {
        let dir = tempfile::tempdir().unwrap();
        let (code, _, stderr) = csr(&[
            "--family",
            family,
            "--cn",
            "prov.example.com",
            "--email",
            "ops@example.com",
            "--bits",
            bits,
            "--out",
            dir.path().to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stderr}");
        let req =
            X509Req::from_pem(&std::fs::read(dir.path().join("prov.example.com.csr")).unwrap())
                .unwrap();
        assert_eq!(req.public_key().unwrap().bits().to_string(), bits);
    }
    // Only the sizes the families take.
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = csr(&[
        "--family",
        "sipura",
        "--cn",
        "prov.example.com",
        "--email",
        "ops@example.com",
        "--bits",
        "4096",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("4096"), "{stderr}");
    assert!(files(dir.path()).is_empty());
}

#[test]
fn names_the_devices_cannot_use_are_refused_with_exit_64_and_a_reason() {
    for (cn, why) in [
        ("*.example.com", "is a wildcard"),
        ("192.0.2.10", "is an IP address"),
        ("2001:db8::10", "is an IP address"),
        ("provisioning", "is not a fully qualified host name"),
        (
            "prov_server.example.com",
            "is not a fully qualified host name",
        ),
        ("prov.example.com/spa", "contains '/'"),
        ("../prov.example.com", "contains '/'"),
        ("", "--cn is empty"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (code, stdout, stderr) = csr(&[
            "--family",
            "cisco2k",
            "--cn",
            cn,
            "--email",
            "ops@example.com",
            "--out",
            dir.path().to_str().unwrap(),
        ]);
        assert_eq!(code, 64, "{cn:?}: {stdout}{stderr}");
        assert!(stderr.contains(why), "{cn:?}: {stderr}");
        if !cn.contains('/') && !cn.is_empty() {
            // The sentence says why: the devices resolve the CN.
            assert!(
                stderr.contains("look the certificate's CN up in DNS"),
                "{stderr}"
            );
        }
        assert!(files(dir.path()).is_empty(), "{cn:?}: files written");
    }
    for email in [
        "ops",
        "ops@localhost",
        "ops@@example.com",
        "o ps@example.com",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (code, _, stderr) = csr(&[
            "--family",
            "sipura",
            "--cn",
            "prov.example.com",
            "--email",
            email,
            "--out",
            dir.path().to_str().unwrap(),
        ]);
        assert_eq!(code, 64, "{email}: {stderr}");
        assert!(stderr.contains("is not an e-mail address"), "{stderr}");
        assert!(files(dir.path()).is_empty());
    }
}

#[test]
fn an_existing_key_or_request_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let args = [
        "--family",
        "sipura",
        "--cn",
        "prov.example.com",
        "--email",
        "ops@example.com",
        "--out",
        out,
    ];
    let (code, _, stderr) = csr(&args);
    assert_eq!(code, 0, "{stderr}");
    let key_path = dir.path().join("prov.example.com.key");
    let csr_path = dir.path().join("prov.example.com.csr");
    let (key, request) = (
        std::fs::read(&key_path).unwrap(),
        std::fs::read(&csr_path).unwrap(),
    );

    let (code, stdout, stderr) = csr(&args);
    assert_eq!(code, 64, "{stdout}{stderr}");
    assert!(
        stderr.contains("prov.example.com.key already exists")
            && stderr.contains("never overwrites"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&key_path).unwrap(), key);
    assert_eq!(std::fs::read(&csr_path).unwrap(), request);

    // A request left alone (its key moved away) is not replaced either, and no key is made.
    std::fs::rename(&key_path, dir.path().join("moved.key")).unwrap();
    let (code, _, stderr) = csr(&args);
    assert_eq!(code, 64);
    assert!(
        stderr.contains("prov.example.com.csr already exists"),
        "{stderr}"
    );
    assert!(!key_path.exists());
    assert_eq!(std::fs::read(&csr_path).unwrap(), request);
}
