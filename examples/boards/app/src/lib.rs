//! The board-independent mqtts firmware application, shared by the board
//! projects under `examples/boards/`: build-time settings ([`config`]) and
//! the MQTT application ([`app`]), plus optional glue for embassy-net
//! ([`net`], feature `embassy-net`) and esp-radio Wi-Fi ([`wifi`], feature
//! `esp-radio`).
//!
//! Nothing here names an esp-hal type: a board brings a [`Connector`]
//! (embassy-net over Wi-Fi, or an ESP8266 AT modem), a clock for
//! certificate dates if it can learn the time ([`sntp`] over embassy-net),
//! a cryptographic RNG and its pins, and calls [`run`].
//!
//! [`Connector`]: mqtts::reconnect::Connector
#![no_std]

#[cfg(test)]
extern crate std;

pub mod app;
pub mod config;
#[cfg(feature = "embassy-net")]
pub mod net;
pub mod sntp;
#[cfg(feature = "esp-radio")]
pub mod wifi;

pub use app::{BROKER_HOST, BROKER_PORT, Board, Memory, Settings, run};
