//! Linker script and rebuild triggers for the ESP32-C3 firmware.

/// The build-time settings read with `env!`/`option_env!` (src/config.rs).
const SETTINGS: &[&str] = &[
    "WIFI_SSID",
    "WIFI_PASSWORD",
    "FLESPI_TOKEN",
    "MQTT_CLIENT_ID",
    "MQTT_TOPIC_PREFIX",
    "PUBLISH_INTERVAL_SECS",
];

fn main() {
    // esp-hal's linker script, which pulls in the memory map, the
    // bootloader's app descriptor and esp-radio's sections.
    println!("cargo:rustc-link-arg-bins=-Tlinkall.x");
    // rustc already tracks `env!`; this makes a change of any setting
    // rebuild even where only `option_env!` saw it unset.
    for name in SETTINGS {
        println!("cargo:rerun-if-env-changed={name}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
