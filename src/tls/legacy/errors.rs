//! OpenSSL handshake failures onto provgate's reason taxonomy, by OpenSSL's error codes
//! (library and reason, `X509_V_ERR_*`), never by the words of its messages.

use crate::tls::Reason;

/// `ERR_LIB_SSL` (include/openssl/err.h of the vendored OpenSSL 3.x; openssl-sys does not
/// export it).
const LIB_SSL: i32 = 20;

/// `SSL_R_*` reason codes from include/openssl/sslerr.h (OpenSSL 3.x), the ones that decide a
/// classification. openssl-sys exports none of them; the unit tests check the ones a test can
/// provoke against the linked library.
mod ssl_r {
    pub const BAD_PROTOCOL_VERSION_NUMBER: i32 = 116;
    pub const CERTIFICATE_VERIFY_FAILED: i32 = 134;
    pub const VERSION_TOO_HIGH: i32 = 166;
    pub const NO_CIPHERS_AVAILABLE: i32 = 181;
    pub const NO_CIPHER_MATCH: i32 = 185;
    pub const NO_PROTOCOLS_AVAILABLE: i32 = 191;
    pub const NO_SHARED_CIPHER: i32 = 193;
    pub const PEER_DID_NOT_RETURN_A_CERTIFICATE: i32 = 199;
    pub const UNKNOWN_PROTOCOL: i32 = 252;
    pub const UNSUPPORTED_PROTOCOL: i32 = 258;
    pub const UNSUPPORTED_SSL_VERSION: i32 = 259;
    pub const WRONG_SSL_VERSION: i32 = 266;
    pub const WRONG_VERSION_NUMBER: i32 = 267;
    pub const VERSION_TOO_LOW: i32 = 396;
}

/// An alert the peer sent arrives as reason `SSL_AD_REASON_OFFSET` + the alert's code.
const ALERT_OFFSET: i32 = openssl_sys::SSL_AD_REASON_OFFSET;

/// TLS alert codes (RFC 8446 §6) that say the peer took issue with a certificate.
const CERTIFICATE_ALERTS: [i32; 9] = [
    42,  // bad_certificate
    43,  // unsupported_certificate
    44,  // certificate_revoked
    45,  // certificate_expired
    46,  // certificate_unknown
    111, // certificate_unobtainable
    113, // bad_certificate_status_response
    114, // bad_certificate_hash_value
    116, // certificate_required
];
/// protocol_version.
const PROTOCOL_VERSION_ALERT: i32 = 70;

/// Classify a failed handshake from the `(library, reason)` codes of OpenSSL's error stack,
/// the client-certificate verification result when it failed, and whether there was an
/// OpenSSL error at all (none: the socket ended).
pub(super) fn classify(codes: &[(i32, i32)], verify: Option<i32>, ssl_error: bool) -> Reason {
    if let Some(v) = verify {
        return if crate::tls::untrusted_issuer(v) {
            Reason::UnknownCa
        } else if v == crate::tls::client_auth::SERIAL_REFUSED_CODE {
            Reason::ClientCertDenied
        } else {
            Reason::BadCertificate
        };
    }
    let ssl: Vec<i32> = codes
        .iter()
        .filter(|(lib, _)| *lib == LIB_SSL)
        .map(|(_, reason)| *reason)
        .collect();
    let any = |wanted: &[i32]| ssl.iter().any(|r| wanted.contains(r));
    let alert = |r: &i32| (ALERT_OFFSET..ALERT_OFFSET + 256).contains(r);
    if any(&[
        ssl_r::NO_SHARED_CIPHER,
        ssl_r::NO_CIPHERS_AVAILABLE,
        ssl_r::NO_CIPHER_MATCH,
    ]) {
        Reason::NoSharedCipher
    } else if any(&[
        ssl_r::UNSUPPORTED_PROTOCOL,
        ssl_r::WRONG_VERSION_NUMBER,
        ssl_r::VERSION_TOO_LOW,
        ssl_r::VERSION_TOO_HIGH,
        ssl_r::UNKNOWN_PROTOCOL,
        ssl_r::NO_PROTOCOLS_AVAILABLE,
        ssl_r::UNSUPPORTED_SSL_VERSION,
        ssl_r::WRONG_SSL_VERSION,
        ssl_r::BAD_PROTOCOL_VERSION_NUMBER,
        ALERT_OFFSET + PROTOCOL_VERSION_ALERT,
    ]) {
        Reason::ProtocolVersion
    } else if any(&[ssl_r::PEER_DID_NOT_RETURN_A_CERTIFICATE]) {
        Reason::NoCertificate
    } else if any(&[ssl_r::CERTIFICATE_VERIFY_FAILED])
        || ssl
            .iter()
            .any(|r| alert(r) && CERTIFICATE_ALERTS.contains(&(r - ALERT_OFFSET)))
    {
        Reason::BadCertificate
    } else if ssl.iter().any(alert) {
        Reason::ClientAlert
    } else if !ssl_error {
        Reason::ClientClosed
    } else {
        Reason::Internal
    }
}

/// The `(library, reason)` codes of a failed handshake's OpenSSL error stack.
pub(super) fn codes(e: &openssl::ssl::Error) -> Vec<(i32, i32)> {
    e.ssl_error()
        .map(|stack| {
            stack
                .errors()
                .iter()
                .map(|err| (err.library_code(), err.reason_code()))
                .collect()
        })
        .unwrap_or_default()
}

/// One line for an OpenSSL handshake failure: the library's reasons, or what happened on the
/// socket.
pub(super) fn describe(e: &openssl::ssl::Error) -> String {
    if let Some(stack) = e.ssl_error() {
        let reasons: Vec<String> = stack
            .errors()
            .iter()
            .map(|err| err.reason().unwrap_or("unknown").to_string())
            .collect();
        if !reasons.is_empty() {
            return reasons.join("; ");
        }
    }
    if let Some(io) = e.io_error() {
        return format!("i/o: {io}");
    }
    if e.code() == openssl::ssl::ErrorCode::ZERO_RETURN
        || e.code() == openssl::ssl::ErrorCode::SYSCALL
    {
        return "client closed the connection".to_string();
    }
    e.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_onto_reasons() {
        let c = |reason| vec![(LIB_SSL, reason)];
        assert_eq!(
            classify(&c(ssl_r::NO_SHARED_CIPHER), None, true),
            Reason::NoSharedCipher
        );
        assert_eq!(
            classify(&c(ssl_r::UNSUPPORTED_PROTOCOL), None, true),
            Reason::ProtocolVersion
        );
        assert_eq!(
            classify(&c(ssl_r::VERSION_TOO_LOW), None, true),
            Reason::ProtocolVersion
        );
        assert_eq!(classify(&c(1070), None, true), Reason::ProtocolVersion);
        assert_eq!(
            classify(&c(ssl_r::PEER_DID_NOT_RETURN_A_CERTIFICATE), None, true),
            Reason::NoCertificate
        );
        assert_eq!(classify(&c(1042), None, true), Reason::BadCertificate);
        assert_eq!(classify(&c(1048), None, true), Reason::ClientAlert); // unknown_ca alert
        assert_eq!(classify(&c(1040), None, true), Reason::ClientAlert); // handshake_failure
        assert_eq!(classify(&[], None, false), Reason::ClientClosed);
        assert_eq!(classify(&c(999), None, true), Reason::Internal);
        // Another library's code with the same number is not an SSL reason.
        assert_eq!(
            classify(&[(6, ssl_r::NO_SHARED_CIPHER)], None, true),
            Reason::Internal
        );
        // A failed client-certificate verification decides first.
        assert_eq!(
            classify(&c(ssl_r::CERTIFICATE_VERIFY_FAILED), Some(20), true),
            Reason::UnknownCa
        );
        assert_eq!(
            classify(&c(ssl_r::CERTIFICATE_VERIFY_FAILED), Some(10), true),
            Reason::BadCertificate
        );
        assert_eq!(
            classify(&c(ssl_r::CERTIFICATE_VERIFY_FAILED), Some(50), true),
            Reason::ClientCertDenied
        );
    }

    /// The constants are the linked library's: provoke the errors and read their codes.
    #[test]
    fn constants_match_the_linked_openssl() {
        let mut b = openssl::ssl::SslContextBuilder::new(openssl::ssl::SslMethod::tls()).unwrap();
        let e = b.set_cipher_list("NO-SUCH-CIPHER").unwrap_err();
        let err = &e.errors()[0];
        assert_eq!(
            (err.library_code(), err.reason_code()),
            (LIB_SSL, ssl_r::NO_CIPHER_MATCH)
        );
        assert_eq!(err.reason(), Some("no cipher match"));
    }
}
