//! embassy-time on `mps2-an386`: SysTick is the clock, TIMER0 the alarm.
//!
//! SysTick counts the 25 MHz system clock down from 12,500,000 and wraps
//! every 0.5 s ([`CHECK_EVERY`]); its interrupt counts the wraps (a 64-bit
//! clock with the counter) and runs the board's checks. TIMER0 (CMSDK APB
//! timer at 0x4000_0000, IRQ 8, also 25 MHz) counts down to the next timer
//! of the queue and interrupts once there; it is off while no timer is
//! queued, so an idle firmware wakes only for the checks.
//!
//! embassy-time has no 25 MHz tick rate: a tick is 1 µs, 25 counts.

use core::cell::{Cell, RefCell};
use core::task::Waker;

use critical_section::{CriticalSection, Mutex};
use embassy_time_driver::{Driver, TICK_HZ};
use embassy_time_queue_utils::Queue;
use mqtts_board_app::emulated::CHECK_EVERY;

/// The system clock SysTick and TIMER0 count (QEMU's mps2 SYSCLK).
const CLOCK_HZ: u64 = 25_000_000;
/// Clock counts per embassy tick.
const COUNTS_PER_TICK: u64 = CLOCK_HZ / TICK_HZ;
/// SysTick's period: the checks' interval.
const PERIOD: u64 = CHECK_EVERY.as_ticks() * COUNTS_PER_TICK;
const _: () = assert!(CLOCK_HZ % TICK_HZ == 0 && PERIOD > 0 && PERIOD <= 1 << 24);

/// SysTick (ARMv7-M ARM, B3.3): control and status, reload, current value.
const SYST_CSR: usize = 0xE000_E010;
const SYST_RVR: usize = 0xE000_E014;
const SYST_CVR: usize = 0xE000_E018;
/// SYST_CSR: enable, interrupt at wrap, count the processor clock.
const SYST_ENABLE_TICKINT_CORE: u32 = 0b111;
/// Interrupt control and state: PENDSTSET, a SysTick wrap not yet handled.
const ICSR: usize = 0xE000_ED04;
const ICSR_PENDSTSET: u32 = 1 << 26;

/// TIMER0 (CMSDK APB timer): control, reload (also sets the value),
/// interrupt status (write 1 to clear).
const TIMER0: usize = 0x4000_0000;
const TIMER_CTRL: usize = TIMER0;
const TIMER_RELOAD: usize = TIMER0 + 0x8;
const TIMER_INTCLEAR: usize = TIMER0 + 0xC;
/// TIMER_CTRL: enable, interrupt at zero.
const TIMER_ENABLE_IRQ: u32 = 0b1001;
/// TIMER0's interrupt on `mps2-an386`.
pub const ALARM_IRQ: i16 = 8;

/// NVIC interrupt set-enable, IRQs 0 to 31.
const NVIC_ISER0: usize = 0xE000_E100;

struct SysTickDriver {
    /// SysTick wraps since boot.
    wraps: Mutex<Cell<u64>>,
    queue: Mutex<RefCell<Queue>>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    wraps: Mutex::new(Cell::new(0)),
    queue: Mutex::new(RefCell::new(Queue::new())),
});

fn read(addr: usize) -> u32 {
    // SAFETY: a SysTick, SCB or TIMER0 register of `mps2-an386`.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn write(addr: usize, value: u32) {
    // SAFETY: a SysTick, SCB, NVIC or TIMER0 register of `mps2-an386`.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

impl SysTickDriver {
    /// Clock counts since boot. A wrap that is pending (in a critical
    /// section, or just before this read) counts: the value is then read
    /// again, after the wrap.
    fn counts(&self, cs: CriticalSection<'_>) -> u64 {
        let mut wraps = self.wraps.borrow(cs).get();
        let mut value = read(SYST_CVR);
        if read(ICSR) & ICSR_PENDSTSET != 0 {
            value = read(SYST_CVR);
            wraps += 1;
        }
        wraps * PERIOD + (PERIOD - 1 - u64::from(value))
    }

    /// Wakes what expired and sets TIMER0 to the next timer, or stops it.
    fn rearm(&self, cs: CriticalSection<'_>) {
        let now = self.counts(cs) / COUNTS_PER_TICK;
        let next = self.queue.borrow_ref_mut(cs).next_expiration(now);
        write(TIMER_CTRL, 0);
        write(TIMER_INTCLEAR, 1);
        if next == u64::MAX {
            return;
        }
        // At least one count (the queue woke everything due); at most the
        // 32-bit counter's 171 s, after which the interrupt rearms again.
        let counts = (next - now)
            .saturating_mul(COUNTS_PER_TICK)
            .clamp(1, u64::from(u32::MAX));
        write(TIMER_RELOAD, counts as u32);
        write(TIMER_CTRL, TIMER_ENABLE_IRQ);
    }
}

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.counts(cs)) / COUNTS_PER_TICK
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            if self.queue.borrow_ref_mut(cs).schedule_wake(at, waker) {
                self.rearm(cs);
            }
        })
    }
}

/// Starts SysTick (its interrupt fires once interrupts are enabled) and
/// enables TIMER0's interrupt in the NVIC.
pub fn init() {
    write(TIMER_CTRL, 0);
    write(TIMER_INTCLEAR, 1);
    write(SYST_RVR, (PERIOD - 1) as u32);
    write(SYST_CVR, 0);
    write(SYST_CSR, SYST_ENABLE_TICKINT_CORE);
    write(NVIC_ISER0, 1 << ALARM_IRQ);
}

/// SysTick's interrupt: one more wrap.
pub fn on_systick() {
    critical_section::with(|cs| {
        let wraps = DRIVER.wraps.borrow(cs);
        wraps.set(wraps.get() + 1);
    });
}

/// TIMER0's interrupt: the next timer is due.
pub fn on_alarm_interrupt() {
    critical_section::with(|cs| DRIVER.rearm(cs));
}
