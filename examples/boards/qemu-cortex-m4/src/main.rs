//! The shared mqtts application (`../app`) on an emulated Cortex-M4F:
//! thumbv7em-none-eabihf firmware for `qemu-system-arm -M mps2-an386`,
//! reaching the broker through an ESP8266 running Espressif's AT firmware
//! on UART0, as the ESP8266-AT board does; only the platform differs.
//!
//! This file is the machine's glue: the stacks and their MPU guard
//! ([`guard`]), the heap, the command line (semihosting,
//! `mqtts_board_app::emulated`), SysTick and a CMSDK timer for embassy-time
//! ([`time_driver`]), the CMSDK UART0 with its NVIC interrupt ([`uart`]),
//! then `mqtts_board_app::run` with an `AtConnector` on the executor
//! embassy-executor runs on Cortex-M (WFE when idle).
//!
//! TEST-ONLY: the RNG is ChaCha20 seeded from the command line (`seed=`);
//! `mps2-an386` has no entropy source. Never do this on a device.
#![no_std]
#![no_main]

mod guard;
mod time_driver;
mod uart;

use core::mem::MaybeUninit;

use cortex_m_rt::{entry, exception};
use embassy_executor::Executor;
use log::{LevelFilter, info};
use mqtts::esp_at::{AtConnector, AtModem, Timeouts, Wifi};
use mqtts::time::EmbassyTimer;
use mqtts_board_app::emulated::{
    self, Args, CA_MAX, Defaults, EmulatedBoard, HostClock, Names, PeakHeap, RamLayout, Trust,
};
use mqtts_board_app::{BROKER_HOST, Memory, Unwatched};
use static_cell::{ConstStaticCell, StaticCell};

use crate::uart::Uart;

/// What the command line does not set.
const DEFAULTS: Defaults = Defaults {
    client_id: "cortex-m4-mps2",
};

/// The rate the ESP8266-AT board runs its modem at; the driver asks the
/// modem for RTS/CTS at it (`AT+UART_CUR`), as there. QEMU's UART sends
/// to its socket at any rate; the socket backpressures instead.
const MODEM_BAUD: u32 = 115_200;

/// Received TCP data the driver holds, as on the ESP8266-AT board.
const MODEM_BUFFER: usize = 2048;

/// The heap: RSA in CA mode (flespi's GlobalSign chain), as the ESP boards
/// give it.
const HEAP_SIZE: usize = 48 * 1024;

#[global_allocator]
static HEAP: PeakHeap = PeakHeap::empty();
static HEAP_MEMORY: ConstStaticCell<[MaybeUninit<u8>; HEAP_SIZE]> =
    ConstStaticCell::new([MaybeUninit::uninit(); HEAP_SIZE]);
static MEMORY: ConstStaticCell<Memory> = ConstStaticCell::new(Memory::new());
static CMDLINE: ConstStaticCell<[u8; emulated::CMDLINE_MAX]> =
    ConstStaticCell::new([0; emulated::CMDLINE_MAX]);
static CA_ROOT: ConstStaticCell<[u8; CA_MAX]> = ConstStaticCell::new([0; CA_MAX]);
static NAMES: ConstStaticCell<Names> = ConstStaticCell::new(Names::new());
static EXECUTOR: StaticCell<Executor> = StaticCell::new();
static HOST_CLOCK: HostClock = HostClock;

unsafe extern "C" {
    static _app_stack_bottom: u8;
    static _app_stack_top: u8;
    static _ram_total: u8;
    // cortex-m-rt's: the start of .data, the end of .bss and .uninit.
    static _ram_start: u8;
    static __euninit: u8;
}

fn symbol(s: &u8) -> usize {
    core::ptr::from_ref(s) as usize
}

/// Where the RAM goes (memory.x and cortex-m-rt's link.x). The handler
/// stack counts with the statics' region: it is RAM the application cannot
/// use.
fn ram_layout() -> RamLayout {
    // SAFETY: linker symbols: only their addresses are used.
    unsafe {
        RamLayout {
            total: symbol(&_ram_total),
            statics: symbol(&__euninit) - symbol(&_ram_start),
            heap: HEAP_SIZE,
            stack: symbol(&_app_stack_top) - symbol(&_app_stack_bottom),
        }
    }
}

/// Reset enters here on the handler stack (MSP), interrupts masked by
/// nothing yet enabled: paints the application's stack, turns the MPU
/// guard on, and continues in [`boot`] on the application's stack (PSP).
#[entry]
fn main() -> ! {
    cortex_m::interrupt::disable();
    // SAFETY: nothing uses the application's stack yet (memory.x's bounds).
    unsafe {
        emulated::paint_stack(
            core::ptr::addr_of!(_app_stack_bottom) as usize,
            core::ptr::addr_of!(_app_stack_top) as usize,
        )
    };
    guard::enable();
    guard::run_on_application_stack(boot)
}

/// The rest of the boot, on the application's stack.
extern "C" fn boot() -> ! {
    emulated::init_logger(LevelFilter::Info);
    info!("mqtts board app on qemu-system-arm -M mps2-an386 (Cortex-M4F, thumbv7em-none-eabihf)");

    let args = match emulated::read_cmdline(CMDLINE.take())
        .and_then(|line| emulated::parse_args(line, DEFAULTS))
    {
        Ok(args) => args,
        Err(e) => emulated::fatal(format_args!("command line: {e}")),
    };
    let ca_root = match args.trust {
        Trust::Ca(path) => match emulated::read_host_file(path, CA_ROOT.take()) {
            Ok(der) => {
                info!("trust: root certificate {path} ({} bytes)", der.len());
                Some(&*der)
            }
            Err(e) => emulated::fatal(format_args!("trust=ca:{path}: {e}")),
        },
        _ => None,
    };

    HEAP.init(HEAP_MEMORY.take());
    let board = EmulatedBoard::new(&HEAP, ram_layout());
    time_driver::init();
    let uart = Uart::init();
    // SAFETY: every handler and the state it uses is set up.
    unsafe { cortex_m::interrupt::enable() };
    emulated::start_watchdog();
    if let Some(test) = args.self_test {
        emulated::run_self_test(test);
    }

    let executor = EXECUTOR.init(Executor::new());
    executor.run(|spawner| match app(args, ca_root, uart, board) {
        Ok(task) => spawner.spawn(task),
        Err(e) => emulated::fatal(format_args!("spawning the application: {e:?}")),
    })
}

#[embassy_executor::task]
async fn app(
    args: Args<'static>,
    ca_root: Option<&'static [u8]>,
    uart: Uart,
    mut board: EmulatedBoard,
) -> ! {
    info!(
        "TEST-ONLY RNG: ChaCha20 seeded from the command line (seed={:016x}); never on a device",
        args.seed
    );
    let mut rng = emulated::test_only_rng(args.seed);
    let modem: AtModem<_, _, MODEM_BUFFER> =
        AtModem::new(uart, EmbassyTimer, Timeouts::default()).with_flow_control(MODEM_BAUD);
    let wifi = Wifi {
        ssid: args.ssid,
        password: args.password,
    };
    // No EN pin on this machine: a modem that stops answering gets AT+RST.
    let connector = AtConnector::new(modem, wifi, BROKER_HOST, args.port);
    info!(
        "modem on UART0; the broker is {BROKER_HOST}:{} through it",
        args.port
    );
    let settings = emulated::settings(NAMES.take(), &args, ca_root);
    mqtts_board_app::run(
        connector,
        // The modem reports a lost network as a closed connection.
        Unwatched,
        // The host's date (semihosting SYS_TIME) for CA mode's certificate
        // dates; pins ignore it.
        Some(&HOST_CLOCK),
        MEMORY.take(),
        &mut rng,
        &mut board,
        settings,
    )
    .await
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    emulated::on_panic(info)
}

/// The device interrupts (cortex-m-rt without a device crate sends them
/// all here, with their number): UART0's receive and TIMER0's alarm.
/// Anything else was enabled by nothing here.
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    match irqn {
        uart::RX_IRQ => uart::on_receive_interrupt(),
        time_driver::ALARM_IRQ => time_driver::on_alarm_interrupt(),
        _ => emulated::fatal(format_args!("unexpected exception or interrupt {irqn}")),
    }
}

/// The clock's wrap, every [`emulated::CHECK_EVERY`]: also the board's
/// checks (stack guard, watchdog).
#[exception]
fn SysTick() {
    time_driver::on_systick();
    guard::check_application_stack_pointer();
    emulated::check();
}
