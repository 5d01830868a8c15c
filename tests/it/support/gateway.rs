//! The one way the integration tests start a gateway: `app::Runtime`, exactly as `canarist
//! serve` runs it, on a `127.0.0.1:0` listener; [`Options`] says what a test leaves out or
//! replaces (no store for the pure-proxy tests, a memory sink, no controller).

use std::sync::Arc;
use std::time::Duration;

use canarist::app::{Options, Runtime, Storage};
use canarist::capture::{MemorySink, Sink};
use canarist::config::Config;
use canarist::store::Store;

/// Starts `config` on a fresh local port with `options`.
pub async fn start(config: Config, options: Options) -> Runtime {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port");
    Runtime::start_with(config, listener, options)
        .await
        .unwrap_or_else(|e| panic!("gateway starts: {e}"))
}

/// A pure proxy (no store: no guardrails, judge or controller) capturing into `sink`.
pub fn without_store(sink: &MemorySink) -> Options {
    Options {
        storage: Storage::Without,
        sink: Some(Arc::new(sink.clone())),
        grace: Duration::from_secs(5),
        ..Options::default()
    }
}

/// Everything `serve` runs, on `store` (the test closes it).
pub fn with_store(store: &Store) -> Options {
    Options {
        storage: Storage::Use(store.clone()),
        grace: Duration::from_secs(5),
        ..Options::default()
    }
}

/// Only the gateway on `store`, capturing into `sink`: no guardrails or controller (tests
/// that drive those themselves, or must not have them act).
pub fn gateway_only(store: &Store, sink: Arc<dyn Sink>) -> Options {
    Options {
        sink: Some(sink),
        guardrails: false,
        controller: false,
        ..with_store(store)
    }
}
