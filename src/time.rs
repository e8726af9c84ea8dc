//! Time, as the caller provides it: a monotonic clock and a way to wait.
//!
//! mqtts has no executor or timer of its own. Implement [`Timer`] for your
//! platform, build one from a clock and an `embedded-hal-async`
//! [`DelayNs`] with [`ClockDelay`], or
//! enable the `embassy-time` feature and use [`EmbassyTimer`].

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
