//! The software watchdog and the periodic checks the board's timer
//! interrupt runs.

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, Ordering};

use critical_section::Mutex;
use embassy_time::{Duration, Instant};
use log::info;

use super::console::fatal;
use super::stack::stack_guard_intact;
use crate::watchdog::HARDWARE_TIMEOUT;

/// The last feed, in embassy-time ticks.
static LAST_FEED: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));
static WATCHDOG_STARTED: AtomicBool = AtomicBool::new(false);

/// Starts the software watchdog: from now on [`check`] ends the emulation
/// [`HARDWARE_TIMEOUT`] after the last feed.
pub fn start_watchdog() {
    feed_watchdog();
    WATCHDOG_STARTED.store(true, Ordering::Relaxed);
    info!(
        "watchdog: the emulation fails {} s after the application stops making progress",
        HARDWARE_TIMEOUT.as_secs()
    );
}

/// Restarts the watchdog's countdown.
pub fn feed_watchdog() {
    let now = Instant::now().as_ticks();
    critical_section::with(|cs| LAST_FEED.borrow(cs).set(now));
}

/// How often the board's timer interrupt must call [`check`] at least.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// The checks the board's timer interrupt runs (at least every
/// [`CHECK_EVERY`]): the stack's guard words, and the watchdog. Either
/// failing ends the emulation with `PANIC - ...`.
pub fn check() {
    if !stack_guard_intact() {
        fatal(format_args!("stack overflow"));
    }
    if WATCHDOG_STARTED.load(Ordering::Relaxed) {
        let last = critical_section::with(|cs| LAST_FEED.borrow(cs).get());
        let now = Instant::now().as_ticks();
        if now.saturating_sub(last) >= HARDWARE_TIMEOUT.as_ticks() {
            fatal(format_args!(
                "watchdog: no progress for {} s",
                HARDWARE_TIMEOUT.as_secs()
            ));
        }
    }
}
