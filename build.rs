//! Two jobs:
//! 1. Declaring `openssl-src` (with `ssl3`, `weak-crypto`, `legacy`) as a build-dependency of a
//!    crate that has a build script is what makes those features reach openssl-sys's vendored
//!    build: build-dependency features are resolved on their own. See Cargo.toml.
//! 2. Tell the code what the OpenSSL it links was built without (from openssl-sys's
//!    `DEP_OPENSSL_CONF`), so start-up logs can say what legacy TLS is available.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(provgate_no_ssl3)");
    println!("cargo:rerun-if-env-changed=DEP_OPENSSL_CONF");
    let conf = std::env::var("DEP_OPENSSL_CONF").unwrap_or_default();
    if conf
        .split(',')
        .any(|c| c == "OPENSSL_NO_SSL3_METHOD" || c == "OPENSSL_NO_SSL3")
    {
        println!("cargo:rustc-cfg=provgate_no_ssl3");
    }
}
