//! The dataflow API server: a small blocking HTTP/1.1 server on its own threads.
//!
//! One thread accepts; each connection is served on a short-lived thread of its own
//! (at most [`MAX_CONNECTIONS`] at once, others get 503), which reads one request of
//! at most [`MAX_REQUEST`] bytes within [`READ_TIMEOUT`], answers it and closes. Nothing
//! here runs on a worker thread or takes a lock a worker takes: the flow cannot be
//! slowed by a slow or hostile client, only the client itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{expose, Observer};
use crate::error::{Error, Result};

/// The largest request accepted (request line and headers).
const MAX_REQUEST: usize = 8 << 10;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client may take to read the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
const MAX_CONNECTIONS: usize = 16;

/// The dashboard page (self-contained: inline script and style, no network).
const DASHBOARD: &str = include_str!("dashboard.html");

/// Where the dataflow API listens. Off unless set on the run
/// ([`RunConfig::api`](crate::RunConfig::api)).
///
/// ```
/// use waxfast::observe::ApiConfig;
/// use waxfast::RunConfig;
/// let config = RunConfig::default().api(ApiConfig::new("127.0.0.1:3030".parse().unwrap()));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiConfig {
    pub(crate) addr: SocketAddr,
}

impl ApiConfig {
    /// Bytewax's port.
    pub const DEFAULT_PORT: u16 = 3030;

    /// Serves on `addr` (port 0 picks a free port).
    pub fn new(addr: SocketAddr) -> Self {
        ApiConfig { addr }
    }

    /// The address to bind.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A running API server; stopped (and its threads joined) on drop.
#[derive(Debug)]
pub(crate) struct ApiServer {
    addr: SocketAddr,
    obs: Arc<Observer>,
    accept: Option<JoinHandle<()>>,
    sampler: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Binds `config.addr` and starts serving `obs`; a bind failure names the address.
    pub(crate) fn start(config: &ApiConfig, obs: Arc<Observer>) -> Result<ApiServer> {
        let listener = TcpListener::bind(config.addr).map_err(|e| {
            Error::Config(format!(
                "cannot serve the dataflow API on {} (--api-port / WAXFAST_DATAFLOW_API_PORT, --api-bind): {e}",
                config.addr
            ))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Config(format!("dataflow API on {}: {e}", config.addr)))?;
        let spawn_err =
            |e: std::io::Error| Error::Config(format!("cannot start the dataflow API thread: {e}"));
        let o = obs.clone();
        let sampler = std::thread::Builder::new()
            .name("waxfast-api-sampler".into())
            .spawn(move || o.run_sampler())
            .map_err(spawn_err)?;
        let o = obs.clone();
        let accept = std::thread::Builder::new()
            .name("waxfast-api".into())
            .spawn(move || accept_loop(listener, o))
            .map_err(spawn_err)?;
        tracing::info!(%addr, "dataflow API listening");
        Ok(ApiServer {
            addr,
            obs,
            accept: Some(accept),
            sampler: Some(sampler),
        })
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.obs.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept; it sees the flag and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for h in [self.accept.take(), self.sampler.take()]
            .into_iter()
            .flatten()
        {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: TcpListener, obs: Arc<Observer>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if obs.stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut stream) = conn else {
            // Out of file descriptors or the like: back off instead of spinning.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::AcqRel);
            let _ = respond(&mut stream, 503, "text/plain", b"busy\n", false);
            continue;
        }
        let (o, a) = (obs.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("waxfast-api-conn".into())
            .spawn(move || {
                serve(&mut stream, &o);
                a.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Reads the request head: up to the blank line, at most [`MAX_REQUEST`] bytes.
fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Some(buf);
        }
        if buf.len() > MAX_REQUEST {
            return Some(Vec::new());
        }
    }
}

fn serve(stream: &mut TcpStream, obs: &Observer) {
    let Some(head) = read_head(stream) else {
        return;
    };
    if head.is_empty() {
        let _ = respond(stream, 431, "text/plain", b"request too large\n", false);
        return;
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let _ = respond(stream, 405, "text/plain", b"only GET and HEAD\n", false);
        return;
    }
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, body): (u16, &str, Vec<u8>) = match path {
        "/metrics" => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            expose::prometheus(obs).into_bytes(),
        ),
        "/dataflow" => (200, "application/json", obs.graph.to_json().into_bytes()),
        "/status" => (
            200,
            "application/json",
            expose::status(obs).to_string().into_bytes(),
        ),
        "/" | "/index.html" => (
            200,
            "text/html; charset=utf-8",
            DASHBOARD.as_bytes().to_vec(),
        ),
        _ => (
            404,
            "text/plain",
            b"not found: try /, /metrics, /dataflow or /status\n".to_vec(),
        ),
    };
    let _ = respond(stream, status, ctype, &body, head_only);
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body)?;
    }
    stream.flush()
}
