//! Forming the cluster: every process listens on its own address, connects to every
//! process with a lower id, and accepts every process with a higher id, so each pair
//! of processes shares one connection. Connecting retries with back-off until the
//! deadline; past it the error lists the processes that never answered.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::hello::{Hello, HelloError, ACCEPT_HELLO_TIMEOUT};
use crate::error::{Error, Result};

fn resolve(addr: &str, process: usize) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .map_err(|e| {
            Error::Cluster(format!(
                "cannot resolve address {addr:?} of process {process} in -a: {e} (expected host:port)"
            ))
        })?
        .next()
        .ok_or_else(|| Error::Cluster(format!("address {addr:?} of process {process} in -a resolves to nothing")))
}

/// Connects this process (`me`) to every other process of `addresses`; the streams are
/// indexed by process id (`None` for `me`).
pub(crate) fn form(
    addresses: &[String],
    me: usize,
    hello: &Hello,
    timeout: Duration,
) -> Result<Vec<Option<TcpStream>>> {
    let deadline = Instant::now() + timeout;
    // Every address must resolve before anything waits on the network.
    let resolved: Vec<SocketAddr> = addresses
        .iter()
        .enumerate()
        .map(|(p, a)| resolve(a, p))
        .collect::<Result<_>>()?;
    let own = resolved[me];
    let listener = TcpListener::bind(own).map_err(|e| {
        Error::Cluster(format!(
            "process {me} cannot listen on {} (its address in -a): {e}",
            addresses[me]
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Cluster(format!("cannot configure the listener on {own}: {e}")))?;
    let mut peers: Vec<Option<TcpStream>> = (0..addresses.len()).map(|_| None).collect();
    let describe = |p: usize| format!("process {p} ({})", addresses[p]);

    for (p, addr) in addresses.iter().enumerate().take(me) {
        let target = resolved[p];
        let mut backoff = Duration::from_millis(10);
        let stream = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(never_answered(addresses, me, &peers, timeout));
            }
            match TcpStream::connect_timeout(&target, left.min(Duration::from_secs(1))) {
                Ok(s) => break s,
                Err(e) => {
                    tracing::debug!(peer = p, %addr, error = %e, "connect failed; retrying");
                    std::thread::sleep(backoff.min(left));
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        };
        let mut stream = stream;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        let io = |e: std::io::Error| Error::Cluster(format!("handshake with {}: {e}", describe(p)));
        stream.set_nodelay(true).map_err(io)?;
        stream.set_read_timeout(Some(left)).map_err(io)?;
        hello.write_to(&mut stream).map_err(io)?;
        let theirs = Hello::read_from(&mut stream).map_err(|e| match e {
            HelloError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => Error::Cluster(format!(
                "{} accepted the connection but did not answer the handshake within {timeout:?}; is a waxfast process of this cluster running there?",
                describe(p)
            )),
            e => Error::Cluster(format!("handshake with {}: {e}", describe(p))),
        })?;
        hello.check(&theirs, &describe(p)).map_err(Error::Cluster)?;
        if theirs.process as usize != p {
            return Err(Error::Cluster(format!(
                "{} says it is process {}: each process needs its own -i, matching its position in -a",
                describe(p),
                theirs.process
            )));
        }
        peers[p] = Some(stream);
    }

    let mut missing = addresses.len() - me - 1;
    while missing > 0 {
        let (mut stream, from) = match listener.accept() {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(never_answered(addresses, me, &peers, timeout));
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(e) => return Err(Error::Cluster(format!("accepting on {own}: {e}"))),
        };
        let io = |e: std::io::Error| Error::Cluster(format!("handshake with {from}: {e}"));
        stream.set_nonblocking(false).map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        stream
            .set_read_timeout(Some(ACCEPT_HELLO_TIMEOUT))
            .map_err(io)?;
        let theirs = match Hello::read_from(&mut stream) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(%from, error = %e, "rejected a connection that is not a waxfast peer");
                continue;
            }
        };
        let who = format!("process {} (connecting from {from})", theirs.process);
        // Answer even on a mismatch, so the peer reports it too.
        let _ = hello.write_to(&mut stream);
        hello.check(&theirs, &who).map_err(Error::Cluster)?;
        let p = theirs.process as usize;
        if p <= me || p >= addresses.len() {
            return Err(Error::Cluster(format!(
                "{who} is not a process this one expects a connection from (processes {}..{}): check -i on every process",
                me + 1,
                addresses.len()
            )));
        }
        if peers[p].is_some() {
            return Err(Error::Cluster(format!(
                "duplicate process id {p}: a second process connecting from {from} also says it is process {p}; give each process its own -i"
            )));
        }
        peers[p] = Some(stream);
        missing -= 1;
    }
    Ok(peers)
}

fn never_answered(
    addresses: &[String],
    me: usize,
    peers: &[Option<TcpStream>],
    timeout: Duration,
) -> Error {
    let silent: Vec<String> = (0..addresses.len())
        .filter(|&p| p != me && peers[p].is_none())
        .map(|p| format!("process {p} at {}", addresses[p]))
        .collect();
    Error::Cluster(format!(
        "the cluster did not form within {timeout:?}: never heard from {} (start every process listed in -a, or raise --connect-timeout)",
        silent.join(", ")
    ))
}
