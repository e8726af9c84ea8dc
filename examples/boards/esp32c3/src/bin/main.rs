//! ESP32-C3 firmware: Wi-Fi station, DHCP, then the mqtts application
//! (flespi.io over TLS 1.3, see `src/app.rs`).
//!
//! Build settings come from the environment (see `src/config.rs` and the
//! README). This file is the chip glue: clocks, heap, scheduler, Wi-Fi,
//! the network stack, the TRNG, the LED pin and the temperature sensor.
#![no_std]
#![no_main]

use core::fmt::Write as _;

use embassy_executor::Spawner;
use embassy_net::{Runner, StackResources};
use embassy_time::{Duration, Timer};
use esp_alloc as _;
use esp_backtrace as _;
use esp_hal::clock::CpuClock;
use esp_hal::gpio::{Level, Output, OutputConfig};
use esp_hal::rng::Trng;
use esp_hal::timer::timg::TimerGroup;
use esp_hal::tsens::{self, TemperatureSensor};
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config, ControllerConfig, Interface, WifiController,
};
use log::{error, info, warn};
use static_cell::{ConstStaticCell, StaticCell};

use mqtts_esp32c3::app::{self, Board, Memory, Settings};
use mqtts_esp32c3::config;

esp_bootloader_esp_idf::esp_app_desc!();

/// The LED is on GPIO8 on most ESP32-C3 boards (SuperMini: blue LED, lit
/// when low; DevKitM-1: an addressable RGB LED, which a plain level does not
/// light: wire an LED or a relay to GPIO8, or change the pin below).
const LED_ACTIVE_LOW: bool = true;

/// Sockets: DHCP, DNS, the MQTT connection, one spare.
const SOCKETS: usize = 4;

static MEMORY: ConstStaticCell<Memory> = ConstStaticCell::new(Memory::new());
static STACK_RESOURCES: ConstStaticCell<StackResources<SOCKETS>> =
    ConstStaticCell::new(StackResources::new());
static CLIENT_ID: StaticCell<heapless::String<32>> = StaticCell::new();
static TOPIC_PREFIX: StaticCell<heapless::String<112>> = StaticCell::new();

#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    esp_println::logger::init_logger_from_env();
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));

    // Wi-Fi needs ~70 KB of heap; RSA (flespi's GlobalSign chain) a few KB
    // while a handshake verifies signatures.
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 48 * 1024);

    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);

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
    let interface = Interface::station();
    let mac = interface.mac_address();
    let controller = WifiController::new(
        peripherals.WIFI,
        ControllerConfig::default().with_initial_config(Config::Station(station)),
    )
    .expect("Wi-Fi driver failed to start");

    // Cryptographically secure from here on: the radio is an entropy source
    // as long as the controller lives (forever, in `wifi_task`).
    let mut rng = Trng::try_new().expect("TRNG needs Wi-Fi running");
    let seed = u64::from(rng.random()) << 32 | u64::from(rng.random());

    let (stack, runner) = embassy_net::new(
        interface,
        embassy_net::Config::dhcpv4(Default::default()),
        STACK_RESOURCES.take(),
        seed,
    );
    spawner.spawn(wifi_task(controller).expect("task pool"));
    spawner.spawn(net_task(runner).expect("task pool"));

    let client_id: &str = match config::MQTT_CLIENT_ID {
        Some(id) => id,
        None => {
            let id = CLIENT_ID.init(heapless::String::new());
            let _ = write!(id, "esp32c3-");
            for byte in mac {
                let _ = write!(id, "{byte:02x}");
            }
            id.as_str()
        }
    };
    let topic_prefix: &str = match config::MQTT_TOPIC_PREFIX {
        Some(prefix) => prefix,
        None => {
            let prefix = TOPIC_PREFIX.init(heapless::String::new());
            let _ = write!(prefix, "devices/{client_id}");
            prefix.as_str()
        }
    };

    let led = Output::new(
        peripherals.GPIO8,
        if LED_ACTIVE_LOW {
            Level::High
        } else {
            Level::Low
        },
        OutputConfig::default(),
    );
    let sensor = match TemperatureSensor::new(peripherals.TSENS, tsens::Config::default()) {
        Ok(sensor) => Some(sensor),
        Err(e) => {
            warn!("temperature sensor unavailable: {e:?}");
            None
        }
    };
    let mut board = C3Board {
        led,
        on: false,
        sensor,
    };

    let settings = Settings {
        client_id,
        token: config::FLESPI_TOKEN,
        topic_prefix,
        publish_interval: Duration::from_secs(u64::from(config::PUBLISH_INTERVAL_SECS)),
    };
    app::run(stack, MEMORY.take(), &mut rng, &mut board, settings).await
}

struct C3Board {
    led: Output<'static>,
    on: bool,
    sensor: Option<TemperatureSensor<'static>>,
}

impl Board for C3Board {
    fn set_output(&mut self, on: bool) {
        self.on = on;
        self.led.set_level(if on != LED_ACTIVE_LOW {
            Level::High
        } else {
            Level::Low
        });
    }

    fn output(&self) -> bool {
        self.on
    }

    fn temperature_c(&mut self) -> Option<f32> {
        self.sensor
            .as_ref()
            .map(|sensor| sensor.get_temperature().to_celsius())
    }
}

/// Keeps the station associated: reconnects after a drop, with a growing
/// pause (5 s to 60 s) after failed attempts.
#[embassy_executor::task]
async fn wifi_task(mut controller: WifiController<'static>) {
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

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Interface>) -> ! {
    runner.run().await
}
