//! esp-radio glue shared by the ESP chips with native Wi-Fi (feature
//! `esp-radio`; the board project enables esp-radio's chip feature): the
//! station configuration from the build-time settings, the task that keeps
//! the station associated, and the task that runs embassy-net.

use embassy_net::Runner;
use embassy_time::{Duration, Timer};
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{AuthenticationMethodConfig, Config, Interface, WifiController};
use log::{error, info, warn};

use crate::config;

/// A WPA2-personal (or open, with an empty password) station for
/// `WIFI_SSID`; both lengths are checked when the firmware is compiled.
pub fn station_config() -> Config {
    let station = StationConfig::default()
        .with_ssid(
            config::WIFI_SSID
                .try_into()
                .expect("SSID length checked at compile time"),
        )
        .with_authentication(if config::WIFI_PASSWORD.is_empty() {
            AuthenticationMethodConfig::Open
        } else {
            AuthenticationMethodConfig::Wpa2Personal(
                config::WIFI_PASSWORD
                    .try_into()
                    .expect("password length checked at compile time"),
            )
        });
    Config::Station(station)
}

/// Keeps the station associated: reconnects after a drop, with a growing
/// pause (5 s to 60 s) after failed attempts.
#[embassy_executor::task]
pub async fn wifi_task(mut controller: WifiController<'static>) {
    let mut pause_s = 5;
    loop {
        info!("Wi-Fi: connecting to {}", config::WIFI_SSID);
        match controller.connect_async().await {
            Ok(connected) => {
                info!("Wi-Fi: connected (channel {})", connected.channel);
                pause_s = 5;
                match controller.wait_for_disconnect_async().await {
                    Ok(info) => warn!("Wi-Fi: disconnected: {:?}", info.reason),
                    Err(e) => warn!("Wi-Fi: {e:?}"),
                }
            }
            Err(e) => {
                error!("Wi-Fi: connection failed: {e:?}; retrying in {pause_s} s");
                Timer::after(Duration::from_secs(pause_s)).await;
                pause_s = (pause_s * 2).min(60);
            }
        }
    }
}

/// Runs embassy-net over the Wi-Fi interface.
#[embassy_executor::task]
pub async fn net_task(mut runner: Runner<'static, Interface>) -> ! {
    runner.run().await
}
