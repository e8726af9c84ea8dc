//! ESP32-C3 firmware that reaches Wi-Fi through an ESP8266 running
//! Espressif's AT firmware (ESP-AT v2.2) on UART1, then runs the shared
//! mqtts application (flespi.io over TLS 1.3, see `../app`).
//!
//! TLS ends here, on the ESP32-C3: the ESP8266 only carries ciphertext, so
//! the broker's certificate is checked (CA or pins) on the whole path.
//!
//! Build settings come from the environment (see `../app/src/config.rs`
//! and the README). This file is the glue: clocks, heap, scheduler, the
//! RTC watchdog, the temperature sensor, the TRNG (fed by the SAR ADC: the
//! C3's radio stays off), the UART to the modem (with RTS/CTS) and its
//! enable pin, the LED pin. A panic prints its backtrace and resets the
//! chip (esp-backtrace's `custom-halt`, see `mqtts_board_app::esp`).
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_time::{Duration, Timer};
use esp_alloc as _;
use esp_backtrace as _;
use esp_hal::clock::CpuClock;
use esp_hal::gpio::{Level, Output, OutputConfig};
use esp_hal::rng::{Trng, TrngSource};
use esp_hal::timer::timg::TimerGroup;
use esp_hal::tsens::{self, TemperatureSensor};
use esp_hal::uart::{self, Uart};
use log::{info, warn};
use mqtts::esp_at::{AtConnector, AtModem, Timeouts, Wifi};
use mqtts::time::EmbassyTimer;
use static_cell::ConstStaticCell;

use mqtts_board_app::config::{self, Names};
use mqtts_board_app::esp::{self, Watchdog};
use mqtts_board_app::{BROKER_HOST, BROKER_PORT, Board, HeapUse, Memory, Unwatched};

esp_bootloader_esp_idf::esp_app_desc!();

/// The LED is on GPIO8 on most ESP32-C3 boards (SuperMini: blue LED, lit
/// when low).
const LED_ACTIVE_LOW: bool = true;

/// The client id is `esp8266at-<ESP32-C3 MAC>` unless MQTT_CLIENT_ID is set.
const CHIP: &str = "esp8266at";

/// ESP-AT's factory baud rate (8N1). Its ESP8266 build starts with RTS
/// only (it ignores its CTS input); the driver turns on both directions
/// with `AT+UART_CUR` at this same rate (`AtModem::with_flow_control`).
const MODEM_BAUD: u32 = 115_200;

/// Received TCP data the driver holds (it never asks the modem for more).
const MODEM_BUFFER: usize = 2048;

/// RTS asks the modem to pause once this many bytes wait in the UART's
/// 128-byte receive FIFO.
const RTS_THRESHOLD: u8 = 64;

static MEMORY: ConstStaticCell<Memory> = ConstStaticCell::new(Memory::new());

#[esp_rtos::main]
async fn main(_spawner: Spawner) -> ! {
    esp_println::logger::init_logger_from_env();
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    esp::log_reset_reason();
    // esp_hal::init turned every watchdog off; from here on the
    // application's progress feeds this one.
    let watchdog = Watchdog::start(peripherals.RTC_TIMER);

    // No Wi-Fi on this chip: the heap is for RSA (flespi's GlobalSign
    // chain), a few KB while a handshake verifies signatures.
    esp_alloc::heap_allocator!(size: 48 * 1024);

    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);

    // Before the entropy source: the sensor's driver takes the first guard
    // on the SAR ADC and pulses its reset, which would clear the ADC's
    // sampling set-up that `TrngSource` makes with raw register writes (no
    // guard): `Trng` would go on as a plain PRNG, with nothing showing.
    let sensor = match TemperatureSensor::new(peripherals.TSENS, tsens::Config::default()) {
        Ok(sensor) => Some(sensor),
        Err(e) => {
            warn!("temperature sensor unavailable: {e:?}");
            None
        }
    };

    // With the radio off, the SAR ADC is the TRNG's entropy source; it
    // stays enabled for as long as `main` runs (forever).
    let _entropy = TrngSource::new(peripherals.RNG, peripherals.ADC1);
    let mut rng = match Trng::try_new() {
        Ok(rng) => rng,
        Err(e) => esp::restart_after("the TRNG (the ADC entropy source)", e),
    };

    // The modem on UART1 (README: wiring), with RTS/CTS: the modem pauses
    // when our FIFO is half full (our RTS, its CTS, once `AT+UART_CUR` has
    // turned its CTS on), we pause when its buffer is (its RTS, our CTS).
    let uart_config = uart::Config::default()
        .with_baudrate(MODEM_BAUD)
        .with_hw_flow_ctrl(uart::HwFlowControl {
            cts: uart::CtsConfig::Enabled,
            rts: uart::RtsConfig::Enabled(RTS_THRESHOLD),
        });
    let uart = match Uart::new(peripherals.UART1, uart_config) {
        Ok(uart) => uart,
        Err(e) => esp::restart_after("configuring UART1", e),
    }
    .with_tx(peripherals.GPIO4)
    .with_rx(peripherals.GPIO5)
    .with_rts(peripherals.GPIO7)
    .with_cts(peripherals.GPIO10)
    .into_async();
    // A clean start: hold EN low, then let the ESP8266 boot (its ROM log at
    // 74,880 baud is noise at 115,200; the driver waits for it to end).
    // The connector pulses EN again when the modem stops answering.
    let mut modem_enable = Output::new(peripherals.GPIO6, Level::Low, OutputConfig::default());
    Timer::after(Duration::from_millis(100)).await;
    modem_enable.set_high();
    Timer::after(Duration::from_millis(500)).await;
    info!("ESP8266 enabled; {} baud on UART1", MODEM_BAUD);

    let modem: AtModem<_, _, MODEM_BUFFER> =
        AtModem::new(uart, EmbassyTimer, Timeouts::default()).with_flow_control(MODEM_BAUD);
    let wifi = Wifi {
        ssid: config::WIFI_SSID,
        password: config::WIFI_PASSWORD,
    };
    let connector = AtConnector::new(modem, wifi, BROKER_HOST, BROKER_PORT).with_enable_pin(
        move |enabled: bool| {
            modem_enable.set_level(if enabled { Level::High } else { Level::Low })
        },
    );

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

    let mac = esp_hal::efuse::base_mac_address();
    let mac: [u8; 6] = mac.as_bytes().try_into().unwrap_or([0; 6]);
    let mut names = Names::new();
    let settings = config::settings(&mut names, CHIP, mac);
    // No clock: ESP-AT's own SNTP client (AT+CIPSNTPCFG) is not reachable
    // through mqtts's esp_at driver, so CA mode validates without the date
    // (explicitly; a certificate that expired before this firmware was
    // built is still refused, see the README). Pins need no clock.
    mqtts_board_app::run(
        connector,
        // The modem reports a lost network as a closed connection.
        Unwatched,
        None,
        MEMORY.take(),
        &mut rng,
        &mut board,
        settings,
    )
    .await
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
