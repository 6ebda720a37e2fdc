//! Forming the cluster: every process listens on its own address, connects to every
//! process with a lower id, and accepts every process with a higher id, so each pair
//! of processes shares one connection.
//!
//! The whole formation is bounded by one deadline (`--connect-timeout`). Connecting
//! (with back-off) and every handshake run on threads of their own, so a connection
//! that is slow or silent delays nothing but itself: an accepted connection has
//! [`ACCEPT_HELLO_TIMEOUT`] to say hello, and every read of a handshake is bounded by
//! its deadline as a whole, not per read. Strangers are logged, dropped and listed in
//! the error if the cluster then fails to form.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::hello::{
    proof, read_exact_by, verify, write_all, Hello, HelloError, ACCEPT_HELLO_TIMEOUT, PROOF_LEN,
};
use crate::error::{Error, Result};

/// Handshakes with accepted connections that may run at once; more are dropped.
const MAX_PENDING_HANDSHAKES: usize = 64;

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

/// What the handshake threads report.
enum Event {
    /// A peer of this cluster, checked.
    Joined(usize, TcpStream),
    /// The formation cannot succeed.
    Failed(Error),
    /// An accepted connection that is not a peer of this cluster.
    Stranger(String),
}

/// Everything a handshake needs, shared by its threads.
struct Ours {
    hello: Hello,
    bytes: Vec<u8>,
    secret: Option<Arc<[u8]>>,
    addresses: Vec<String>,
    me: usize,
    timeout: Duration,
}

/// Connects this process (`me`) to every other process of `addresses`; the streams are
/// indexed by process id (`None` for `me`). With `secret`, every peer must prove it
/// holds it.
pub(crate) fn form(
    addresses: &[String],
    me: usize,
    hello: &Hello,
    secret: Option<Arc<[u8]>>,
    timeout: Duration,
) -> Result<Vec<Option<TcpStream>>> {
    let deadline = Instant::now() + timeout;
    // Every address must resolve before anything waits on the network.
    let resolved: Vec<SocketAddr> = addresses
        .iter()
        .enumerate()
        .map(|(p, a)| resolve(a, p))
        .collect::<Result<_>>()?;
    for (p, a) in resolved.iter().enumerate() {
        if let Some(q) = resolved[..p].iter().position(|b| b == a) {
            return Err(Error::Cluster(format!(
                "processes {q} and {p} have the same address {a} ({:?} and {:?} in -a): give every process its own host:port",
                addresses[q], addresses[p]
            )));
        }
    }
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
    let ours = Arc::new(Ours {
        bytes: hello.to_bytes(),
        hello: hello.clone(),
        secret,
        addresses: addresses.to_vec(),
        me,
        timeout,
    });
    let (tx, rx) = mpsc::channel::<Event>();
    for (p, &target) in resolved.iter().enumerate().take(me) {
        let (ours, tx) = (ours.clone(), tx.clone());
        spawn(format!("waxfast-connect-{p}"), move || {
            // Past the deadline without a connection, the main loop names every
            // process never heard from.
            let event = match connect(&ours, p, target, deadline) {
                Ok(Some(s)) => Event::Joined(p, s),
                Ok(None) => return,
                Err(e) => Event::Failed(e),
            };
            let _ = tx.send(event);
        })?;
    }

    let mut peers: Vec<Option<TcpStream>> = (0..addresses.len()).map(|_| None).collect();
    let mut missing = addresses.len() - 1;
    let mut strangers: Vec<String> = Vec::new();
    let pending = Arc::new(AtomicUsize::new(0));
    while missing > 0 {
        loop {
            match listener.accept() {
                Ok((stream, from)) => {
                    if pending.load(Ordering::Acquire) >= MAX_PENDING_HANDSHAKES {
                        tracing::warn!(%from, "too many handshakes under way; dropped a connection");
                        continue;
                    }
                    pending.fetch_add(1, Ordering::AcqRel);
                    let (ours, tx, pending) = (ours.clone(), tx.clone(), pending.clone());
                    spawn("waxfast-accept".into(), move || {
                        let hello_by = deadline.min(Instant::now() + ACCEPT_HELLO_TIMEOUT);
                        let event = accept(&ours, stream, from, hello_by, deadline);
                        pending.fetch_sub(1, Ordering::AcqRel);
                        let _ = tx.send(event);
                    })?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Cluster(format!("accepting on {own}: {e}"))),
            }
        }
        if let Some(signal) = crate::base::signal::interrupted() {
            return Err(Error::Interrupted { signal });
        }
        if Instant::now() >= deadline {
            return Err(never_answered(addresses, me, &peers, timeout, &strangers));
        }
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(Event::Joined(p, s)) => {
                if peers[p].is_some() {
                    return Err(Error::Cluster(format!(
                        "duplicate process id {p}: a second process also says it is process {p}; give each process its own -i"
                    )));
                }
                peers[p] = Some(s);
                missing -= 1;
            }
            Ok(Event::Failed(e)) => return Err(e),
            Ok(Event::Stranger(why)) => {
                tracing::warn!("{why}");
                strangers.push(why);
            }
            Err(_) => {}
        }
    }
    Ok(peers)
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map(|_| ())
        .map_err(|e| Error::Cluster(format!("cannot start a handshake thread: {e}")))
}

fn describe(ours: &Ours, p: usize) -> String {
    format!("process {p} ({})", ours.addresses[p])
}

/// Connects to process `p` (retrying with back-off) and shakes hands; `None` if the
/// deadline passed before a connection was made.
fn connect(
    ours: &Ours,
    p: usize,
    target: SocketAddr,
    deadline: Instant,
) -> Result<Option<TcpStream>> {
    let mut backoff = Duration::from_millis(10);
    let mut stream = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        match TcpStream::connect_timeout(&target, left.min(Duration::from_secs(1))) {
            Ok(s) => break s,
            Err(e) => {
                tracing::debug!(peer = p, error = %e, "connect failed; retrying");
                std::thread::sleep(backoff.min(left));
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    };
    let who = describe(ours, p);
    let io = |e: std::io::Error| Error::Cluster(format!("handshake with {who}: {e}"));
    stream.set_nodelay(true).map_err(io)?;
    write_all(&mut stream, &ours.bytes).map_err(io)?;
    let failed = |e: HelloError| {
        match e {
        HelloError::TimedOut => Error::Cluster(format!(
            "{who} accepted the connection but did not finish the handshake within {:?}; is a waxfast process of this cluster running there?",
            ours.timeout
        )),
        HelloError::Version { theirs, ours } => Error::Cluster(format!(
            "{who} has protocol version {theirs} but this process has {ours}: run the same waxfast on every process"
        )),
        e => Error::Cluster(format!("handshake with {who}: {e}")),
    }
    };
    let (theirs, their_bytes) = Hello::read_from(&mut stream, deadline).map_err(failed)?;
    prove(ours, &mut stream, &theirs, &their_bytes, deadline).map_err(failed)?;
    ours.hello.check(&theirs, &who).map_err(Error::Cluster)?;
    if theirs.process as usize != p {
        return Err(Error::Cluster(format!(
            "{who} says it is process {}: each process needs its own -i, matching its position in -a",
            theirs.process
        )));
    }
    Ok(Some(stream))
}

/// Shakes hands with an accepted connection.
fn accept(
    ours: &Ours,
    mut stream: TcpStream,
    from: SocketAddr,
    hello_by: Instant,
    deadline: Instant,
) -> Event {
    let stranger =
        |why: String| Event::Stranger(format!("dropped a connection from {from}: {why}"));
    if let Err(e) = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_nodelay(true))
    {
        return stranger(e.to_string());
    }
    let (theirs, their_bytes) = match Hello::read_from(&mut stream, hello_by) {
        Ok(h) => h,
        Err(HelloError::Version { theirs, ours: v }) if ours.secret.is_none() => {
            // Without a secret a hello cannot be authenticated: a peer of another
            // version is taken at its word, and told ours so that it reports it too.
            let _ = write_all(&mut stream, &ours.bytes);
            return Event::Failed(Error::Cluster(format!(
                "a process connecting from {from} has protocol version {theirs} but this process has {v}: run the same waxfast on every process"
            )));
        }
        Err(e) => return stranger(e.to_string()),
    };
    // Answer before checking, so that a peer that disagrees reports it too.
    if let Err(e) = write_all(&mut stream, &ours.bytes) {
        return stranger(e.to_string());
    }
    if let Err(e) = prove(ours, &mut stream, &theirs, &their_bytes, deadline) {
        return match e {
            HelloError::Stranger(_) | HelloError::TimedOut | HelloError::Io(_)
                if ours.secret.is_some() =>
            {
                stranger(e.to_string())
            }
            e => Event::Failed(Error::Cluster(format!(
                "handshake with a process connecting from {from}: {e}"
            ))),
        };
    }
    let who = format!("process {} (connecting from {from})", theirs.process);
    if let Err(m) = ours.hello.check(&theirs, &who) {
        return Event::Failed(Error::Cluster(m));
    }
    let p = theirs.process as usize;
    if p <= ours.me || p >= ours.addresses.len() {
        return Event::Failed(Error::Cluster(format!(
            "{who} is not a process this one expects a connection from (processes {}..{}): check -i on every process",
            ours.me + 1,
            ours.addresses.len()
        )));
    }
    Event::Joined(p, stream)
}

/// With a secret, exchanges and checks proofs; without, makes sure the peer expects
/// none either.
fn prove(
    ours: &Ours,
    stream: &mut TcpStream,
    theirs: &Hello,
    their_bytes: &[u8],
    deadline: Instant,
) -> std::result::Result<(), HelloError> {
    let Some(secret) = &ours.secret else {
        if theirs.authenticated {
            return Err(HelloError::Io(std::io::Error::other(
                "it holds a cluster secret but this process has none: give every process the same --cluster-secret-file",
            )));
        }
        return Ok(());
    };
    if !theirs.authenticated {
        return Err(HelloError::Stranger(
            "it did not offer to prove it holds the cluster secret".into(),
        ));
    }
    write_all(stream, &proof(secret, &ours.bytes, their_bytes))?;
    let mut their_proof = [0u8; PROOF_LEN];
    read_exact_by(stream, &mut their_proof, deadline)?;
    if !verify(secret, &ours.bytes, their_bytes, &their_proof) {
        return Err(HelloError::Stranger(
            "its proof does not match the cluster secret (is every process given the same --cluster-secret-file?)".into(),
        ));
    }
    Ok(())
}

fn never_answered(
    addresses: &[String],
    me: usize,
    peers: &[Option<TcpStream>],
    timeout: Duration,
    strangers: &[String],
) -> Error {
    let silent: Vec<String> = (0..addresses.len())
        .filter(|&p| p != me && peers[p].is_none())
        .map(|p| format!("process {p} at {}", addresses[p]))
        .collect();
    let dropped = if strangers.is_empty() {
        String::new()
    } else {
        format!("; meanwhile {}", strangers.join("; "))
    };
    Error::Cluster(format!(
        "the cluster did not form within {timeout:?}: never heard from {} (start every process listed in -a, or raise --connect-timeout){dropped}",
        silent.join(", ")
    ))
}
