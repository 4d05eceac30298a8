//! The admin listener: `/healthz` (the process is up) and `/readyz` (it accepts traffic; turns
//! 503 as soon as draining starts). Metrics join here later.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pingora_core::server::ShutdownWatch;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tracing::debug;

pub async fn serve(listener: TcpListener, tasks: TaskTracker, mut shutdown: ShutdownWatch) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                debug!(error = %e, "admin accept failed");
                continue;
            }
        };
        let watch = shutdown.clone();
        tasks.spawn(async move {
            let svc = service_fn(move |req| {
                let draining = *watch.borrow();
                async move { Ok::<_, Infallible>(respond(&req, draining)) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await
            {
                debug!(%peer, error = %e, "admin connection error");
            }
        });
    }
}

fn respond(req: &Request<Incoming>, draining: bool) -> Response<Full<Bytes>> {
    let (status, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "ok\n"),
        "/readyz" if draining => (StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        "/readyz" => (StatusCode::OK, "ready\n"),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}

/// Format an address for logs and the demo's printed commands.
pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}
