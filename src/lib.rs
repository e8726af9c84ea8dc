//! # mqtts: MQTT over TLS 1.3 for microcontrollers, with pinning that cannot be bypassed
//!
//! `mqtts` connects firmware to an MQTT broker (flespi.io, mosquitto, ...)
//! over TLS 1.3, on any board, with any async socket:
//!
//! - **Trust you choose, never skipped**: pin the broker's certificate by
//!   SHA-1 (as old Arduino sketches do) or SHA-256, pin its public key
//!   (survives renewals), list several pins for a rotation, or validate the
//!   chain up to CA certificates. See [`trust`].
//! - **The server's signature is always checked**: whatever the mode, the
//!   server must prove it holds the key of the certificate that passed the
//!   trust check (TLS 1.3 CertificateVerify), and a handshake without
//!   Certificate or CertificateVerify is refused.
//! - **Errors that say what went wrong**: a pin mismatch carries the
//!   fingerprints the server actually presented, ready to paste. See
//!   [`Error`].
//! - **`no_std`, no heap** with default features, caller-owned buffers,
//!   HAL-agnostic async (`embedded-io-async`), no executor assumed.
//!
//! ```no_run
//! # async fn demo<S: embedded_io_async::Read + embedded_io_async::Write>(
//! #     socket: S, rng: &mut (impl rand_core::RngCore + rand_core::CryptoRng),
//! # ) -> Result<(), mqtts::Error> {
//! use embedded_io_async::Write as _;
//! use mqtts::tls::{self, MaxFragmentLength, TlsOptions};
//! use mqtts::trust::{Pin, Trust};
//!
//! static PINS: [Pin; 2] = [
//!     // The broker's public key (SHA-256 of its SubjectPublicKeyInfo)...
//!     mqtts::pin_public_key!("7D:9F:2C:25:8C:A4:1A:84:5F:30:46:2D:CD:28:3F:54:A1:8B:40:5C:2F:3B:96:1B:37:5E:7B:6F:CC:A3:61:0A"),
//!     // ...or the SHA-1 of its certificate, pasted from an Arduino sketch.
//!     mqtts::pin_certificate!("B8 0C 7C 08 6E 8D 8B 5F 2F 59 43 E3 37 6D 3C 30 A9 0E 04 24"),
//! ];
//! let options = TlsOptions::new("mqtt.flespi.io", Trust::pinned(&PINS))
//!     .with_max_fragment_length(MaxFragmentLength::Bytes1024);
//! let mut read_buffer = [0; MaxFragmentLength::Bytes1024.read_buffer_len()];
//! let mut write_buffer = [0; 1024];
//! match tls::connect(socket, &mut read_buffer, &mut write_buffer, rng, &options).await {
//!     Ok(mut stream) => {
//!         stream.write_all(b"\x10...").await?; // an MQTT CONNECT
//!         stream.flush().await?;
//!     }
//!     // After a certificate rotation: log what the broker presents now.
//!     Err(mqtts::Error::PinMismatch { presented }) => {
//!         // e.g. defmt::error!("pin mismatch: {}", presented);
//!         let _ = presented;
//!     }
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```
//!
//! ## Features
//! | feature | adds |
//! |---|---|
//! | `p384` | servers with ECDSA P-384 keys, P-384 CAs, and P-256 CAs that sign with SHA-384 (SHA-384 costs ~48 KB of flash on riscv32imc, so it is left out otherwise) |
//! | `ed25519` | servers with Ed25519 keys |
//! | `rsa` | servers with RSA 2048-4096 keys and RSA-signed chains; needs `alloc` and a global allocator |
//! | `flespi` | the [flespi.io](https://flespi.io) preset (enables `rsa`) |
//! | `sha2-compact` | sha2's compact (rolled) SHA-2 code for the whole firmware: ~3 KB less flash, ~48 KB less where SHA-384/512 is linked, slower hashing |
//! | `embassy-time` | [`time::EmbassyTimer`] |
//! | `esp-at` | `esp_at`: an ESP8266 with Espressif's AT firmware as a UART Wi-Fi modem (socket and connector) |
//! | `critical-section` | `rsa` on targets without compare-and-swap through a `critical-section` implementation (not with esp-hal) |
//! | `defmt` | `defmt::Format` for all public types |
//! | `log` | log messages (the insecure-mode and unknown-time warnings) through `log` |
//! | `insecure` | `Trust::insecure_accept_any_certificate` for host tools and tests; without it, firmware cannot skip authentication |
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Errors carry the presented fingerprints (84 bytes) and the expected server
// name (up to 253 bytes) by design: they are what a user needs to fix a
// failed connection. Without a heap they cannot be boxed, and they are
// returned once per failed connection, not on a hot path.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod client;
pub mod error;
#[cfg(feature = "esp-at")]
pub mod esp_at;
pub mod fingerprint;
#[cfg(feature = "flespi")]
pub mod flespi;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod keep_alive;
pub mod mqtt;
pub mod reconnect;
pub mod session;
mod stack;
pub mod time;
pub mod tls;
pub mod transport;
pub mod trust;

pub use error::Error;
pub use fingerprint::{Fingerprint, FingerprintError};
pub use session::Session;
