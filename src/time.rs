//! Time, as the caller provides it: a monotonic clock and a way to wait
//! (keep-alive, timeouts), and the calendar time that CA mode checks
//! certificate validity against.
//!
//! mqtts has no executor or timer of its own. Implement [`Timer`] for your
//! platform, build one from a clock and an `embedded-hal-async`
//! [`DelayNs`] with [`ClockDelay`], or
//! enable the `embassy-time` feature and use [`EmbassyTimer`].
//!
//! The two kinds of time are distinct: a [`Clock`] counts milliseconds from
//! any epoch (boot) and never jumps; a [`WallClock`] tells the date (seconds
//! since the Unix epoch, UTC), from SNTP or a battery-backed RTC, and may
//! not know it yet. Certificates carry dates (RFC 5280 §4.1.2.5), so only CA
//! mode needs a [`WallClock`]; pins ignore dates.

use embedded_hal_async::delay::DelayNs;

/// Milliseconds on a monotonic clock (any epoch: boot, say).
pub type Millis = u64;

/// A monotonic clock and a way to wait until a point on it.
///
/// Cloned into each connection (a TLS stream keeps a copy to bound its
/// reads), so it should be cheap to clone: embassy's and most HALs' delay
/// types are zero-sized.
#[allow(async_fn_in_trait)] // used with concrete types only, never as `dyn`
pub trait Timer: Clone {
    /// The current time.
    fn now(&self) -> Millis;

    /// Waits until `deadline` (returns at once if it has passed).
    async fn sleep_until(&mut self, deadline: Millis);
}

/// A monotonic clock.
pub trait Clock {
    /// The current time in milliseconds.
    fn now_ms(&self) -> Millis;
}

/// The calendar time: seconds since the Unix epoch (1970-01-01 00:00:00
/// UTC), as SNTP or a battery-backed RTC tells it. CA mode checks each
/// certificate's validity period against it (RFC 5280 §4.1.2.5); see
/// [`TlsOptions::with_wall_clock`](crate::tls::TlsOptions::with_wall_clock).
///
/// Read once at each connect, so a clock that SNTP sets later, or
/// corrects, is used from the next connection on. Distinct from the
/// monotonic [`Clock`], which has no date.
///
/// ```
/// use core::cell::Cell;
/// use mqtts::time::WallClock;
///
/// /// Set by the application once SNTP has answered.
/// struct SntpTime(Cell<Option<u64>>);
///
/// impl WallClock for SntpTime {
///     fn now_unix_secs(&self) -> Option<u64> {
///         self.0.get()
///     }
/// }
///
/// let clock = SntpTime(Cell::new(None));
/// assert_eq!(clock.now_unix_secs(), None); // not set yet: CA mode refuses to guess
/// clock.0.set(Some(1_800_000_000));
/// assert_eq!(clock.now_unix_secs(), Some(1_800_000_000));
/// ```
pub trait WallClock {
    /// Seconds since the Unix epoch, or `None` while the time is not known
    /// (SNTP has not answered yet, the RTC lost power).
    fn now_unix_secs(&self) -> Option<u64>;
}

/// 2026-12-07 00:00:00 UTC: no earlier than the day this version of mqtts
/// was released (raised at every release).
///
/// The current time is at least this on any device running this code, so
/// CA mode never validates certificates at an earlier time: a time below
/// it (a clock that was never set, an RTC back at 2000) counts as unknown,
/// and without a time a certificate that expired before this date is
/// refused (RFC 5280 §4.1.2.5). Applications raise the floor to their own
/// build date with
/// [`TlsOptions::with_minimum_time`](crate::tls::TlsOptions::with_minimum_time).
///
/// A constant rather than a build-time timestamp, so that builds stay
/// reproducible.
pub const CRATE_RELEASE_TIME: u64 = 1_796_601_600;

/// A [`Timer`] from a [`Clock`] and an `embedded-hal-async` delay.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClockDelay<C, D> {
    /// The clock.
    pub clock: C,
    /// The delay.
    pub delay: D,
}

impl<C: Clock + Clone, D: DelayNs + Clone> Timer for ClockDelay<C, D> {
    fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    async fn sleep_until(&mut self, deadline: Millis) {
        // Delays may be cut short (or long) by their implementation: loop on the clock.
        loop {
            let now = self.clock.now_ms();
            if now >= deadline {
                return;
            }
            let wait = u32::try_from(deadline - now).unwrap_or(u32::MAX);
            self.delay.delay_ms(wait).await;
        }
    }
}

/// [`Timer`] on `embassy-time` (feature `embassy-time`).
#[cfg(feature = "embassy-time")]
#[derive(Debug, Clone, Copy, Default)]
pub struct EmbassyTimer;

#[cfg(feature = "embassy-time")]
impl Timer for EmbassyTimer {
    fn now(&self) -> Millis {
        embassy_time::Instant::now().as_millis()
    }

    async fn sleep_until(&mut self, deadline: Millis) {
        // `Instant::from_millis` overflows for far deadlines (keep-alive 0
        // means "never"): those never come.
        match deadline.checked_mul(embassy_time::TICK_HZ) {
            Some(ticks) => {
                embassy_time::Timer::at(embassy_time::Instant::from_ticks(ticks / 1000)).await;
            }
            None => core::future::pending::<()>().await,
        }
    }
}
