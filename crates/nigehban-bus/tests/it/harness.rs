//! Runs a case against one implementation, with a unique prefix and cleanup.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nigehban_bus::{Bus, BusConfig, InProcessBus, JetStreamBus};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    InProcess,
    JetStream,
}

/// One case's view of its bus: every bus it opens shares the case's prefix.
#[derive(Clone)]
pub struct Env {
    pub kind: Kind,
    url: Option<String>,
    prefix: String,
    in_process: Arc<Mutex<Option<InProcessBus>>>,
}

/// A small configuration for tests; cases change what they exercise.
pub fn config() -> BusConfig {
    BusConfig {
        max_messages: 1000,
        max_bytes: 16 << 20,
        max_message_bytes: 64 << 10,
        max_in_flight: 64,
        max_age: Duration::from_secs(600),
        ack_wait: Duration::from_secs(1),
        request_timeout: Duration::from_secs(5),
        ..BusConfig::default()
    }
}

impl Env {
    /// Opens the case's bus. For JetStream every call is a new client on the same stream
    /// (a restarted process); for the in-process bus the first call's bus is shared.
    pub async fn bus(&self, mut config: BusConfig) -> Bus {
        config.prefix = self.prefix.clone();
        match (&self.kind, &self.url) {
            (Kind::JetStream, Some(url)) => {
                Bus::JetStream(JetStreamBus::connect(url, config).await.expect("connect to NATS"))
            }
            _ => {
                let mut shared = self.in_process.lock().unwrap();
                let bus = shared.get_or_insert_with(|| InProcessBus::new(config).unwrap());
                Bus::InProcess(bus.clone())
            }
        }
    }

    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }
}

/// The NATS server for JetStream runs, or `None` (with a notice) when not configured.
pub fn nats_url() -> Option<String> {
    match std::env::var("NIGEHBAN_TEST_NATS") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("notice: NIGEHBAN_TEST_NATS is not set; JetStream test skipped");
            None
        }
    }
}

/// Runs `case` on a bus of `kind` with a unique prefix, at most 60 s; deletes the JetStream
/// stream afterwards, whether the case passed or not.
pub async fn run<F, Fut>(kind: Kind, case: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let url = match kind {
        Kind::InProcess => None,
        Kind::JetStream => match nats_url() {
            Some(url) => Some(url),
            None => return,
        },
    };
    let prefix = format!("nigehbantest_{}", uuid::Uuid::now_v7().simple());
    let env = Env { kind, url: url.clone(), prefix: prefix.clone(), in_process: Arc::default() };
    let task = tokio::spawn(tokio::time::timeout(Duration::from_secs(60), case(env)));
    let outcome = task.await;
    if let Some(url) = url {
        let cleanup = BusConfig { prefix, ..config() };
        match JetStreamBus::connect(&url, cleanup).await {
            Ok(bus) => {
                if let Err(err) = bus.delete_stream().await {
                    eprintln!("could not delete the test stream: {err}");
                }
            }
            Err(err) => eprintln!("could not connect to delete the test stream: {err}"),
        }
    }
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_elapsed)) => panic!("the case took more than 60 s"),
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => panic!("the case's task failed: {err}"),
    }
}

/// Defines `<case>::in_process` and `<case>::jetstream` tests running `suite::<case>`.
#[macro_export]
macro_rules! both {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                use $crate::harness::{run, Kind};

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn in_process() {
                    run(Kind::InProcess, super::$case).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn jetstream() {
                    run(Kind::JetStream, super::$case).await;
                }
            }
        )*
    };
}
