//! What every ESP board project needs beside the application (feature
//! `esp`; the board project enables esp-hal's chip feature): a hardware
//! watchdog the application feeds, a reset instead of a halt after a panic,
//! the reason of the last reset at boot, the heap's high-water mark, and a
//! reset after a start-up failure.
//!
//! `esp_hal::init` disables the RTC, super and timer-group watchdogs, and
//! esp-backtrace halts in `loop {}` with interrupts off after printing a
//! panic: without this module a panic or a hang leaves the board dead until
//! a power cycle.

use esp_hal::delay::Delay;
use esp_hal::peripherals::RTC_TIMER;
use esp_hal::rtc_cntl::{Rtc, RwdtStage, RwdtStageAction, reset_reason};
use esp_hal::system::{Cpu, software_reset};
use log::{error, info};

use crate::HeapUse;
use crate::watchdog::HARDWARE_TIMEOUT;

/// How long a start-up failure is shown on the console before the reset
/// that retries it.
const RESTART_DELAY_MS: u32 = 10_000;

/// The RTC watchdog (RWDT): it resets the whole chip ([`RwdtStageAction::ResetSystem`])
/// [`HARDWARE_TIMEOUT`] after the last feed.
pub struct Watchdog {
    rtc: Rtc<'static>,
}

impl Watchdog {
    /// Starts the RTC watchdog; from here on the application must feed it
    /// ([`crate::Board::feed_watchdog`]).
    pub fn start(rtc_timer: RTC_TIMER<'static>) -> Self {
        let mut rtc = Rtc::new(rtc_timer);
        let timeout = esp_hal::time::Duration::from_millis(HARDWARE_TIMEOUT.as_millis());
        rtc.rwdt.set_timeout(RwdtStage::Stage0, timeout);
        rtc.rwdt
            .set_stage_action(RwdtStage::Stage0, RwdtStageAction::ResetSystem);
        rtc.rwdt.enable();
        rtc.rwdt.feed();
        info!(
            "watchdog: the chip resets {} s after the application stops making progress",
            HARDWARE_TIMEOUT.as_secs()
        );
        Self { rtc }
    }

    /// Restarts the countdown.
    pub fn feed(&mut self) {
        self.rtc.rwdt.feed();
    }
}

/// Logs why the chip last reset (power-on, a watchdog, a panic's software
/// reset, a brown-out...): a board that restarts shows why.
pub fn log_reset_reason() {
    match reset_reason(Cpu::ProCpu) {
        Some(reason) => info!("reset reason: {reason:?}"),
        None => info!("reset reason: unknown"),
    }
}

/// The heap's use from esp-alloc (its `internal-heap-stats` feature counts
/// the peak).
pub fn heap_use() -> HeapUse {
    let stats = esp_alloc::HEAP.stats();
    HeapUse {
        peak: stats.max_usage,
        current: stats.current_usage,
        size: stats.size,
    }
}

/// A start-up step failed (the Wi-Fi driver, the entropy source): says
/// which and why, then resets the chip, which tries again.
pub fn restart_after(what: &str, why: impl core::fmt::Debug) -> ! {
    error!(
        "{what} failed: {why:?}; restarting in {} s",
        RESTART_DELAY_MS / 1000
    );
    Delay::new().delay_millis(RESTART_DELAY_MS);
    software_reset()
}

/// Called by esp-backtrace (feature `custom-halt`) after it printed the
/// panic and its backtrace: a software reset instead of halting forever.
#[unsafe(no_mangle)]
fn custom_halt() -> ! {
    software_reset()
}
