//! Settings taken from the environment when the firmware is compiled.
//!
//! | variable | required | default |
//! |---|---|---|
//! | `WIFI_SSID` | yes | |
//! | `WIFI_PASSWORD` | yes (empty for an open network) | |
//! | `FLESPI_TOKEN` | yes | |
//! | `FLESPI_PIN_SHA256` | no | unset: CA mode (flespi's GlobalSign roots) |
//! | `FLESPI_PIN_SPKI_SHA256` | no | unset: CA mode |
//! | `MQTT_CLIENT_ID` | no | `<chip>-` and the MAC address, e.g. `esp32c3-a0b1c2d3e4f5` |
//! | `MQTT_TOPIC_PREFIX` | no | `devices/<client id>` |
//! | `PUBLISH_INTERVAL_SECS` | no | `30` |
//! | `SNTP_SERVER` | no | `pool.ntp.org` (boards on embassy-net: the time for CA mode's certificate dates) |
//! | `SOURCE_DATE_EPOCH` | no | the time of the build: the earliest time CA mode validates at |
//!
//! A missing required variable, an SSID longer than 32 bytes, a password of
//! 1 to 7 or more than 64 bytes, an interval that is not a number from 1 to
//! 86400, or a pin that is not a SHA-256 fingerprint stops the build with a
//! message naming the variable.
//!
//! Trust: by default the broker's chain must lead to flespi's GlobalSign
//! roots (survives flespi's yearly certificate renewal). Setting
//! `FLESPI_PIN_SHA256` (SHA-256 of the broker's certificate, as
//! `openssl x509 -fingerprint -sha256` prints it) and/or
//! `FLESPI_PIN_SPKI_SHA256` (SHA-256 of its public key, which survives a
//! renewal that keeps the key) replaces the CA check with those pins: the
//! certificate must match one of them. An empty value counts as unset.

use core::fmt::Write as _;

use embassy_time::Duration;
use heapless::{String, Vec};
use mqtts::fingerprint::{Fingerprint, FingerprintError};
use mqtts::trust::Pin;

use crate::app::{BrokerTrust, Settings};

/// The Wi-Fi network's name.
pub const WIFI_SSID: &str = env!(
    "WIFI_SSID",
    "set WIFI_SSID to the Wi-Fi network's name, e.g. `WIFI_SSID=home cargo build --release`"
);

/// The Wi-Fi password (WPA2 personal); empty for an open network.
pub const WIFI_PASSWORD: &str = env!(
    "WIFI_PASSWORD",
    "set WIFI_PASSWORD to the Wi-Fi password (WIFI_PASSWORD= for an open network)"
);

/// The flespi token, sent as the MQTT user name.
pub const FLESPI_TOKEN: &str = env!(
    "FLESPI_TOKEN",
    "set FLESPI_TOKEN to a flespi token with MQTT rights (flespi panel, Tokens)"
);

/// When the firmware was built, seconds since the Unix epoch
/// (`SOURCE_DATE_EPOCH`, or the time of the build; see build.rs): the
/// current time is at least this, so CA mode never validates certificates
/// at an earlier time (`TlsOptions::with_minimum_time`).
pub const BUILD_TIME: u64 = parse_unix_time(env!("FIRMWARE_BUILD_TIME"));

/// Where boards with embassy-net ask the time (SNTP, RFC 4330).
pub const SNTP_SERVER: &str = match option_env!("SNTP_SERVER") {
    Some(server) if !server.is_empty() => server,
    _ => "pool.ntp.org",
};

/// The MQTT client id, if set; otherwise the firmware derives one from the
/// MAC address (two devices with one id disconnect each other on flespi).
pub const MQTT_CLIENT_ID: Option<&str> = option_env!("MQTT_CLIENT_ID");

/// The topic prefix, if set; otherwise `devices/<client id>`.
pub const MQTT_TOPIC_PREFIX: Option<&str> = option_env!("MQTT_TOPIC_PREFIX");

/// Seconds between two readings.
pub const PUBLISH_INTERVAL_SECS: u32 = match option_env!("PUBLISH_INTERVAL_SECS") {
    Some(text) => parse_interval(text),
    None => 30,
};

/// `FLESPI_PIN_SHA256`: a pin on the SHA-256 of the broker's certificate.
pub const CERTIFICATE_PIN: Option<Pin> = match option_env!("FLESPI_PIN_SHA256") {
    Some(text) if !text.is_empty() => Some(Pin::Certificate(Fingerprint::Sha256(
        parse_certificate_pin(text),
    ))),
    _ => None,
};

/// `FLESPI_PIN_SPKI_SHA256`: a pin on the SHA-256 of the broker's public key.
pub const PUBLIC_KEY_PIN: Option<Pin> = match option_env!("FLESPI_PIN_SPKI_SHA256") {
    Some(text) if !text.is_empty() => Some(Pin::PublicKey(parse_public_key_pin(text))),
    _ => None,
};

const _: () = {
    assert!(
        !WIFI_SSID.is_empty() && WIFI_SSID.len() <= 32,
        "WIFI_SSID must be 1 to 32 bytes long"
    );
    assert!(
        WIFI_PASSWORD.is_empty() || (WIFI_PASSWORD.len() >= 8 && WIFI_PASSWORD.len() <= 64),
        "WIFI_PASSWORD must be empty (open network) or 8 to 64 bytes long"
    );
    assert!(!FLESPI_TOKEN.is_empty(), "FLESPI_TOKEN is empty");
    if let Some(id) = MQTT_CLIENT_ID {
        assert!(
            !id.is_empty() && id.len() <= CLIENT_ID_LEN,
            "MQTT_CLIENT_ID must be 1 to 64 bytes long (or unset)"
        );
    }
    if let Some(prefix) = MQTT_TOPIC_PREFIX {
        assert!(
            !prefix.is_empty() && prefix.len() <= 96,
            "MQTT_TOPIC_PREFIX must be 1 to 96 bytes long (or unset)"
        );
    }
};

/// A decimal number of at most `max_digits` digits, or `None` (const, so
/// a setting is checked when the firmware is compiled).
const fn parse_decimal(text: &str, max_digits: usize) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > max_digits {
        return None;
    }
    let mut value = 0u64;
    let mut i = 0;
    while i < bytes.len() {
        let digit = bytes[i];
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value * 10 + (digit - b'0') as u64;
        i += 1;
    }
    Some(value)
}

/// `PUBLISH_INTERVAL_SECS` as a number, checked at compile time.
const fn parse_interval(text: &str) -> u32 {
    match parse_decimal(text, 5) {
        Some(value) if value >= 1 && value <= 86_400 => value as u32,
        _ => panic!("PUBLISH_INTERVAL_SECS must be a number of seconds from 1 to 86400"),
    }
}

/// `FIRMWARE_BUILD_TIME` (decimal seconds, set by build.rs) as a number.
const fn parse_unix_time(text: &str) -> u64 {
    match parse_decimal(text, 19) {
        Some(value) => value,
        None => panic!("FIRMWARE_BUILD_TIME must be a number of seconds"),
    }
}

/// Parses a SHA-256 fingerprint with mqtts's const parser (colons, spaces,
/// plain hex, the `openssl` line...) and stops the build with a message
/// naming `$variable` when it is not one. Const evaluation cannot format
/// values, hence one literal message per kind of mistake.
macro_rules! sha256_setting {
    ($text:expr, $variable:literal) => {
        match Fingerprint::parse_sha256($text) {
            Ok(bytes) => bytes,
            Err(FingerprintError::Empty) => {
                panic!(concat!($variable, " holds no hex digits"))
            }
            Err(FingerprintError::InvalidCharacter { .. }) => panic!(concat!(
                $variable,
                " has a character that is neither a hex digit nor a separator (use AB:CD:... or plain hex)"
            )),
            Err(FingerprintError::IncompleteByte { .. }) => panic!(concat!(
                $variable,
                " has a byte with one hex digit (each byte is two digits, 0B not B)"
            )),
            Err(FingerprintError::ExpectedSha256 { found: 20 }) => panic!(concat!(
                $variable,
                " is a 20-byte SHA-1 fingerprint; give the 32-byte SHA-256 one"
            )),
            Err(_) => panic!(concat!(
                $variable,
                " is not 32 bytes long (a SHA-256 fingerprint is 32 hex bytes)"
            )),
        }
    };
}

/// `FLESPI_PIN_SHA256`, checked at compile time.
const fn parse_certificate_pin(text: &str) -> [u8; 32] {
    sha256_setting!(text, "FLESPI_PIN_SHA256")
}

/// `FLESPI_PIN_SPKI_SHA256`, checked at compile time.
const fn parse_public_key_pin(text: &str) -> [u8; 32] {
    sha256_setting!(text, "FLESPI_PIN_SPKI_SHA256")
}

/// MQTT keep-alive: a PINGREQ after a minute of silence, a dead broker
/// noticed after 90 s (or at once when the network is lost, see `app`).
pub const KEEP_ALIVE_SECS: u16 = 60;

/// The longest client id (flespi accepts more; 64 keeps the buffers small).
const CLIENT_ID_LEN: usize = 64;
/// The longest topic prefix: `devices/` and a client id.
const TOPIC_PREFIX_LEN: usize = 8 + CLIENT_ID_LEN;

/// Room for the client id and topic prefix the firmware derives when
/// `MQTT_CLIENT_ID` / `MQTT_TOPIC_PREFIX` are unset, and for the pins.
#[derive(Debug, Default)]
pub struct Names {
    client_id: String<CLIENT_ID_LEN>,
    topic_prefix: String<TOPIC_PREFIX_LEN>,
    pins: Vec<Pin, 2>,
}

impl Names {
    /// Empty names.
    pub const fn new() -> Self {
        Self {
            client_id: String::new(),
            topic_prefix: String::new(),
            pins: Vec::new(),
        }
    }
}

/// The application's settings: the configured client id and prefix, or
/// `<chip>-<MAC in hex>` and `devices/<client id>`; trust from
/// `FLESPI_PIN_SHA256` / `FLESPI_PIN_SPKI_SHA256`, or flespi's GlobalSign
/// roots when neither is set.
///
/// `chip` names the board family (`esp32c3`, `esp32`): at most 32 bytes,
/// so that the derived id fits (a longer one is cut at 32 bytes).
pub fn settings<'a>(names: &'a mut Names, chip: &str, mac: [u8; 6]) -> Settings<'a> {
    let Names {
        client_id,
        topic_prefix,
        pins,
    } = names;
    let client_id: &str = match MQTT_CLIENT_ID {
        Some(id) => id,
        None => {
            client_id.clear();
            let chip = chip.get(..32).unwrap_or(chip);
            // Fits: 32 + 1 + 12 bytes in 64.
            let _ = write!(client_id, "{chip}-");
            for byte in mac {
                let _ = write!(client_id, "{byte:02x}");
            }
            client_id.as_str()
        }
    };
    let topic_prefix: &str = match MQTT_TOPIC_PREFIX {
        Some(prefix) => prefix,
        None => {
            topic_prefix.clear();
            // Fits: 8 + at most 64 bytes.
            let _ = write!(topic_prefix, "devices/{client_id}");
            topic_prefix.as_str()
        }
    };
    pins.clear();
    // Both fit: two pins in room for two.
    for pin in [CERTIFICATE_PIN, PUBLIC_KEY_PIN].into_iter().flatten() {
        let _ = pins.push(pin);
    }
    let trust = if pins.is_empty() {
        BrokerTrust::Roots(mqtts::flespi::ROOTS)
    } else {
        BrokerTrust::Pins(pins)
    };
    Settings {
        client_id,
        token: FLESPI_TOKEN,
        topic_prefix,
        publish_interval: Duration::from_secs(u64::from(PUBLISH_INTERVAL_SECS)),
        limits: mqtts::flespi::LIMITS,
        keep_alive_secs: KEEP_ALIVE_SECS,
        trust,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256_HEX: &str = "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD";

    #[test]
    fn pins_parse_the_forms_people_paste() {
        let expected = Fingerprint::sha256_of(b"abc");
        assert_eq!(
            Fingerprint::Sha256(parse_certificate_pin(SHA256_HEX)),
            expected
        );
        let openssl =
            "sha256 Fingerprint=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(Fingerprint::Sha256(parse_public_key_pin(openssl)), expected);
    }

    #[test]
    #[should_panic(expected = "FLESPI_PIN_SHA256 is a 20-byte SHA-1 fingerprint")]
    fn a_sha1_certificate_pin_names_the_variable() {
        parse_certificate_pin("A9:99:3E:36:47:06:81:6A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9D");
    }

    #[test]
    #[should_panic(expected = "FLESPI_PIN_SPKI_SHA256 has a character that is neither")]
    fn a_typo_in_the_key_pin_names_the_variable() {
        parse_public_key_pin(&SHA256_HEX.replace('F', "G"));
    }

    #[test]
    #[should_panic(expected = "FLESPI_PIN_SHA256 has a byte with one hex digit")]
    fn a_lone_digit_names_the_variable() {
        parse_certificate_pin("BA:7:16");
    }

    #[test]
    #[should_panic(expected = "FLESPI_PIN_SHA256 is not 32 bytes long")]
    fn a_short_pin_names_the_variable() {
        parse_certificate_pin("BA:78:16");
    }

    #[test]
    #[should_panic(expected = "PUBLISH_INTERVAL_SECS must be a number of seconds from 1 to 86400")]
    fn an_interval_of_zero_is_refused() {
        parse_interval("0");
    }

    #[test]
    fn build_times() {
        assert_eq!(parse_unix_time("1796601600"), 1_796_601_600);
        assert_eq!(parse_unix_time("0"), 0);
        // build.rs passes the time of the build (or SOURCE_DATE_EPOCH): not
        // before mqtts's own floor, and not in the future.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        assert!(BUILD_TIME <= now, "{BUILD_TIME} > {now}");
    }

    #[test]
    #[should_panic(expected = "FIRMWARE_BUILD_TIME must be a number of seconds")]
    fn a_build_time_that_is_not_a_number_is_refused() {
        parse_unix_time("2026-12-07");
    }

    #[test]
    fn intervals_in_range() {
        assert_eq!([parse_interval("1"), parse_interval("86400")], [1, 86_400]);
    }

    #[test]
    fn derived_names() {
        let mut names = Names::new();
        let settings = settings(&mut names, "esp32c3", [0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0x0f]);
        // The host tests are built without MQTT_CLIENT_ID / MQTT_TOPIC_PREFIX.
        assert_eq!(MQTT_CLIENT_ID, None);
        assert_eq!(settings.client_id, "esp32c3-a0b1c2d3e40f");
        assert_eq!(settings.topic_prefix, "devices/esp32c3-a0b1c2d3e40f");
        // Built without pins: CA mode with flespi's GlobalSign roots.
        assert!(matches!(
            settings.trust,
            BrokerTrust::Roots(roots) if roots == mqtts::flespi::ROOTS
        ));
        let long_chip = "c".repeat(40);
        let settings = super::settings(&mut names, &long_chip, [0; 6]);
        assert_eq!(settings.client_id.len(), 32 + 1 + 12);
    }
}
