//! The admin listener: `/healthz` (the process is up), `/readyz` (it accepts traffic; 503 as
//! soon as draining starts), `/metrics` (Prometheus text) and `/fingerprints` (JSON of recently
//! seen ClientHello fingerprints with the User-Agents seen over them).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::metrics::Telemetry;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pingora_core::server::ShutdownWatch;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Serve until `stop`. `draining` only changes the answers: the admin port stays up through
/// the whole drain so probes and scrapes see it (`stop` is cancelled once the drain is over).
pub async fn serve(
    listener: TcpListener,
    telemetry: Arc<Telemetry>,
    draining: ShutdownWatch,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                debug!(error = %e, "admin accept failed");
                continue;
            }
        };
        let (draining, telemetry, stop) = (draining.clone(), telemetry.clone(), stop.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let resp = respond(&req, *draining.borrow(), &telemetry);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(tcp), svc);
            tokio::select! {
                _ = stop.cancelled() => {}
                r = conn => if let Err(e) = r {
                    debug!(%peer, error = %e, "admin connection error");
                },
            }
        });
    }
}

fn respond(req: &Request<Incoming>, draining: bool, t: &Telemetry) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" if draining => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "draining\n".into(),
        ),
        "/readyz" => (StatusCode::OK, "text/plain", "ready\n".into()),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            t.metrics.render(),
        ),
        "/fingerprints" => (
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&t.fingerprints.snapshot()).unwrap_or_default(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}

/// Format an address for logs and the demo's printed commands.
pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}
