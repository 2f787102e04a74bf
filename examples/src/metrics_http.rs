//! A Prometheus scrape endpoint: the `metrics` recorder of `metrics-exporter-prometheus`
//! (without its HTTP stack) behind a minimal HTTP/1.1 responder on a TCP listener the
//! application binds itself, so `127.0.0.1:0` works and the bound address is known.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head read; a scrape request is a few hundred bytes.
const MAX_REQUEST: usize = 8 << 10;

/// Installs a Prometheus recorder as the global `metrics` recorder and serves its text format
/// at `http://ADDR/metrics`. Returns the bound address (useful with port 0). The server runs
/// as a task of the current runtime until the process exits.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use transport::{Frame, Transport};
///
/// let addr = examples::metrics_http::serve("127.0.0.1:0".parse()?).await?;
/// let (a, b) = transport::mem::pair(Default::default());
/// a.send(Frame::new("counted")).await?;
/// b.recv().await?;
/// transport::export_stats("doc-session", &a.stats());
///
/// let (status, body) = examples::metrics_http::get(addr, "/metrics").await?;
/// assert!(status.contains("200"));
/// assert!(body.contains("transport_frames_sent{session=\"doc-session\"} 1"), "{body}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub async fn serve(addr: SocketAddr) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("binding the metrics endpoint {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("metrics endpoint address: {e}"))?;
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("installing the metrics recorder: {e}"))?;
    tokio::spawn(accept_loop(listener, handle));
    Ok(bound)
}

async fn accept_loop(listener: TcpListener, handle: PrometheusHandle) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream, handle.clone()));
            }
            Err(e) => tracing::warn!(error = %e, "metrics endpoint: accept failed"),
        }
    }
}

/// Answers one request: `GET /metrics` with the rendered metrics, anything else with 404.
async fn answer(mut stream: TcpStream, handle: PrometheusHandle) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let first_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, body) = if first_line.starts_with(b"GET /metrics ") {
        ("200 OK", handle.render())
    } else {
        ("404 Not Found", "only GET /metrics is served\n".to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = stream.write_all(response.as_bytes()).await {
        tracing::debug!(error = %e, "metrics endpoint: writing the answer failed");
    }
    let _ = stream.shutdown().await;
}

/// Fetches `http://ADDR/PATH` once (loopback scrapes in tests and tools): the status line and
/// the body.
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(String, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}
