//! Request limits checked once the request head is in: header count and size (431), a
//! declared body over the limit (413). Bodies without a declared length are counted as they
//! stream (`request_body_filter`).

use pingora_http::RequestHeader;

/// 431 for too many or too large headers, 413 for a declared body over the limit.
pub fn over_limits(req: &RequestHeader, limits: &crate::config::Limits) -> Option<u16> {
    let headers = &req.headers;
    let header_bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri.to_string().len();
    if headers.len() > limits.max_request_headers || header_bytes > limits.max_request_header_bytes
    {
        return Some(431);
    }
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limits.max_request_body_bytes => Some(413),
        _ => None,
    }
}
