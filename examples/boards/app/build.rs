//! Rebuild triggers for the build-time settings (src/config.rs), and the
//! firmware's build time: CA mode's floor for the current time
//! (`config::BUILD_TIME`).

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
    "SNTP_SERVER",
];

fn main() {
    // rustc tracks `env!`; this makes a change of any setting rebuild even
    // where only `option_env!` saw it unset.
    for name in SETTINGS {
        println!("cargo:rerun-if-env-changed={name}");
    }
    println!("cargo:rerun-if-changed=build.rs");

    // The build time, seconds since the Unix epoch: `SOURCE_DATE_EPOCH`
    // when set (reproducible builds, https://reproducible-builds.org/specs/source-date-epoch/),
    // otherwise the time this script runs. Cargo reruns it only when a
    // trigger above changes, so the value can be older than the build,
    // never newer: a floor for "now" must not be in the future.
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let build_time = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("SOURCE_DATE_EPOCH={text:?} is not a number of seconds")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the system clock is after 1970")
            .as_secs(),
    };
    println!("cargo:rustc-env=FIRMWARE_BUILD_TIME={build_time}");
}
