//! provgate's own responses: short plain text saying what failed, in provgate's words. No
//! `Server` header (pingora's stock error responses carry `Server: Pingora`).

use bytes::Bytes;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// What a 503 (no backend connection free in time) asks the client to wait.
pub const RETRY_AFTER_SECONDS: &str = "30";

/// Answer `status` with `why` as a one-line plain-text body; the connection closes after it
/// (what pingora does after any error it generates).
pub async fn error(session: &mut Session, status: u16, why: &str) -> Result<()> {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let body = Bytes::from(format!("{status} {reason}: {why}\n"));
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    if status == 503 {
        resp.insert_header(http::header::RETRY_AFTER, RETRY_AFTER_SECONDS)?;
    }
    session
        .as_downstream_mut()
        .write_error_response(resp, body)
        .await
}

/// Status for a request that could not be proxied: 504 when the backend was too slow
/// (connect or read timeout), 502 when it could not be reached or answered badly, `None` when
/// the client is gone (nothing to send).
pub fn status_for(e: &Error) -> Option<u16> {
    Some(match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            504
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                    return None
                }
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    })
}

/// The sentence sent with a failed request's status.
pub fn explain(status: u16, backend: &str) -> String {
    match status {
        400 => "the request could not be parsed".to_string(),
        413 => "the request body is larger than limits.max_request_body_bytes".to_string(),
        431 => "the request headers exceed limits.max_request_headers or \
                limits.max_request_header_bytes"
            .to_string(),
        502 => format!("the provisioning backend '{backend}' could not be reached"),
        503 => format!(
            "the provisioning backend '{backend}' had no free connection within its queue_timeout"
        ),
        504 => format!("the provisioning backend '{backend}' did not answer in time"),
        _ => "the request could not be served".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(t: ErrorType) -> Box<Error> {
        Error::new(t).into_up()
    }

    fn down(t: ErrorType) -> Box<Error> {
        Error::new(t).into_down()
    }

    #[test]
    fn failures_map_onto_the_status_a_device_sees() {
        assert_eq!(status_for(&up(ErrorType::ConnectTimedout)), Some(504));
        assert_eq!(status_for(&up(ErrorType::ReadTimedout)), Some(504));
        assert_eq!(status_for(&up(ErrorType::WriteTimedout)), Some(504));
        assert_eq!(status_for(&up(ErrorType::ConnectRefused)), Some(502));
        assert_eq!(status_for(&up(ErrorType::InvalidHTTPHeader)), Some(502));
        assert_eq!(status_for(&down(ErrorType::InvalidHTTPHeader)), Some(400));
        // The client is gone: nothing to send.
        assert_eq!(status_for(&down(ErrorType::ConnectionClosed)), None);
        assert_eq!(status_for(&down(ErrorType::ReadError)), None);
        assert_eq!(status_for(&down(ErrorType::ReadTimedout)), Some(400));
        assert_eq!(
            status_for(&Error::new(ErrorType::HTTPStatus(413))),
            Some(413)
        );
        assert_eq!(status_for(&Error::new(ErrorType::InternalError)), Some(500));
    }

    #[test]
    fn every_status_has_a_sentence() {
        for code in [400, 413, 431, 502, 503, 504] {
            assert!(!explain(code, "prov").is_empty());
        }
        assert!(explain(502, "prov").contains("'prov'"));
    }
}
