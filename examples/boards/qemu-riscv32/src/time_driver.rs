//! embassy-time on the CLINT of QEMU's `virt`: `mtime` (64 bits, 10 MHz, one
//! embassy tick per count) and hart 0's `mtimecmp` with the machine timer
//! interrupt. The interrupt also runs the board's checks
//! ([`mqtts_board_app::emulated::check`]: the stack's guard words and the
//! software watchdog) at least every [`CHECK_EVERY`].

use core::cell::RefCell;
use core::task::Waker;

use critical_section::{CriticalSection, Mutex};
use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;
use mqtts_board_app::emulated::{self, CHECK_EVERY};

/// The CLINT (SiFive layout) on `virt`.
const CLINT: usize = 0x0200_0000;
/// Hart 0's compare register.
const MTIMECMP: usize = CLINT + 0x4000;
/// The counter.
const MTIME: usize = CLINT + 0xBFF8;

struct MtimeDriver {
    queue: Mutex<RefCell<Queue>>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: MtimeDriver = MtimeDriver {
    queue: Mutex::new(RefCell::new(Queue::new())),
});

fn read(addr: usize) -> u32 {
    // SAFETY: a CLINT register of the `virt` machine.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn write(addr: usize, value: u32) {
    // SAFETY: a CLINT register of the `virt` machine.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

/// `mtime`, read as two halves without tearing.
fn now() -> u64 {
    loop {
        let high = read(MTIME + 4);
        let low = read(MTIME);
        if read(MTIME + 4) == high {
            return (u64::from(high) << 32) | u64::from(low);
        }
    }
}

/// Sets `mtimecmp` without a moment at which a mix of old and new halves
/// lies in the past (RISC-V privileged spec, 3.2.1).
fn set_compare(at: u64) {
    write(MTIMECMP + 4, u32::MAX);
    write(MTIMECMP, at as u32);
    write(MTIMECMP + 4, (at >> 32) as u32);
}

impl MtimeDriver {
    /// Wakes what expired and sets the compare register to the next timer,
    /// or to the next check. A compare in the past raises the (level)
    /// interrupt at once: no wake-up is lost.
    fn rearm(&self, cs: CriticalSection<'_>) {
        let now = now();
        let next = self.queue.borrow_ref_mut(cs).next_expiration(now);
        set_compare(next.min(now + CHECK_EVERY.as_ticks()));
    }
}

impl Driver for MtimeDriver {
    fn now(&self) -> u64 {
        now()
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            if self.queue.borrow_ref_mut(cs).schedule_wake(at, waker) {
                self.rearm(cs);
            }
        })
    }
}

/// Starts the timer: the first check in [`CHECK_EVERY`], the machine timer
/// interrupt enabled (it fires once `mstatus.MIE` is set).
pub fn init() {
    critical_section::with(|cs| DRIVER.rearm(cs));
    // SAFETY: the handler below is ready.
    unsafe { riscv::register::mie::set_mtimer() };
}

#[riscv_rt::core_interrupt(riscv::interrupt::Interrupt::MachineTimer)]
fn machine_timer() {
    critical_section::with(|cs| DRIVER.rearm(cs));
    emulated::check();
}
