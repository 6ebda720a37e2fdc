//! A real Kafka-compatible broker for the tests: tansu (installed by scripts/kafka),
//! started on a free loopback port per test and killed when the handle drops. Data is
//! written and read back with rskafka directly, independently of the connectors.
#![allow(dead_code)]

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

/// The tansu binary, if installed; under CI a missing broker fails the test.
pub fn tansu() -> Option<PathBuf> {
    let home = std::env::var_os("WAXFAST_TANSU_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/waxfast/tansu"))
        });
    let found = home.map(|h| h.join("bin/tansu")).filter(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "tansu is not installed under CI: scripts/kafka (run by scripts/setup) must install it"
        );
        eprintln!("SKIPPED: tansu is not installed (scripts/setup runs scripts/kafka, which installs it from PyPI)");
    }
    found
}

/// A running broker.
pub struct Broker {
    child: Child,
    pub port: u16,
}

impl Broker {
    /// Starts tansu on a free port (None if it is not installed).
    pub fn start() -> Option<Broker> {
        let bin = tansu()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Some(Broker::start_on(&bin, port))
    }

    fn start_on(bin: &std::path::Path, port: u16) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(bin);
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; the broker dies with the test process.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start tansu");
        let b = Broker { child, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "tansu did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        b
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL): its memory storage is lost.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts an empty broker on the same port again.
    pub fn restart(&mut self) {
        self.kill();
        let bin = tansu().expect("installed");
        let start = Instant::now();
        loop {
            // The port may linger a moment after the kill.
            if std::net::TcpListener::bind(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(20));
        }
        let b = Broker::start_on(&bin, self.port);
        let old = std::mem::replace(self, b);
        std::mem::forget(old); // its child is already reaped
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    async fn client(&self) -> Client {
        ClientBuilder::new(vec![self.addr()]).build().await.unwrap()
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        Self::rt().block_on(async {
            let c = self.client().await;
            c.controller_client()
                .unwrap()
                .create_topic(topic, partitions, 1, 5_000)
                .await
                .unwrap();
        })
    }

    /// Deletes `topic`.
    pub fn delete_topic(&self, topic: &str) {
        Self::rt().block_on(async {
            let c = self.client().await;
            c.controller_client()
                .unwrap()
                .delete_topic(topic, 5_000)
                .await
                .unwrap();
        })
    }

    /// Produces `(key, value)` messages to `partition` of `topic`, in batches of 500.
    pub fn produce(&self, topic: &str, partition: i32, msgs: &[(Option<Vec<u8>>, Vec<u8>)]) {
        self.produce_in(topic, partition, msgs, 500)
    }

    /// [`produce`](Self::produce) in record batches of `batch` messages.
    pub fn produce_in(
        &self,
        topic: &str,
        partition: i32,
        msgs: &[(Option<Vec<u8>>, Vec<u8>)],
        batch: usize,
    ) {
        Self::rt().block_on(async {
            let c = self.client().await;
            let pc = c
                .partition_client(topic, partition, UnknownTopicHandling::Retry)
                .await
                .unwrap();
            for chunk in msgs.chunks(batch) {
                let recs = chunk
                    .iter()
                    .map(|(k, v)| Record {
                        key: k.clone(),
                        value: Some(v.clone()),
                        headers: [("h".to_string(), b"x".to_vec())].into(),
                        timestamp: chrono::Utc::now(),
                    })
                    .collect();
                pc.produce(recs, Compression::NoCompression).await.unwrap();
            }
        })
    }

    /// Every message of `partition` of `topic`: (offset, key, value).
    pub fn read_all(&self, topic: &str, partition: i32) -> Vec<(i64, Option<Vec<u8>>, Vec<u8>)> {
        Self::rt().block_on(async {
            let c = self.client().await;
            let pc = c
                .partition_client(topic, partition, UnknownTopicHandling::Retry)
                .await
                .unwrap();
            let mut out = Vec::new();
            let mut offset = pc.get_offset(OffsetAt::Earliest).await.unwrap();
            loop {
                let (recs, hw) = pc.fetch_records(offset, 1..1_000_000, 1).await.unwrap();
                for r in recs {
                    offset = r.offset + 1;
                    out.push((r.offset, r.record.key, r.record.value.unwrap_or_default()));
                }
                if offset >= hw {
                    return out;
                }
            }
        })
    }

    /// The number of partitions of `topic`.
    pub fn partitions(&self, topic: &str) -> usize {
        Self::rt().block_on(async {
            let c = self.client().await;
            let t = c.list_topics().await.unwrap();
            t.iter()
                .find(|t| t.name == topic)
                .map_or(0, |t| t.partitions.len())
        })
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
