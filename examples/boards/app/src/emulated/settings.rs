//! The application's [`Settings`] from the command line's [`Args`].

use core::fmt::Write as _;

use embassy_time::Duration;
use heapless::String;
use mqtts::client::BrokerLimits;
use mqtts::fingerprint::Fingerprint;
use mqtts::trust::Pin;

use super::cmdline::{Args, Trust};
use crate::app::{BrokerTrust, Settings};
use crate::config;

/// Room for what [`settings`] derives: the topic prefix, the pin, the root.
#[derive(Debug)]
pub struct Names {
    topic_prefix: String<{ 8 + 64 }>,
    pins: [Pin; 1],
    roots: [&'static [u8]; 1],
}

impl Names {
    /// Empty names.
    pub const fn new() -> Self {
        Self {
            topic_prefix: String::new(),
            pins: [Pin::PublicKey([0; 32])],
            roots: [&[]],
        }
    }
}

impl Default for Names {
    fn default() -> Self {
        Self::new()
    }
}

/// The application's settings from the command line. `ca_root` is the DER
/// root read for `trust=ca:` (else unused). The token is the build's
/// (`FLESPI_TOKEN`, a placeholder in the emulated builds).
pub fn settings<'a>(
    names: &'a mut Names,
    args: &Args<'a>,
    ca_root: Option<&'static [u8]>,
) -> Settings<'a> {
    let Names {
        topic_prefix,
        pins,
        roots,
    } = names;
    let prefix: &str = match args.prefix {
        Some(prefix) => prefix,
        None => {
            topic_prefix.clear();
            // Fits: 8 + at most 64 bytes.
            let _ = write!(topic_prefix, "devices/{}", args.client_id);
            topic_prefix.as_str()
        }
    };
    let trust = match args.trust {
        Trust::Flespi => BrokerTrust::Roots(mqtts::flespi::ROOTS),
        Trust::Spki(hash) => {
            pins[0] = Pin::PublicKey(hash);
            BrokerTrust::Pins(&pins[..])
        }
        Trust::Certificate(hash) => {
            pins[0] = Pin::Certificate(Fingerprint::Sha256(hash));
            BrokerTrust::Pins(&pins[..])
        }
        Trust::Ca(_) => {
            roots[0] = ca_root.unwrap_or(&[]);
            BrokerTrust::Roots(&roots[..])
        }
    };
    Settings {
        client_id: args.client_id,
        token: config::FLESPI_TOKEN,
        topic_prefix: prefix,
        publish_interval: Duration::from_secs(u64::from(args.interval_secs)),
        // mosquitto, not flespi: QoS 2 is accepted.
        limits: BrokerLimits::NONE,
        keep_alive_secs: args.keep_alive_secs,
        trust,
    }
}
