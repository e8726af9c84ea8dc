//! Failures provoked on request (`selftest=`), to see the board catch them.

use log::info;

use super::console::fatal;

/// Failures the board must catch, provoked on request (`selftest=`): each
/// must end the emulation with failure and its `PANIC - ...` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfTest {
    /// Unbounded recursion: `PANIC - stack overflow`.
    StackOverflow,
    /// A task that never yields: `PANIC - watchdog: no progress for 60 s`.
    Watchdog,
    /// `panic!`: `PANIC - self-test panic at ...`.
    Panic,
}

/// Provokes `test` (from the board's main, with interrupts and the
/// watchdog running): never returns, the board's checks end the emulation.
pub fn run_self_test(test: SelfTest) -> ! {
    info!("self-test: {test:?}");
    match test {
        SelfTest::StackOverflow => {
            let depth = recurse(core::hint::black_box(1));
            fatal(format_args!(
                "self-test: recursion of {depth} frames returned"
            ))
        }
        SelfTest::Watchdog => loop {
            // Spins without feeding; the timer interrupt still runs.
            core::hint::spin_loop();
        },
        SelfTest::Panic => panic!("self-test panic"),
    }
}

/// 256 bytes of stack per frame, forever.
#[inline(never)]
#[allow(unconditional_recursion)] // the point: it ends in the stack's guard
fn recurse(depth: u32) -> u32 {
    let mut frame = [0u8; 256];
    frame[depth as usize % 256] = depth as u8;
    core::hint::black_box(&mut frame);
    recurse(depth + 1) + u32::from(frame[0])
}
