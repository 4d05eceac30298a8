//! A tiny provisioning backend for `provgate demo` and the tests: serves `/spa<mac>.cfg` as a
//! sample SPA profile and, for every request, lists the headers it received so that what the
//! proxy forwarded can be seen (and asserted on).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Start the backend on `addr` (port 0 picks one); returns the bound address.
pub async fn spawn(addr: SocketAddr) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req| async move { Ok::<_, Infallible>(respond(&req)) });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok((bound, task))
}

/// The 12 lower-case hex digits of a `/spa<mac>.cfg` path.
pub fn mac_in_path(path: &str) -> Option<&str> {
    let mac = path.strip_prefix("/spa")?.strip_suffix(".cfg")?;
    (mac.len() == 12
        && mac
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(mac)
}

fn respond(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let mut seen = String::new();
    for (name, value) in req.headers() {
        seen.push_str(&format!(
            "<!-- seen {}: {} -->\n",
            name,
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    let path = req.uri().path();
    let (status, body) = match mac_in_path(path) {
        Some(mac) => (
            StatusCode::OK,
            format!(
                "<flat-profile>\n  <Station_Name>spa-{mac}</Station_Name>\n  \
                 <Profile_Rule>https://$D/spa$MA.cfg</Profile_Rule>\n</flat-profile>\n{seen}"
            ),
        ),
        None => (
            StatusCode::NOT_FOUND,
            format!("no profile at {path}\n{seen}"),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/xml"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::mac_in_path;

    #[test]
    fn mac_paths() {
        assert_eq!(mac_in_path("/spa000e08abcdef.cfg"), Some("000e08abcdef"));
        assert_eq!(mac_in_path("/spa000E08ABCDEF.cfg"), None);
        assert_eq!(mac_in_path("/spa000e08abcde.cfg"), None);
        assert_eq!(mac_in_path("/other"), None);
    }
}
