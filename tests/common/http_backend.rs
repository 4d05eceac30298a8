//! A strict HTTP/1.1 backend for the HTTP-semantics tests, written on raw sockets so that what
//! provgate sends can be seen byte for byte: like nginx and Apache it answers 400 to an
//! HTTP/1.1 request without Host. Every request head it receives is kept for assertions.
//!
//! Paths: `/chunked` answers chunked, `/close` answers without a length and closes, `/big/N`
//! streams N bytes with a Content-Length, `/slow` waits until told; anything else answers
//! 200 with the request head it received as the body.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<String>>>);

impl Received {
    /// Every request head received so far, oldest first.
    pub fn heads(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn last(&self) -> String {
        self.heads().last().cloned().unwrap_or_default()
    }
}

pub async fn strict_backend() -> (SocketAddr, Received) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Received::default();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(serve(tcp, s.clone()));
        }
    });
    (addr, seen)
}

async fn serve(mut tcp: TcpStream, seen: Received) {
    let mut buf = Vec::new();
    loop {
        // Read one request head (bounded).
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 64 * 1024 {
                return;
            }
            let mut chunk = [0u8; 8192];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        seen.0.lock().unwrap().push(head.clone());
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        // Consume the body (Content-Length or chunked).
        let mut body_len = 0usize;
        if let Some(cl) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while buf.len() < cl {
                let mut chunk = [0u8; 65536];
                match tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..cl);
            body_len = cl;
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let Some(i) = buf.windows(2).position(|w| w == b"\r\n") else {
                    let mut chunk = [0u8; 65536];
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    continue;
                };
                let size = usize::from_str_radix(
                    String::from_utf8_lossy(&buf[..i])
                        .split(';')
                        .next()
                        .unwrap_or("0")
                        .trim(),
                    16,
                )
                .unwrap_or(0);
                while buf.len() < i + 2 + size + 2 {
                    let mut chunk = [0u8; 65536];
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                buf.drain(..i + 2 + size + 2);
                body_len += size;
                if size == 0 {
                    break;
                }
            }
        }
        let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
        if request_line.ends_with("HTTP/1.1") && header("host").is_none() {
            let body = "400 Bad Request: HTTP/1.1 request without Host\n";
            let resp = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tcp.write_all(resp.as_bytes()).await;
            return;
        }
        let ok = if path == "/chunked" {
            tcp.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
                  6\r\nhello \r\n8\r\nchunked \r\n5\r\nworld\r\n0\r\n\r\n",
            )
            .await
        } else if path == "/close" {
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nuntil the end")
                .await;
            return;
        } else if let Some(n) = path
            .strip_prefix("/big/")
            .and_then(|n| n.parse::<usize>().ok())
        {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n"
            );
            if tcp.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let block = vec![b'f'; 64 * 1024];
            let mut left = n;
            while left > 0 {
                let k = left.min(block.len());
                if tcp.write_all(&block[..k]).await.is_err() {
                    return;
                }
                left -= k;
            }
            Ok(())
        } else {
            let body = format!("{head}body-bytes: {body_len}\n");
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            tcp.write_all(resp.as_bytes()).await
        };
        if ok.is_err() {
            return;
        }
    }
}
