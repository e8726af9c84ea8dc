//! Rebuild triggers for the build-time settings (src/config.rs).

/// Every setting read with `env!`/`option_env!`.
const SETTINGS: &[&str] = &[
    "WIFI_SSID",
    "WIFI_PASSWORD",
    "FLESPI_TOKEN",
    "FLESPI_PIN_SHA256",
    "FLESPI_PIN_SPKI_SHA256",
    "MQTT_CLIENT_ID",
    "MQTT_TOPIC_PREFIX",
    "PUBLISH_INTERVAL_SECS",
];

fn main() {
    // rustc tracks `env!`; this makes a change of any setting rebuild even
    // where only `option_env!` saw it unset.
    for name in SETTINGS {
        println!("cargo:rerun-if-env-changed={name}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
