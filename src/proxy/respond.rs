//! provgate's own responses: short plain text saying what failed, in provgate's words. No
//! `Server` header (pingora's stock error responses carry `Server: Pingora`).

use bytes::Bytes;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

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
        504 => format!("the provisioning backend '{backend}' did not answer in time"),
        _ => "the request could not be served".to_string(),
    }
}
