//! Feeding a hardware watchdog from the application's progress.
//!
//! `esp_hal::init` turns every watchdog off, and a firmware that hangs
//! (a driver that never wakes a future, a loop that never yields) then
//! stays dead until someone cycles the power: the failure mqtts exists to
//! end. The board runs a hardware watchdog instead (the RTC watchdog on ESP
//! chips, see [`crate::esp`]) with a short timeout, [`HARDWARE_TIMEOUT`],
//! and the application feeds it only while each phase of its work is within
//! that phase's budget: a connect attempt (backoff, waiting for the network,
//! dialling, TLS, MQTT) gets [`CONNECT_BUDGET`], a wait for the broker or
//! the next reading gets its interval plus [`SESSION_MARGIN`]. A phase that
//! overruns its budget stops the feeding, and the watchdog resets the chip
//! [`HARDWARE_TIMEOUT`] later; a stuck executor stops it at once.
//!
//! [`Budget`] is the schedule without I/O (host-tested); [`guarded`] awaits
//! a phase under it with embassy-time.

use core::future::Future;
use core::pin::Pin;

use embassy_futures::select::{Either, select};
use embassy_time::{Duration, Instant, Timer};

/// The hardware watchdog's timeout: how long after the last feed the chip
/// resets. Well above [`FEED_EVERY`], so a busy executor that is late by
/// seconds does not reset a working board.
pub const HARDWARE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a running phase feeds the watchdog.
pub const FEED_EVERY: Duration = Duration::from_secs(10);

/// The longest a connect attempt may take before the board is reset: the
/// longest backoff (120 s, see `app::run`), up to 10 minutes without a
/// network (a Wi-Fi driver or access point that never gives an address
/// again), and 3 minutes to resolve, dial (`net::TCP_TIMEOUT`), set the
/// clock, and open TLS and MQTT.
pub const CONNECT_BUDGET: Duration = Duration::from_secs(120 + 600 + 180);

/// Added to the wait for the next reading or a publish: the keep-alive
/// exchange (PINGREQ after 60 s of silence, PINGRESP within the client's
/// deadline) fits in it.
pub const SESSION_MARGIN: Duration = Duration::from_secs(180);

/// When to feed, for a phase that started at `started` with a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    ends: Instant,
}

impl Budget {
    /// A phase started at `started` that may last `budget`.
    pub fn new(started: Instant, budget: Duration) -> Self {
        Self {
            ends: started.checked_add(budget).unwrap_or(Instant::MAX),
        }
    }

    /// Whether a feed at `now` is still allowed.
    pub fn allows_feed(&self, now: Instant) -> bool {
        now < self.ends
    }

    /// When to feed next after a feed at `now`: [`FEED_EVERY`] later, but
    /// `None` once that is past the budget (the last feed was at `now`; the
    /// watchdog resets the chip [`HARDWARE_TIMEOUT`] after it unless the
    /// phase ends first).
    pub fn next_feed(&self, now: Instant) -> Option<Instant> {
        let next = now.checked_add(FEED_EVERY)?;
        (next < self.ends).then_some(next)
    }
}

/// Awaits `phase`, calling `feed` now and every [`FEED_EVERY`] while the
/// phase runs within `budget`; after that it is awaited without feeding.
///
/// The phase comes pinned by the caller (`pin!`): a future moved into an
/// async fn is stored twice in the caller's state (as the argument and as
/// the callee's local), and the connect phase alone is kilobytes of a
/// board's static RAM.
pub async fn guarded<F: Future>(
    feed: &mut impl FnMut(),
    budget: Duration,
    mut phase: Pin<&mut F>,
) -> F::Output {
    let mut now = Instant::now();
    let schedule = Budget::new(now, budget);
    while schedule.allows_feed(now) {
        feed();
        let Some(next) = schedule.next_feed(now) else {
            break;
        };
        match select(phase.as_mut(), Timer::at(next)).await {
            Either::First(output) => return output,
            Either::Second(()) => now = Instant::now(),
        }
    }
    phase.await
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::pin::pin;

    #[test]
    fn a_phase_is_fed_every_interval_until_its_budget_ends() {
        let start = Instant::from_secs(1_000);
        let budget = Budget::new(start, Duration::from_secs(35));
        let mut feeds = std::vec![start];
        let mut now = start;
        while let Some(next) = budget.next_feed(now) {
            assert!(budget.allows_feed(next));
            feeds.push(next);
            now = next;
        }
        let offsets: std::vec::Vec<u64> = feeds.iter().map(|t| (*t - start).as_secs()).collect();
        // Fed at 0, 10, 20 and 30 s; 40 s is past the budget: the last feed
        // is at 30 s and the watchdog fires HARDWARE_TIMEOUT after it.
        assert_eq!(offsets, [0, 10, 20, 30]);
        assert!(!budget.allows_feed(start + Duration::from_secs(35)));
        assert!(budget.allows_feed(start + Duration::from_secs(34)));
    }

    #[test]
    fn budgets_cover_the_slowest_legitimate_phase() {
        // The longest backoff alone is 120 s (app::run).
        assert!(CONNECT_BUDGET > Duration::from_secs(120) + HARDWARE_TIMEOUT);
        // A keep-alive of 60 s: a PINGREQ after 60 s of silence and its
        // answer must fit in the margin.
        assert!(SESSION_MARGIN >= Duration::from_secs(2 * 60));
        // A late feed does not reset a working board.
        assert!(HARDWARE_TIMEOUT >= FEED_EVERY * 3);
    }

    #[test]
    fn a_budget_far_in_the_future_saturates() {
        let budget = Budget::new(Instant::MAX, Duration::from_secs(1));
        assert!(budget.allows_feed(Instant::from_secs(0)));
        assert_eq!(budget.next_feed(Instant::MAX), None);
    }

    /// Polls `phase` once with a waker that does nothing.
    fn poll_once<F: Future>(phase: core::pin::Pin<&mut F>) -> core::task::Poll<F::Output> {
        phase.poll(&mut core::task::Context::from_waker(
            core::task::Waker::noop(),
        ))
    }

    #[test]
    fn a_hung_phase_is_fed_until_its_budget_ends_then_never_again() {
        let _clock = crate::test_clock();
        let clock = embassy_time::MockDriver::get();
        let feeds = core::cell::Cell::new(0);
        let mut feed = || feeds.set(feeds.get() + 1);
        let phase = pin!(core::future::pending::<()>());
        let hung = guarded(&mut feed, Duration::from_secs(35), phase);
        let mut hung = pin!(hung);
        assert!(poll_once(hung.as_mut()).is_pending());
        let mut seen = std::vec![feeds.get()];
        // Ten minutes in steps of 5 s: fed at 0, 10, 20 and 30 s only.
        for _ in 0..120 {
            clock.advance(Duration::from_secs(5));
            assert!(poll_once(hung.as_mut()).is_pending());
            seen.push(feeds.get());
        }
        assert_eq!(feeds.get(), 4, "{seen:?}");
        assert_eq!(&seen[..8], [1, 1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn a_phase_that_ends_within_its_budget_returns_its_output() {
        let _clock = crate::test_clock();
        let clock = embassy_time::MockDriver::get();
        let feeds = core::cell::Cell::new(0);
        let mut feed = || feeds.set(feeds.get() + 1);
        let done_at = Instant::now() + Duration::from_secs(25);
        let connect = pin!(async move {
            Timer::at(done_at).await;
            "connected"
        });
        let phase = guarded(&mut feed, CONNECT_BUDGET, connect);
        let mut phase = pin!(phase);
        let mut output = poll_once(phase.as_mut());
        while output.is_pending() {
            clock.advance(Duration::from_secs(1));
            output = poll_once(phase.as_mut());
        }
        assert_eq!(output, core::task::Poll::Ready("connected"));
        // At 0, 10 and 20 s.
        assert_eq!(feeds.get(), 3);
    }

    #[test]
    fn guarded_feeds_before_awaiting_and_returns_the_output() {
        let _clock = crate::test_clock();
        let mut feeds = 0;
        let ready = pin!(async { 7 });
        let output =
            embassy_futures::block_on(guarded(&mut || feeds += 1, Duration::from_secs(60), ready));
        assert_eq!((output, feeds), (7, 1));
        // A phase whose budget is already spent is awaited without a feed.
        let mut late = 0;
        let ready = pin!(async { 8 });
        let output =
            embassy_futures::block_on(guarded(&mut || late += 1, Duration::from_secs(0), ready));
        assert_eq!((output, late), (8, 0));
    }
}
