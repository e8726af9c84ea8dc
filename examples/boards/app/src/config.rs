//! Settings taken from the environment when the firmware is compiled.
//!
//! | variable | required | default |
//! |---|---|---|
//! | `WIFI_SSID` | yes | |
//! | `WIFI_PASSWORD` | yes (empty for an open network) | |
//! | `FLESPI_TOKEN` | yes | |
//! | `MQTT_CLIENT_ID` | no | `esp32c3-` and the station MAC address |
//! | `MQTT_TOPIC_PREFIX` | no | `devices/<client id>` |
//! | `PUBLISH_INTERVAL_SECS` | no | `30` |
//!
//! A missing required variable, an SSID longer than 32 bytes, a password of
//! 1 to 7 or more than 64 bytes, or an interval that is not a number from 1
//! to 86400 stops the build with a message naming the variable.

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
            !id.is_empty() && id.len() <= 64,
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

/// `PUBLISH_INTERVAL_SECS` as a number, checked at compile time.
const fn parse_interval(text: &str) -> u32 {
    let bytes = text.as_bytes();
    assert!(
        !bytes.is_empty() && bytes.len() <= 5,
        "PUBLISH_INTERVAL_SECS must be a number of seconds from 1 to 86400"
    );
    let mut value = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        let digit = bytes[i];
        assert!(
            digit.is_ascii_digit(),
            "PUBLISH_INTERVAL_SECS must be a number of seconds from 1 to 86400"
        );
        value = value * 10 + (digit - b'0') as u32;
        i += 1;
    }
    assert!(
        value >= 1 && value <= 86_400,
        "PUBLISH_INTERVAL_SECS must be a number of seconds from 1 to 86400"
    );
    value
}
