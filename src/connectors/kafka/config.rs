//! Where the brokers are and how to reach them: shared by [`KafkaSource`] and
//! [`KafkaSink`].
//!
//! [`KafkaSource`]: super::KafkaSource
//! [`KafkaSink`]: super::KafkaSink

use std::sync::Arc;
use std::time::Duration;

use rskafka::client::{Client, ClientBuilder, SaslConfig};
use rskafka::BackoffConfig;

use super::runtime;
use crate::error::BoxError;

/// The brokers and the connection settings of a Kafka source or sink.
///
/// ```
/// use std::time::Duration;
/// use waxfast::connectors::kafka::KafkaConfig;
/// let config = KafkaConfig::new(["127.0.0.1:9092"])
///     .timeout(Duration::from_secs(10))
///     .sasl_plain("user", "secret");
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct KafkaConfig {
    pub(crate) brokers: Vec<String>,
    pub(crate) timeout: Duration,
    client_id: Option<String>,
    sasl: Option<SaslConfig>,
    #[cfg(feature = "kafka-tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
    max_message_size: usize,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print credentials.
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("timeout", &self.timeout)
            .field("client_id", &self.client_id)
            .field("sasl", &self.sasl.is_some())
            .finish_non_exhaustive()
    }
}

/// The default of [`KafkaConfig::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl KafkaConfig {
    /// Bootstrap brokers as `host:port` (Bytewax's `brokers`).
    pub fn new<S: Into<String>>(brokers: impl IntoIterator<Item = S>) -> Self {
        KafkaConfig {
            brokers: brokers.into_iter().map(Into::into).collect(),
            timeout: DEFAULT_TIMEOUT,
            client_id: None,
            sasl: None,
            #[cfg(feature = "kafka-tls")]
            tls: None,
            max_message_size: 100 << 20,
        }
    }

    /// Parses a comma- or semicolon-separated broker list (`host:port,host:port`).
    pub fn parse(brokers: &str) -> Result<Self, String> {
        let list: Vec<&str> = brokers
            .split([',', ';'])
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect();
        if list.is_empty() {
            return Err("no Kafka broker given: expected HOST:PORT".into());
        }
        for b in &list {
            match b.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
                _ => return Err(format!("Kafka broker {b:?} is not HOST:PORT")),
            }
        }
        Ok(KafkaConfig::new(list))
    }

    /// How long a broker may stay unreachable (or keep failing a request) before the
    /// run fails naming it: requests are retried with exponential back-off (100 ms
    /// doubling to 2 s) until then. Default 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The client id the brokers see (default rskafka's).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// Authenticates with SASL PLAIN (use with TLS on a real network).
    pub fn sasl_plain(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.sasl = Some(SaslConfig::Plain(rskafka::client::Credentials::new(
            username.into(),
            password.into(),
        )));
        self
    }

    /// Authenticates with SASL SCRAM-SHA-256 or, with `sha512`, SCRAM-SHA-512.
    pub fn sasl_scram(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
        sha512: bool,
    ) -> Self {
        let c = rskafka::client::Credentials::new(username.into(), password.into());
        self.sasl = Some(if sha512 {
            SaslConfig::ScramSha512(c)
        } else {
            SaslConfig::ScramSha256(c)
        });
        self
    }

    /// Connects with TLS (rustls) using `config` (feature `kafka-tls`).
    #[cfg(feature = "kafka-tls")]
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// The largest response the client accepts from a broker (default 100 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The brokers as one string, for messages.
    pub(crate) fn brokers_str(&self) -> String {
        self.brokers.join(",")
    }

    fn backoff(&self) -> BackoffConfig {
        BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
            deadline: Some(self.timeout),
        }
    }

    /// Connects (retrying until [`timeout`](Self::timeout)); the error names the
    /// brokers and says what to check.
    pub(crate) fn connect(&self) -> Result<Arc<Client>, BoxError> {
        let mut b = ClientBuilder::new(self.brokers.clone())
            .backoff_config(self.backoff())
            .max_message_size(self.max_message_size);
        if let Some(id) = &self.client_id {
            b = b.client_id(id.as_str());
        }
        if let Some(s) = &self.sasl {
            b = b.sasl_config(s.clone());
        }
        #[cfg(feature = "kafka-tls")]
        if let Some(t) = &self.tls {
            b = b.tls_config(t.clone());
        }
        let timeout = self.timeout;
        let built = runtime::block_on(async move {
            // The deadline bounds the retries; this bounds a connection that hangs.
            tokio::time::timeout(timeout + Duration::from_secs(1), b.build()).await
        });
        match built {
            Ok(Ok(c)) => Ok(Arc::new(c)),
            Ok(Err(e)) => Err(self.unreachable(&e.to_string()).into()),
            Err(_) => Err(self.unreachable("timed out").into()),
        }
    }

    /// The message for a broker that does not answer.
    pub(crate) fn unreachable(&self, why: &str) -> String {
        format!(
            "cannot reach the Kafka broker(s) {} within {:?} ({why}); check that they run and that the address is right, or raise the timeout",
            self.brokers_str(),
            self.timeout
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_lists() {
        assert_eq!(
            KafkaConfig::parse("a:1, b:2;").unwrap().brokers,
            vec!["a:1", "b:2"]
        );
        assert!(KafkaConfig::parse("").is_err());
        assert!(KafkaConfig::parse("localhost")
            .unwrap_err()
            .contains("HOST:PORT"));
        assert!(KafkaConfig::parse("h:99999").is_err());
    }
}
