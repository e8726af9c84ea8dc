//! ESP32 (Xtensa) firmware: Wi-Fi station, DHCP, then the shared mqtts
//! application (flespi.io over TLS 1.3, see `../app`).
//!
//! Build settings come from the environment (see `../app/src/config.rs`
//! and the README). This file is the chip glue: clocks, heap, scheduler,
//! the RTC watchdog, Wi-Fi, the network stack, the TRNG and the LED pin. A
//! panic prints its backtrace and resets the chip (esp-backtrace's
//! `custom-halt`, see `mqtts_board_app::esp`). It differs from the
//! ESP32-C3 project's only where the chip does: the heap regions, the LED
//! pin, and no temperature reading (esp-hal has no driver for the ESP32's
//! internal sensor, which Espressif documents as unsuitable anyway).
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
use esp_radio::wifi::{ControllerConfig, Interface, WifiController};
use static_cell::ConstStaticCell;

use mqtts_board_app::config::{self, Names};
use mqtts_board_app::esp::{self, Watchdog};
use mqtts_board_app::net::TcpState;
use mqtts_board_app::{Board, HeapUse, Memory, wifi};

esp_bootloader_esp_idf::esp_app_desc!();

/// The on-board LED of the common ESP32 DevKit boards (DOIT DevKit V1 and
/// clones) is on GPIO2, lit when high. Espressif's DevKitC has no user LED:
/// wire one (with a resistor) or a relay to GPIO2, or change the pin below.
const LED_ACTIVE_LOW: bool = false;

/// The client id is `esp32-<MAC>` unless MQTT_CLIENT_ID is set.
const CHIP: &str = "esp32";

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
    // while a handshake verifies signatures. On the ESP32 the RAM the ROM
    // bootloader used (dram2, 98,768 bytes) is the largest reclaimable part.
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 98_768);
    esp_alloc::heap_allocator!(size: 32 * 1024);

    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);

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
        peripherals.GPIO2,
        if LED_ACTIVE_LOW {
            Level::High
        } else {
            Level::Low
        },
        OutputConfig::default(),
    );
    let mut board = Esp32Board {
        led,
        on: false,
        watchdog,
    };

    let mut names = Names::new();
    let settings = config::settings(&mut names, CHIP, mac);
    // TCP to the broker, and the date for the certificate checks by SNTP.
    let (tcp, memory) = (TCP.take(), MEMORY.take());
    mqtts_board_app::net::run(stack, tcp, memory, &mut rng, &mut board, settings).await
}

struct Esp32Board {
    led: Output<'static>,
    on: bool,
    watchdog: Watchdog,
}

impl Board for Esp32Board {
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
        None
    }

    fn feed_watchdog(&mut self) {
        self.watchdog.feed();
    }

    fn heap_use(&self) -> Option<HeapUse> {
        Some(esp::heap_use())
    }
}
