//! ESP32-C3 firmware: Wi-Fi station, DHCP, then the shared mqtts
//! application (flespi.io over TLS 1.3, see `../app`).
//!
//! Build settings come from the environment (see `../app/src/config.rs`
//! and the README). This file is the chip glue: clocks, heap, scheduler,
//! the RTC watchdog, Wi-Fi, the network stack, the TRNG, the LED pin and
//! the temperature sensor. A panic prints its backtrace and resets the chip
//! (esp-backtrace's `custom-halt`, see `mqtts_board_app::esp`).
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_net::StackResources;
use esp_alloc as _;
use esp_backtrace as _;
use esp_hal::clock::CpuClock;
use esp_hal::gpio::{Level, Output, OutputConfig};
use esp_hal::rng::Trng;
use esp_hal::timer::timg::TimerGroup;
use esp_hal::tsens::{self, TemperatureSensor};
use esp_radio::wifi::{ControllerConfig, Interface, WifiController};
use log::warn;
use static_cell::ConstStaticCell;

use mqtts_board_app::config::{self, Names};
use mqtts_board_app::esp::{self, Watchdog};
use mqtts_board_app::net::TcpState;
use mqtts_board_app::{Board, HeapUse, Memory, wifi};

esp_bootloader_esp_idf::esp_app_desc!();

/// The LED is on GPIO8 on most ESP32-C3 boards (SuperMini: blue LED, lit
/// when low; DevKitM-1: an addressable RGB LED, which a plain level does not
/// light: wire an LED or a relay to GPIO8, or change the pin below).
const LED_ACTIVE_LOW: bool = true;

/// The client id is `esp32c3-<MAC>` unless MQTT_CLIENT_ID is set.
const CHIP: &str = "esp32c3";

/// Sockets: DHCP, DNS, the MQTT connection, SNTP.
const SOCKETS: usize = 4;

static MEMORY: ConstStaticCell<Memory> = ConstStaticCell::new(Memory::new());
static TCP: ConstStaticCell<TcpState> = ConstStaticCell::new(TcpState::new());
static STACK_RESOURCES: ConstStaticCell<StackResources<SOCKETS>> =
    ConstStaticCell::new(StackResources::new());

#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    esp_println::logger::init_logger_from_env();
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    esp::log_reset_reason();
    // esp_hal::init turned every watchdog off; from here on the
    // application's progress feeds this one.
    let watchdog = Watchdog::start(peripherals.RTC_TIMER);

    // Wi-Fi needs ~70 KB of heap; RSA (flespi's GlobalSign chain) a few KB
    // while a handshake verifies signatures.
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 48 * 1024);

    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);

    // Before Wi-Fi and the TRNG: the sensor's driver takes the first guard
    // on the SAR ADC and pulses its reset, which would clear any entropy
    // set-up made on the ADC before it (esp-hal 1.2 `tsens.rs`).
    let sensor = match TemperatureSensor::new(peripherals.TSENS, tsens::Config::default()) {
        Ok(sensor) => Some(sensor),
        Err(e) => {
            warn!("temperature sensor unavailable: {e:?}");
            None
        }
    };

    let interface = Interface::station();
    let mac = interface.mac_address();
    let controller = match WifiController::new(
        peripherals.WIFI,
        ControllerConfig::default().with_initial_config(wifi::station_config()),
    ) {
        Ok(controller) => controller,
        Err(e) => esp::restart_after("starting the Wi-Fi driver", e),
    };

    // Cryptographically secure from here on: the radio is an entropy source
    // as long as the controller lives (forever, in `wifi_task`).
    let mut rng = match Trng::try_new() {
        Ok(rng) => rng,
        Err(e) => esp::restart_after("the TRNG (it needs Wi-Fi running)", e),
    };
    let seed = u64::from(rng.random()) << 32 | u64::from(rng.random());

    let (stack, runner) = embassy_net::new(
        interface,
        embassy_net::Config::dhcpv4(Default::default()),
        STACK_RESOURCES.take(),
        seed,
    );
    spawner.spawn(wifi::wifi_task(controller).expect("task pool"));
    spawner.spawn(wifi::net_task(runner).expect("task pool"));

    let led = Output::new(
        peripherals.GPIO8,
        if LED_ACTIVE_LOW {
            Level::High
        } else {
            Level::Low
        },
        OutputConfig::default(),
    );
    let mut board = C3Board {
        led,
        on: false,
        sensor,
        watchdog,
    };

    let mut names = Names::new();
    let settings = config::settings(&mut names, CHIP, mac);
    // TCP to the broker, and the date for the certificate checks by SNTP.
    let (tcp, memory) = (TCP.take(), MEMORY.take());
    mqtts_board_app::net::run(stack, tcp, memory, &mut rng, &mut board, settings).await
}

struct C3Board {
    led: Output<'static>,
    on: bool,
    sensor: Option<TemperatureSensor<'static>>,
    watchdog: Watchdog,
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

    fn feed_watchdog(&mut self) {
        self.watchdog.feed();
    }

    fn heap_use(&self) -> Option<HeapUse> {
        Some(esp::heap_use())
    }
}
