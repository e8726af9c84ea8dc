//! What the emulated boards (QEMU, feature `emulated`) share beside the
//! application: the run-time settings from the semihosting command line,
//! the console, the exit codes, a date from the host, a TEST-ONLY seeded
//! RNG, a heap that counts its peak, the stack's paint and guard, and a
//! software watchdog; [`EmulatedBoard`] puts them behind [`Board`](crate::app::Board).
//!
//! Nothing here names a machine: ARM and RISC-V semihosting are the same
//! calls (the `semihosting` crate issues the right trap), and the board
//! crate brings the timer, the UART to the modem, the interrupt controller,
//! the linker script, the stack's bounds and its hardware guard
//! (`examples/boards/qemu-riscv32`, `examples/boards/qemu-cortex-m4`).
//!
//! One file per concern: the calls to the host (semihosting), the console
//! and exit, the command line and the settings made from it, a host file
//! (the CA root), the host's clock, the TEST-ONLY RNG, the heap, the
//! stack, the watchdog and periodic checks, the self-tests, the board.
//!
//! # The command line (SYS_GET_CMDLINE)
//!
//! Words `key=value`, separated by spaces (QEMU joins its
//! `-semihosting-config arg=` values with spaces):
//!
//! | word | meaning | default |
//! |---|---|---|
//! | `trust=spki:<64 hex>` | pin the broker's public key (SHA-256) | |
//! | `trust=cert:<64 hex>` | pin the broker's certificate (SHA-256) | |
//! | `trust=ca:<host path>` | CA mode with this DER root (at most [`CA_MAX`] bytes), dates from the host's clock | |
//! | `trust=flespi` | CA mode with flespi's GlobalSign roots | this |
//! | `port=<u16>` | the TCP port the AT modem dials | 8883 |
//! | `client=<id>` | MQTT client id | the board's [`Defaults`] (`riscv32-virt`, `cortex-m4-mps2`) |
//! | `prefix=<topic prefix>` | topics under it | `devices/<client id>` |
//! | `interval=<seconds>` | time between readings, 1 to 86400 | 30 |
//! | `keepalive=<seconds>` | MQTT keep-alive, 1 to 65535 | 60 |
//! | `seed=<16 hex digits>` | the TEST-ONLY RNG's seed | required |
//! | `ssid=<name>`, `password=<text>` | Wi-Fi sent to the modem | `test-net`, `test-password` |
//! | `selftest=stack-overflow\|watchdog\|panic` | provoke that failure at boot, to see the board catch it ([`SelfTest`]) | none |
//!
//! A word that is not one of these, a repeated key, a bad value or a
//! missing seed stops the firmware: [`fatal`] prints the reason and exits
//! with failure, before anything dials.

mod board;
mod clock;
mod cmdline;
mod console;
mod heap;
// Semihosting on the bare-metal targets; on the host (the app's tests),
// stubs that answer nothing.
#[cfg(target_os = "none")]
mod host;
#[cfg(not(target_os = "none"))]
#[path = "host_stub.rs"]
mod host;
mod host_file;
mod rng;
mod selftest;
mod settings;
mod stack;
mod watchdog;

#[cfg(test)]
mod tests;

pub use board::{EmulatedBoard, RamLayout};
pub use clock::HostClock;
pub use cmdline::{ArgError, Args, CMDLINE_MAX, Defaults, Trust, parse_args, read_cmdline};
pub use console::{Console, exit, fatal, init_logger, on_panic, print_line};
pub use heap::PeakHeap;
pub use host_file::{CA_MAX, FileError, read_host_file};
pub use rng::test_only_rng;
pub use selftest::{SelfTest, run_self_test};
pub use settings::{Names, settings};
pub use stack::{GUARD_WORDS, StackUse, paint_stack, stack_guard_intact, stack_use};
pub use watchdog::{CHECK_EVERY, check, feed_watchdog, start_watchdog};
