//! Keep-alive (MQTT 3.1.1 §3.1.2.10) as a plain state machine: the
//! [`Client`](crate::client::Client) reports traffic and asks when to wake
//! up; this decides when a PINGREQ is due and when the broker is dead. No
//! I/O, no clock of its own.
//!
//! Kept small on purpose (it lives as long as the connection): one interval,
//! two timestamps and a flag.

use crate::time::Millis;

/// What is due when the keep-alive deadline has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Not yet (traffic moved the deadline, or keep-alive is off).
    Nothing,
    /// Nothing was sent or received for an interval: send PINGREQ
    /// (§3.1.2.10), then call [`KeepAlive::on_ping_sent`].
    Ping,
    /// A PINGREQ went unanswered for half an interval: the connection is
    /// dead (§3.1.2.10: "within a reasonable amount of time").
    Dead,
}

/// The keep-alive state of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeepAlive {
    /// The interval in milliseconds; 0 turns keep-alive off. At most
    /// 65,535,000 (a 16-bit number of seconds).
    interval_ms: u32,
    /// A PINGREQ is unanswered: nothing has arrived since it left.
    ping_outstanding: bool,
    /// When the last packets left (the last flush).
    last_sent: Millis,
    /// When bytes last arrived; while a PINGREQ is outstanding, when it
    /// left instead. One field serves both: any arrival ends the
    /// outstanding state, so the arrival time is not needed while it
    /// lasts (it would be older than the PINGREQ anyway).
    last_received_or_ping: Millis,
}

impl KeepAlive {
    /// A connection whose CONNECT asked for `interval_secs` (0: off),
    /// opened at `now`.
    pub(crate) fn new(interval_secs: u16, now: Millis) -> Self {
        Self {
            interval_ms: u32::from(interval_secs) * 1000,
            ping_outstanding: false,
            last_sent: now,
            last_received_or_ping: now,
        }
    }

    /// The interval in milliseconds (0: off).
    pub(crate) fn interval_ms(&self) -> u32 {
        self.interval_ms
    }

    /// Packets left at `now`.
    pub(crate) fn on_sent(&mut self, now: Millis) {
        self.last_sent = now;
    }

    /// Bytes arrived at `now`: the broker is alive.
    pub(crate) fn on_received(&mut self, now: Millis) {
        self.last_received_or_ping = now;
        self.ping_outstanding = false;
    }

    /// A PINGREQ left at `now` (after [`Due::Ping`]).
    pub(crate) fn on_ping_sent(&mut self, now: Millis) {
        self.last_received_or_ping = now;
        self.ping_outstanding = true;
    }

    /// When the next keep-alive action is due: PINGREQ once nothing was
    /// sent or received for the interval, and the connection is dead half
    /// an interval after an unanswered PINGREQ, so a silent broker is
    /// detected within 1.5 intervals. [`Millis::MAX`] when off.
    // Out of line: 94 bytes less flash on riscv32imc (measured; 64-bit
    // arithmetic inlined into `need_bytes` and the read path).
    #[inline(never)]
    pub(crate) fn deadline(&self) -> Millis {
        if self.interval_ms == 0 {
            return Millis::MAX;
        }
        let interval = Millis::from(self.interval_ms);
        if self.ping_outstanding {
            self.last_received_or_ping.saturating_add(interval / 2)
        } else {
            self.last_sent
                .min(self.last_received_or_ping)
                .saturating_add(interval)
        }
    }

    /// What is due at `now` (called when a wait for the broker reached
    /// [`KeepAlive::deadline`]).
    pub(crate) fn due(&self, now: Millis) -> Due {
        if self.interval_ms == 0 || now < self.deadline() {
            Due::Nothing
        } else if self.ping_outstanding {
            Due::Dead
        } else {
            Due::Ping
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_never_wakes_up() {
        let keep_alive = KeepAlive::new(0, 5);
        assert_eq!(keep_alive.interval_ms(), 0);
        assert_eq!(keep_alive.deadline(), Millis::MAX);
        assert_eq!(keep_alive.due(Millis::MAX), Due::Nothing);
    }

    #[test]
    fn a_ping_is_due_an_interval_after_the_older_direction_went_quiet() {
        let mut keep_alive = KeepAlive::new(10, 1_000);
        assert_eq!(keep_alive.deadline(), 11_000);
        // Sending alone does not help: the broker may be gone.
        keep_alive.on_sent(5_000);
        assert_eq!(keep_alive.deadline(), 11_000);
        assert_eq!(keep_alive.due(10_999), Due::Nothing);
        assert_eq!(keep_alive.due(11_000), Due::Ping);
        // Receiving alone does not either: the broker needs our packets.
        keep_alive.on_received(9_000);
        assert_eq!(keep_alive.deadline(), 15_000);
        assert_eq!(keep_alive.due(14_000), Due::Nothing);
    }

    /// A 10 s keep-alive whose PINGREQ left at 10 s (as the client does
    /// it: queued, then flushed).
    fn pinged_at_10_s() -> KeepAlive {
        let mut keep_alive = KeepAlive::new(10, 0);
        assert_eq!(keep_alive.due(10_000), Due::Ping);
        keep_alive.on_ping_sent(10_000);
        keep_alive.on_sent(10_000);
        keep_alive
    }

    #[test]
    fn an_unanswered_ping_is_dead_half_an_interval_later() {
        let mut keep_alive = pinged_at_10_s();
        assert_eq!(keep_alive.deadline(), 15_000);
        // Our own traffic does not stretch the wait for the answer.
        keep_alive.on_sent(14_000);
        assert_eq!(keep_alive.deadline(), 15_000);
        assert_eq!(keep_alive.due(14_999), Due::Nothing);
        assert_eq!(keep_alive.due(15_000), Due::Dead);
    }

    #[test]
    fn any_arrival_answers_the_ping() {
        let mut keep_alive = pinged_at_10_s();
        keep_alive.on_received(12_000);
        assert_eq!(keep_alive.deadline(), 20_000);
        assert_eq!(keep_alive.due(16_000), Due::Nothing);
        assert_eq!(keep_alive.due(20_000), Due::Ping);
    }

    #[test]
    fn the_longest_interval_fits() {
        let keep_alive = KeepAlive::new(u16::MAX, 0);
        assert_eq!(keep_alive.interval_ms(), 65_535_000);
        assert_eq!(keep_alive.deadline(), 65_535_000);
        assert_eq!(KeepAlive::new(1, Millis::MAX - 10).deadline(), Millis::MAX);
    }
}
