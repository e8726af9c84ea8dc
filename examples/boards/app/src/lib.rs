//! The board-independent mqtts firmware application, shared by the board
//! projects under `examples/boards/`: build-time settings ([`config`]), the
//! MQTT application ([`app`]) and the watchdog schedule it follows
//! ([`watchdog`]), plus optional glue for embassy-net (`net`, feature
//! `embassy-net`), esp-radio Wi-Fi (`wifi`, feature `esp-radio`) and what
//! every ESP board needs (`esp`, feature `esp`: watchdog, reset on panic).
//!
//! The application names no esp-hal type: a board brings a [`Connector`]
//! (embassy-net over Wi-Fi, or an ESP8266 AT modem), the [`Link`] to watch,
//! a clock for certificate dates if it can learn the time ([`sntp`] over
//! embassy-net), a cryptographic RNG, its pins and watchdog, and calls
//! [`run`].
//!
//! [`Connector`]: mqtts::reconnect::Connector
#![no_std]

#[cfg(test)]
extern crate std;

/// embassy-time's mock clock is one for the whole test process: tests that
/// read or advance it hold this lock.
#[cfg(test)]
pub(crate) fn test_clock() -> std::sync::MutexGuard<'static, ()> {
    static CLOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    CLOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub mod app;
pub mod config;
#[cfg(feature = "emulated")]
pub mod emulated;
#[cfg(feature = "esp")]
pub mod esp;
#[cfg(feature = "embassy-net")]
pub mod net;
pub mod sntp;
pub mod watchdog;
#[cfg(feature = "esp-radio")]
pub mod wifi;

pub use app::{
    BROKER_HOST, BROKER_PORT, Board, BrokerTrust, HeapUse, Link, Memory, Settings, Unwatched, run,
};
