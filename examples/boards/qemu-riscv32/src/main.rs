//! The shared mqtts application (`../app`) on an emulated ESP32-C3 core:
//! riscv32imc firmware for `qemu-system-riscv32 -M virt`, reaching the
//! broker through an ESP8266 running Espressif's AT firmware on UART0, as
//! the ESP8266-AT board does; only the platform differs.
//!
//! This file is the machine's glue: the stack's guard and paint, the heap,
//! the command line (semihosting, `mqtts_board_app::emulated`), the CLINT
//! timer for embassy-time ([`time_driver`]), UART0 with its PLIC interrupt
//! ([`uart`]), then `mqtts_board_app::run` with an `AtConnector` on the
//! executor embassy-executor runs on RISC-V (WFI when idle).
//!
//! TEST-ONLY: the RNG is ChaCha20 seeded from the command line (`seed=`);
//! `virt` has no entropy source this firmware can reach. Never do this on a
//! device.
#![no_std]
#![no_main]

mod guard;
mod measure;
mod time_driver;
mod uart;

use core::mem::MaybeUninit;

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
    client_id: "riscv32-virt",
};

/// The rate the ESP8266-AT board runs its modem at; the driver asks the
/// modem for RTS/CTS at it (`AT+UART_CUR`), as there. QEMU's UART has no
/// rate: its socket backpressures instead.
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
static CMDLINE: ConstStaticCell<[u8; 1024]> = ConstStaticCell::new([0; 1024]);
static CA_ROOT: ConstStaticCell<[u8; CA_MAX]> = ConstStaticCell::new([0; CA_MAX]);
static NAMES: ConstStaticCell<Names> = ConstStaticCell::new(Names::new());
static EXECUTOR: StaticCell<Executor> = StaticCell::new();
static HOST_CLOCK: HostClock = HostClock;

unsafe extern "C" {
    static _stack_bottom: u8;
    static _stack_start: u8;
    static _ram_start: u8;
    static _ram_total: u8;
    // riscv-rt's: the end of .bss and .uninit.
    static __euninit: u8;
}

fn symbol(s: &u8) -> usize {
    core::ptr::from_ref(s) as usize
}

/// Where the RAM goes (memory.x and riscv-rt's link.x).
fn ram_layout() -> RamLayout {
    // SAFETY: linker symbols: only their addresses are used.
    unsafe {
        RamLayout {
            total: symbol(&_ram_total),
            statics: symbol(&__euninit) - symbol(&_ram_start),
            heap: HEAP_SIZE,
            stack: symbol(&_stack_start) - symbol(&_stack_bottom),
        }
    }
}

#[riscv_rt::entry]
fn main() -> ! {
    guard::lock();
    // SAFETY: the running stack, as memory.x lays it out; interrupts are off.
    unsafe {
        emulated::paint_stack(
            core::ptr::addr_of!(_stack_bottom) as usize,
            core::ptr::addr_of!(_stack_start) as usize,
        )
    };
    emulated::init_logger(LevelFilter::Info);
    info!("mqtts board app on qemu-system-riscv32 -M virt (riscv32imc, the ESP32-C3's ISA)");

    // `measure=` (src/measure.rs) is taken out before the application's words.
    let (measure, args) = match measure::split_cmdline(CMDLINE.take())
        .and_then(|(measure, line)| Ok((measure, emulated::parse_args(line, DEFAULTS)?)))
    {
        Ok(parsed) => parsed,
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
    unsafe { riscv::interrupt::enable() };
    emulated::start_watchdog();
    if let Some(test) = args.self_test {
        emulated::run_self_test(test);
    }
    if let Some(measure) = measure {
        measure::run(
            measure,
            measure::Board {
                args,
                ca_root,
                uart,
                heap: &HEAP,
                layout: ram_layout(),
                memory: MEMORY.take(),
            },
        );
    }

    run_application(args, ca_root, uart, board)
}

/// The application on embassy-executor. Out of line: the task's future
/// (19 KB) is built in this frame before it moves into its static, and
/// `main`'s frame stays small for the measurement mode.
#[inline(never)]
fn run_application(
    args: Args<'static>,
    ca_root: Option<&'static [u8]>,
    uart: Uart,
    board: EmulatedBoard,
) -> ! {
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

/// A fault (an illegal instruction, a misaligned or forbidden access):
/// `PANIC - ...` with the cause and where, then exit with failure.
#[unsafe(export_name = "ExceptionHandler")]
fn exception_handler(_frame: &riscv_rt::TrapFrame) -> ! {
    let cause = riscv::register::mcause::read();
    emulated::fatal(format_args!(
        "exception {} at pc {:#010x}, mtval {:#010x}",
        cause.code(),
        riscv::register::mepc::read(),
        riscv::register::mtval::read()
    ))
}

/// An interrupt nothing here enabled.
#[unsafe(export_name = "DefaultHandler")]
fn default_handler() {
    let cause = riscv::register::mcause::read();
    emulated::fatal(format_args!("unexpected interrupt {}", cause.code()))
}
