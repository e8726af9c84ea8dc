//! Preset for [flespi.io](https://flespi.io)'s MQTT broker (feature `flespi`).
//!
//! - Host `mqtt.flespi.io` (or `ru-mqtt.flespi.io`), port 8883, SNI.
//! - Trust: CA mode with the GlobalSign roots flespi's chain leads to
//!   ("GlobalSign Root CA - R6", and "GlobalSign Root CA" R1 until it
//!   expires on 2028-01-28), optionally plus pins; either can be replaced.
//!   GlobalSign's chain is RSA-signed, so this feature enables `rsa`, which
//!   needs `alloc` and a global allocator (`esp-alloc` on ESP chips).
//! - Credentials: the flespi token as MQTT user name (no password), or, for
//!   clients limited to 16-byte credentials, the token id as user name and
//!   the first 16 characters of the token key as password.
//! - flespi's documented limits are enforced before sending: QoS 0 and 1
//!   only, no publishing to `flespi/...` topics, a client id is required.
//!   **Two devices with the same client id disconnect each other**: give
//!   each device its own.
//!
//! CA mode checks certificate dates (RFC 5280 §4.1.2.5), so the TLS
//! options need the time: a [`WallClock`](crate::time::WallClock) (SNTP, an
//! RTC) with [`TlsOptions::with_wall_clock`], read at each connect, and the
//! firmware's build time as a floor with [`TlsOptions::with_minimum_time`].
//! A board that cannot learn the time chooses
//! [`TlsOptions::allow_unknown_time`] explicitly (an expired certificate of
//! flespi is then refused only if it expired before the floor); without
//! either, connecting fails with
//! [`ConfigError::NoTimeSource`].
//! Pins ([`Flespi::pinned_only`]) need no time.
//!
//! ```
//! use mqtts::flespi::{Credentials, Flespi};
//! use mqtts::time::WallClock;
//! # struct Sntp;
//! # impl WallClock for Sntp { fn now_unix_secs(&self) -> Option<u64> { None } }
//! # const BUILD_TIME: u64 = 1_800_000_000;
//!
//! static SNTP: Sntp = Sntp; // the application's SNTP client
//! let flespi = Flespi::new("device-42", Credentials::Token("FlespiToken XXXXXXXX"));
//! let tls = flespi
//!     .tls_options()
//!     .with_wall_clock(&SNTP)
//!     .with_minimum_time(BUILD_TIME);
//! let mqtt = flespi.connect_options().unwrap().with_keep_alive(120);
//! assert_eq!(tls.server_name(), "mqtt.flespi.io");
//! assert_eq!(tls.check(), Ok(()));
//! assert_eq!(mqtt.username, Some("FlespiToken XXXXXXXX"));
//! ```

use crate::client::{BrokerLimits, ConnectOptions};
use crate::error::{ConfigError, Error};
use crate::mqtt::QoS;
use crate::tls::TlsOptions;
use crate::trust::{Pin, Trust};

/// flespi's broker (EU region).
pub const HOST: &str = "mqtt.flespi.io";
/// flespi's broker in the RU region.
pub const HOST_RU: &str = "ru-mqtt.flespi.io";
/// MQTT over TLS.
pub const PORT: u16 = 8883;

/// "GlobalSign Root CA - R6" (RSA-4096, valid until 2034-12-10), DER.
pub const GLOBALSIGN_ROOT_CA_R6: &[u8] = include_bytes!("../certs/globalsign-root-ca-r6.der");
/// "GlobalSign Root CA" (R1, RSA-2048, valid until 2028-01-28), DER.
pub const GLOBALSIGN_ROOT_CA: &[u8] = include_bytes!("../certs/globalsign-root-ca.der");
/// The trust anchors the preset uses by default.
pub const ROOTS: &[&[u8]] = &[GLOBALSIGN_ROOT_CA_R6, GLOBALSIGN_ROOT_CA];

/// What flespi accepts: QoS 0 and 1, and no publishing to `flespi/...`.
pub const LIMITS: BrokerLimits = BrokerLimits {
    max_qos: QoS::AtLeastOnce,
    reserved_prefix: Some("flespi/"),
};

/// flespi's regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Region {
    /// `mqtt.flespi.io`.
    Eu,
    /// `ru-mqtt.flespi.io`.
    Ru,
}

/// How to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Credentials<'a> {
    /// The token as user name, no password.
    Token(&'a str),
    /// For clients limited to 16-byte credentials: the token's id as user
    /// name, the first 16 characters of its key as password.
    Short {
        /// The token id.
        token_id: &'a str,
        /// The token key (at least 16 characters).
        key: &'a str,
    },
}

/// Connection settings for flespi.
#[derive(Debug, Clone, Copy)]
pub struct Flespi<'a> {
    region: Region,
    client_id: &'a str,
    credentials: Credentials<'a>,
    roots: &'a [&'a [u8]],
    /// `None`: CA mode alone. An empty list is refused at `check()` and
    /// connect, never read as "no pins".
    pins: Option<&'a [Pin]>,
    pins_only: bool,
}

impl<'a> Flespi<'a> {
    /// EU region, GlobalSign roots, no pins.
    pub const fn new(client_id: &'a str, credentials: Credentials<'a>) -> Self {
        Self {
            region: Region::Eu,
            client_id,
            credentials,
            roots: ROOTS,
            pins: None,
            pins_only: false,
        }
    }

    /// Another region.
    pub const fn with_region(mut self, region: Region) -> Self {
        self.region = region;
        self
    }

    /// Other trust anchors instead of the GlobalSign roots.
    pub const fn with_roots(mut self, roots: &'a [&'a [u8]]) -> Self {
        self.roots = roots;
        self
    }

    /// Pins the leaf as well: the chain must validate *and* match a pin.
    /// An empty list is refused with
    /// [`ConfigError::NoPins`] (see [`Trust::with_pins`]).
    pub const fn with_pins(mut self, pins: &'a [Pin]) -> Self {
        self.pins = Some(pins);
        self.pins_only = false;
        self
    }

    /// Pins only, no CA (no clock needed, but pins must follow flespi's
    /// certificate renewals: prefer public-key pins).
    pub const fn pinned_only(mut self, pins: &'a [Pin]) -> Self {
        self.pins = Some(pins);
        self.pins_only = true;
        self
    }

    /// The broker's host name.
    pub const fn host(&self) -> &'static str {
        match self.region {
            Region::Eu => HOST,
            Region::Ru => HOST_RU,
        }
    }

    /// The TCP port.
    pub const fn port(&self) -> u16 {
        PORT
    }

    /// The trust chosen.
    pub const fn trust(&self) -> Trust<'a> {
        let authorities = Trust::certificate_authorities(self.roots);
        match (self.pins, self.pins_only) {
            (Some(pins), true) => Trust::pinned(pins),
            (Some(pins), false) => authorities.with_pins(pins),
            (None, _) => authorities,
        }
    }

    /// TLS settings: host as SNI, the trust chosen. In CA mode (the
    /// default), add the time (see the [module docs](self)).
    pub const fn tls_options(&self) -> TlsOptions<'a> {
        TlsOptions::new(self.host(), self.trust())
    }

    /// MQTT settings: client id, credentials, flespi's limits. Add
    /// keep-alive, session and subscriptions with the `with_*` methods.
    pub fn connect_options(&self) -> Result<ConnectOptions<'a>, Error> {
        if self.client_id.is_empty() {
            return Err(ConfigError::ClientIdRequired.into());
        }
        let options = ConnectOptions::new(self.client_id).with_limits(LIMITS);
        Ok(match self.credentials {
            Credentials::Token(token) => options.with_username(token),
            Credentials::Short { token_id, key } => {
                let password = key
                    .char_indices()
                    .nth(16)
                    .map_or(Some(key), |(end, _)| key.get(..end))
                    .filter(|p| p.chars().count() == 16)
                    .ok_or(ConfigError::TokenKeyTooShort)?;
                options.with_credentials(token_id, password.as_bytes())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::CertificateInfo;
    use std::string::ToString as _;

    #[test]
    fn hosts_ports_and_roots() {
        let flespi = Flespi::new("id", Credentials::Token("t"));
        assert_eq!((flespi.host(), flespi.port()), ("mqtt.flespi.io", 8883));
        assert_eq!(flespi.with_region(Region::Ru).host(), "ru-mqtt.flespi.io");
        assert_eq!(flespi.tls_options().server_name(), "mqtt.flespi.io");
        assert_eq!(flespi.trust().check(), Ok(()));
        let r6 = CertificateInfo::parse(GLOBALSIGN_ROOT_CA_R6).unwrap();
        assert_eq!(
            r6.subject().to_string(),
            "OU=GlobalSign Root CA - R6, O=GlobalSign, CN=GlobalSign"
        );
        let r1 = CertificateInfo::parse(GLOBALSIGN_ROOT_CA).unwrap();
        assert_eq!(r1.not_after(), 1_832_673_600); // 2028-01-28 12:00:00 UTC
        assert!(r6.not_after() > r1.not_after());
    }

    #[test]
    fn credentials() {
        let token = Flespi::new("id", Credentials::Token("FlespiToken abc"))
            .connect_options()
            .unwrap();
        assert_eq!(
            (token.username, token.password),
            (Some("FlespiToken abc"), None)
        );
        let short = Flespi::new(
            "id",
            Credentials::Short {
                token_id: "123456",
                key: "0123456789abcdefXYZ",
            },
        )
        .connect_options()
        .unwrap();
        assert_eq!(short.username, Some("123456"));
        assert_eq!(short.password, Some(&b"0123456789abcdef"[..]));
        let too_short = Flespi::new(
            "id",
            Credentials::Short {
                token_id: "1",
                key: "short",
            },
        );
        assert!(matches!(
            too_short.connect_options(),
            Err(Error::Config(ConfigError::TokenKeyTooShort))
        ));
        assert!(matches!(
            Flespi::new("", Credentials::Token("t")).connect_options(),
            Err(Error::Config(ConfigError::ClientIdRequired))
        ));
    }

    #[test]
    fn limits_and_trust_choices() {
        let options = Flespi::new("id", Credentials::Token("t"))
            .connect_options()
            .unwrap();
        assert_eq!(options.limits, LIMITS);
        let pins = [Pin::PublicKey([1; 32])];
        let pinned = Flespi::new("id", Credentials::Token("t")).pinned_only(&pins);
        assert!(!pinned.trust().is_insecure());
        assert_eq!(pinned.trust().check(), Ok(()));
        let own_root: &[&[u8]] = &[GLOBALSIGN_ROOT_CA];
        let custom = Flespi::new("id", Credentials::Token("t"))
            .with_roots(own_root)
            .with_pins(&pins);
        assert_eq!(custom.trust().check(), Ok(()));
        // An empty list is no pin at all, never "CA only" (issue 15.3).
        let flespi = Flespi::new("id", Credentials::Token("t"));
        for emptied in [flespi.with_pins(&[]), flespi.pinned_only(&[])] {
            assert_eq!(emptied.trust().check(), Err(ConfigError::NoPins));
        }
    }

    /// CA mode needs the time, or the explicit choice to go without it.
    #[test]
    fn the_preset_needs_a_time_source_in_ca_mode() {
        let flespi = Flespi::new("id", Credentials::Token("t"));
        assert_eq!(flespi.tls_options().check(), Err(ConfigError::NoTimeSource));
        assert_eq!(
            flespi.tls_options().with_unix_time(1_800_000_000).check(),
            Ok(())
        );
        assert_eq!(flespi.tls_options().allow_unknown_time().check(), Ok(()));
        let pins = [Pin::PublicKey([1; 32])];
        assert_eq!(flespi.pinned_only(&pins).tls_options().check(), Ok(()));
    }
}
