//! Shared integration-test support: an in-memory socket, a test PKI built
//! with rcgen, and a rustls TLS 1.3 echo server. Use with `mod support;`.
//!
//! Every integration test compiles this module separately, so items one test
//! does not use are expected.
#![allow(dead_code)]

pub mod at_modem;
pub mod broker;
pub mod emulated;
pub mod example;
pub mod fault_proxy;
pub mod inject_proxy;
pub mod mock_broker;
pub mod pki;
pub mod server;

// Each test file uses only some of these.
#[allow(unused_imports)]
pub use broker::*;
#[allow(unused_imports)]
pub use example::*;
#[allow(unused_imports)]
pub use mock_broker::*;
#[allow(unused_imports)]
pub use pki::*;
#[allow(unused_imports)]
pub use server::*;

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

/// Upper bound for any single step that could hang (handshake, one read, one
/// write, joining the server task). Generous because dependencies are built
/// without optimisation in the test profile.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Await `fut`, panicking with "`what` timed out" after [`TIMEOUT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(output) => output,
        Err(_) => panic!("{what} timed out after {TIMEOUT:?}"),
    }
}

/// Await a server task (bounded by [`TIMEOUT`]), re-raising its panic if it panicked.
pub async fn join_server<T>(handle: JoinHandle<T>) -> T {
    match within("joining the server task", handle).await {
        Ok(output) => output,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("server task did not complete: {e}"),
    }
}

#[cfg(feature = "defmt")]
mod defmt_logger;

/// [`mqtts::time::Timer`] on tokio's clock (milliseconds since creation).
#[derive(Debug, Clone, Copy)]
pub struct TokioTimer {
    start: tokio::time::Instant,
}

impl TokioTimer {
    pub fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl mqtts::time::Timer for TokioTimer {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    async fn sleep_until(&mut self, deadline: u64) {
        tokio::time::sleep_until(self.start + Duration::from_millis(deadline)).await;
    }
}
