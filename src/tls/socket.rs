//! The socket embedded-tls reads through: it makes TLS reads stoppable at a
//! deadline without losing stream data.
//!
//! embedded-tls is not cancel-safe: a read future dropped after it took
//! part of a record from the socket loses those bytes (the record header is
//! a local variable there), and a record restarted after part of its body
//! was read makes it read past the record (0.19 asks for the whole body
//! again). An MQTT client must stop waiting for data to send PINGREQ, so
//! this socket tracks TLS records (RFC 8446 §5.1) and hands embedded-tls
//! each record in two steps that cannot be half done:
//! - the 5-byte header, kept here until it is complete;
//! - the body, written straight into embedded-tls's buffer and reported
//!   only when complete. If the read stops before (deadline or a dropped
//!   future), embedded-tls restarts the record: this socket gives it the
//!   same header again, checks it asks for the same buffer (the bytes
//!   already written are still there) and continues filling it.
//!
//! So TLS reads are cancel-safe whenever the caller's socket reads are
//! (embassy-net's and tokio's are), and a deadline fails a read with
//! [`ErrorKind::TimedOut`] without losing anything.
//!
//! Seeing every record header, the socket is also where the record gate
//! (`record_gate`) refuses records TLS 1.3 does not allow in the current
//! phase, before embedded-tls sees them.

use super::record_gate::{Admission, Gate};
use crate::time::{Millis, Timer};
use core::cell::Cell;
use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::Poll;
use embedded_io::{ErrorKind, ErrorType};
use embedded_io_async::{Read, Write};

/// Where a TLS read may stop waiting for a new record, or how long a
/// write may block; shared between the stream and the socket inside
/// embedded-tls.
///
/// One `u64` (it lives in every [`Session`](crate::Session)): no stop, a
/// time to stop at, or a timeout from the first wait, packed (see `get`).
/// Times and timeouts of 2^63 ms and more (millions of years; only
/// saturated sums reach them) mean "never", as no stop does.
#[derive(Debug)]
pub struct ReadDeadline(Cell<u64>);

impl Default for ReadDeadline {
    fn default() -> Self {
        Self::new()
    }
}

/// [`ReadDeadline`]'s encoding of "no stop".
const NO_STOP: u64 = u64::MAX;
/// [`ReadDeadline`]'s mark of a `Stop::After`.
const AFTER: u64 = 1 << 63;

/// When a socket operation stops waiting.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// At this time on the timer.
    At(Millis),
    /// This long after the operation first has to wait.
    After(Millis),
}

impl ReadDeadline {
    /// No deadline.
    pub const fn new() -> Self {
        Self(Cell::new(NO_STOP))
    }

    pub(crate) fn set(&self, deadline: Option<Millis>) {
        self.0.set(match deadline {
            Some(at) if at < AFTER => at,
            _ => NO_STOP,
        });
    }

    /// Socket operations stop `ms` after they first have to wait: the
    /// clock is read only then, never on the fast path.
    pub(crate) fn set_timeout(&self, ms: Millis) {
        self.0.set(if ms < AFTER { AFTER | ms } else { NO_STOP });
    }

    fn get(&self) -> Option<Stop> {
        match self.0.get() {
            NO_STOP => None,
            v if v & AFTER != 0 => Some(Stop::After(v & !AFTER)),
            at => Some(Stop::At(at)),
        }
    }
}

/// A TLS record header's length.
const HEADER_LEN: usize = 5;

/// The caller's socket, with record tracking, the record gate and an
/// optional read deadline.
pub(crate) struct DeadlineSocket<'d, S, T> {
    inner: S,
    deadline: Option<(&'d ReadDeadline, T)>,
    gate: Gate<'d>,
    /// The gate must see the current record's body before it is handed over.
    check_body: bool,
    header: [u8; HEADER_LEN],
    /// Header bytes read from the socket.
    header_read: usize,
    /// Header bytes handed to embedded-tls (`HEADER_LEN` once it has them all).
    header_delivered: usize,
    /// The body of the current record is being read.
    in_body: bool,
    body_len: usize,
    /// Body bytes already written into embedded-tls's buffer...
    body_filled: usize,
    /// ...which is this one (address and length), so a restart can be checked.
    body_region: (usize, usize),
}

impl<'d, S, T> DeadlineSocket<'d, S, T> {
    pub fn new(inner: S, deadline: Option<(&'d ReadDeadline, T)>, gate: Gate<'d>) -> Self {
        Self {
            inner,
            deadline,
            gate,
            check_body: false,
            header: [0; HEADER_LEN],
            header_read: 0,
            header_delivered: 0,
            in_body: false,
            body_len: 0,
            body_filled: 0,
            body_region: (0, 0),
        }
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    fn record_done(&mut self) {
        self.header_read = 0;
        self.header_delivered = 0;
        self.in_body = false;
        self.body_len = 0;
        self.body_filled = 0;
        self.check_body = false;
    }

    /// Lets the gate decide on the current record's `body` (if it asked to
    /// see it); a refusal ends the connection.
    fn gate_body(&mut self, body: &[u8]) -> Result<(), ErrorKind> {
        if self.check_body {
            let [content_type, ..] = self.header;
            match self.gate.phase().after_body(content_type, body) {
                Ok(phase) => self.gate.set_phase(phase),
                Err(refusal) => {
                    self.gate.refuse(refusal);
                    return Err(ErrorKind::InvalidData);
                }
            }
        }
        Ok(())
    }
}

impl<S: ErrorType, T> ErrorType for DeadlineSocket<'_, S, T> {
    type Error = ErrorKind;
}

/// Runs `work`, or gives `None` once the deadline (if any) has passed.
///
/// `work` is polled once first: when it completes at once (data already
/// received, room in the socket's send buffer: the common case) the clock
/// is not read and no timer is armed. Only a `work` that must wait races
/// the timer.
async fn before_deadline<F: Future, T: Timer>(
    deadline: &mut Option<(&ReadDeadline, T)>,
    work: F,
) -> Option<F::Output> {
    use embassy_futures::select::{Either, select};
    let mut work = pin!(work);
    if let Poll::Ready(output) = poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await {
        return Some(output);
    }
    let Some((cell, timer)) = deadline else {
        return Some(work.await);
    };
    let now = timer.now();
    let at = match cell.get() {
        None => return Some(work.await),
        Some(Stop::At(at)) => at,
        Some(Stop::After(ms)) => {
            // Fixed now, for every socket operation until the stream
            // clears the cell: one TLS write is many socket writes, and a
            // peer taking a byte now and then must not renew the bound.
            let at = now.saturating_add(ms);
            cell.set(Some(at));
            at
        }
    };
    if at <= now {
        // Passed already (a read of what is at hand has deadline 0):
        // decided here, not by the timer, which need not wake for it.
        return None;
    }
    match select(work, timer.sleep_until(at)).await {
        Either::First(output) => Some(output),
        Either::Second(()) => None,
    }
}

/// Reads from `inner`, or `Ok(None)` once the deadline (if any) passed.
async fn read_until<S: Read, T: Timer>(
    inner: &mut S,
    deadline: &mut Option<(&ReadDeadline, T)>,
    buf: &mut [u8],
) -> Result<Option<usize>, ErrorKind> {
    use embedded_io::Error as _;
    match before_deadline(deadline, inner.read(buf)).await {
        Some(result) => result.map(Some).map_err(|e| e.kind()),
        None => Ok(None),
    }
}

impl<S: Read, T: Timer> Read for DeadlineSocket<'_, S, T> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if buf.is_empty() {
            return Ok(0);
        }
        // A refused record ended the connection: nothing after it is read.
        if self.gate.refusal().is_some() {
            return Err(ErrorKind::InvalidData);
        }
        loop {
            // A header, complete, not (or not entirely) handed over: a new
            // record, or a record embedded-tls restarts.
            if self.header_read == HEADER_LEN && self.header_delivered < HEADER_LEN {
                let pending = self.header.get(self.header_delivered..).unwrap_or_default();
                let n = pending.len().min(buf.len());
                buf[..n].copy_from_slice(&pending[..n]);
                self.header_delivered += n;
                if self.header_delivered == HEADER_LEN && !self.in_body {
                    let [_, _, _, hi, lo] = self.header;
                    self.body_len = usize::from(u16::from_be_bytes([hi, lo]));
                    self.in_body = self.body_len > 0;
                    self.body_filled = 0;
                    if !self.in_body {
                        self.record_done();
                    }
                }
                return Ok(n);
            }

            if self.in_body {
                let region = (buf.as_ptr() as usize, buf.len());
                if buf.len() != self.body_len
                    || (self.body_filled > 0 && region != self.body_region)
                {
                    // Not the request embedded-tls 0.19 makes: resuming would
                    // corrupt the stream, so refuse.
                    return Err(ErrorKind::Unsupported);
                }
                self.body_region = region;
                // Until the body is complete, a stop means embedded-tls will
                // restart the record: the header must be handed over again.
                self.header_delivered = 0;
                while self.body_filled < self.body_len {
                    let rest = buf.get_mut(self.body_filled..).unwrap_or_default();
                    match read_until(&mut self.inner, &mut self.deadline, rest).await? {
                        Some(0) => return Ok(0),
                        Some(n) => self.body_filled += n,
                        None => return Err(ErrorKind::TimedOut),
                    }
                }
                let n = self.body_len;
                self.gate_body(buf.get(..n).unwrap_or_default())?;
                self.record_done();
                return Ok(n);
            }

            while self.header_read < HEADER_LEN {
                let rest = self.header.get_mut(self.header_read..).unwrap_or_default();
                match read_until(&mut self.inner, &mut self.deadline, rest).await? {
                    Some(0) => return Ok(0),
                    Some(n) => self.header_read += n,
                    None => return Err(ErrorKind::TimedOut),
                }
            }
            // The gate also refuses an encrypted record too short for the
            // AEAD tag and the inner content type, on which embedded-tls
            // 0.19 panics (and the handshake keys are those of whoever
            // answered).
            let [content_type, _, _, hi, lo] = self.header;
            let len = u16::from_be_bytes([hi, lo]);
            match self.gate.phase().admit(content_type, len) {
                Ok(admission) => self.check_body = admission == Admission::CheckBody,
                Err(refusal) => {
                    self.gate.refuse(refusal);
                    return Err(ErrorKind::InvalidData);
                }
            }
            if len == 0 {
                // No body to wait for: the gate decides now.
                self.gate_body(&[])?;
            }
            self.header_delivered = 0;
            // Hand it over: the branch at the top.
        }
    }
}

/// Runs `work` until the deadline, if one is set: a write cut short leaves
/// the stream unusable, which the TLS stream records (see `TlsStream`).
async fn until<F: Future, T: Timer>(
    deadline: &mut Option<(&ReadDeadline, T)>,
    work: F,
) -> Result<F::Output, ErrorKind> {
    before_deadline(deadline, work)
        .await
        .ok_or(ErrorKind::TimedOut)
}

impl<S: Write, T: Timer> Write for DeadlineSocket<'_, S, T> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        use embedded_io::Error as _;
        let write = self.inner.write(buf);
        until(&mut self.deadline, write)
            .await?
            .map_err(|e| e.kind())
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        use embedded_io::Error as _;
        let flush = self.inner.flush();
        until(&mut self.deadline, flush)
            .await?
            .map_err(|e| e.kind())
    }
}

/// A [`Timer`] for TLS streams without a deadline: it never fires.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTimer;

impl Timer for NoTimer {
    fn now(&self) -> Millis {
        0
    }

    async fn sleep_until(&mut self, deadline: Millis) {
        // Its clock stays at 0: only a deadline of 0 has passed.
        if deadline > self.now() {
            core::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::record_gate::{Phase, Refusal};
    use super::*;

    /// A socket that reads from a fixed byte string.
    struct Bytes<'a>(&'a [u8]);

    impl ErrorType for Bytes<'_> {
        type Error = ErrorKind;
    }

    impl Read for Bytes<'_> {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn block_on<F: core::future::Future>(future: F) -> F::Output {
        embassy_futures::block_on(future)
    }

    /// A clock the test moves.
    #[derive(Clone)]
    struct Virtual<'a>(&'a Cell<Millis>);

    impl Timer for Virtual<'_> {
        fn now(&self) -> Millis {
            self.0.get()
        }

        async fn sleep_until(&mut self, at: Millis) {
            poll_fn(|_| {
                if self.0.get() >= at {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        }
    }

    /// A peer that takes one byte per call, each after 29 s.
    struct Drip<'a> {
        clock: &'a Cell<Millis>,
        ready: bool,
    }

    impl ErrorType for Drip<'_> {
        type Error = ErrorKind;
    }

    impl Write for Drip<'_> {
        async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
            poll_fn(|_| {
                if self.ready {
                    Poll::Ready(())
                } else {
                    self.ready = true;
                    Poll::Pending
                }
            })
            .await;
            self.ready = false;
            self.clock.set(self.clock.get() + 29_000);
            Ok(buf.len().min(1))
        }

        async fn flush(&mut self) -> Result<(), ErrorKind> {
            Ok(())
        }
    }

    /// The write bound covers one TLS write or flush (many socket writes),
    /// counted from its first wait: a peer taking a byte every 29 s cannot
    /// keep renewing it (found in review).
    #[test]
    fn a_deadline_packs_into_one_word() {
        let cell = ReadDeadline::default();
        assert!(cell.get().is_none());
        cell.set(Some(0));
        assert!(matches!(cell.get(), Some(Stop::At(0))));
        cell.set(Some(AFTER - 1));
        assert!(matches!(cell.get(), Some(Stop::At(at)) if at == AFTER - 1));
        cell.set_timeout(30_000);
        assert!(matches!(cell.get(), Some(Stop::After(30_000))));
        cell.set_timeout(0);
        assert!(matches!(cell.get(), Some(Stop::After(0))));
        // Saturated sums mean "never", as no stop does.
        cell.set(Some(Millis::MAX));
        assert!(cell.get().is_none());
        cell.set_timeout(AFTER);
        assert!(cell.get().is_none());
        cell.set(None);
        assert!(cell.get().is_none());
        assert_eq!(size_of::<ReadDeadline>(), 8);
    }

    #[test]
    fn a_dripping_peer_cannot_stretch_one_write_past_the_bound() {
        let clock = Cell::new(1_000);
        let mut gate_bytes = [0; 2];
        let cell = ReadDeadline::new();
        cell.set_timeout(crate::tls::WRITE_TIMEOUT_MS);
        let mut socket = DeadlineSocket::new(
            Drip {
                clock: &clock,
                ready: false,
            },
            Some((&cell, Virtual(&clock))),
            Gate::new(&mut gate_bytes),
        );
        let result = block_on(socket.write_all(&[0u8; 10]));
        assert_eq!(result, Err(ErrorKind::TimedOut));
        // Two bytes went (29 s each), the third wait passed the 30 s bound.
        assert_eq!(clock.get(), 1_000 + 2 * 29_000);
    }

    /// A deadline of 0 (only what is at hand) ends a read that would wait
    /// even with a timer that never fires (found in review).
    #[test]
    fn a_passed_deadline_needs_no_timer_wake_up() {
        struct Silent;
        impl ErrorType for Silent {
            type Error = ErrorKind;
        }
        impl Read for Silent {
            async fn read(&mut self, _buf: &mut [u8]) -> Result<usize, ErrorKind> {
                core::future::pending().await
            }
        }
        struct NeverFires;
        impl Clone for NeverFires {
            fn clone(&self) -> Self {
                NeverFires
            }
        }
        impl Timer for NeverFires {
            fn now(&self) -> Millis {
                5
            }
            async fn sleep_until(&mut self, _at: Millis) {
                core::future::pending().await
            }
        }
        let cell = ReadDeadline::new();
        cell.set(Some(0));
        let mut gate_bytes = [0; 2];
        let mut socket = DeadlineSocket::new(
            Silent,
            Some((&cell, NeverFires)),
            Gate::new(&mut gate_bytes),
        );
        let mut buf = [0u8; 8];
        // One poll decides it (a hang would be the defect).
        assert_eq!(
            embassy_futures::poll_once(socket.read(&mut buf)),
            Poll::Ready(Err(ErrorKind::TimedOut))
        );
    }

    /// A socket without deadline over `bytes`, its gate in `phase`.
    fn gated<'a>(
        bytes: &'a [u8],
        gate: &'a mut [u8; 2],
        phase: Phase,
    ) -> (DeadlineSocket<'a, Bytes<'a>, NoTimer>, Gate<'a>) {
        let gate = Gate::new(gate);
        gate.set_phase(phase);
        (DeadlineSocket::new(Bytes(bytes), None, gate), gate)
    }

    #[test]
    fn an_encrypted_record_without_plaintext_is_refused() {
        // Outer type application_data, 16 bytes: a tag and nothing else.
        let mut record = [0u8; 5 + 16];
        record[..5].copy_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x10]);
        let mut gate_bytes = [0; 2];
        let (mut socket, gate) = gated(&record, &mut gate_bytes, Phase::Established);
        let mut header = [0u8; 5];
        assert_eq!(
            block_on(socket.read(&mut header)),
            Err(ErrorKind::InvalidData)
        );
        // Named, and final: a read after the error does not hand the
        // record over (found by the record_gate fuzz target).
        assert_eq!(
            gate.refusal(),
            Some(Refusal {
                content_type: 23,
                after_handshake: true
            })
        );
        assert_eq!(
            block_on(socket.read(&mut header)),
            Err(ErrorKind::InvalidData)
        );
        assert_eq!(header, [0; 5]);

        // 17 bytes (tag + content type) is the smallest valid one.
        let mut record = [0u8; 5 + 17];
        record[..5].copy_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x11]);
        let mut gate_bytes = [0; 2];
        let (mut socket, _) = gated(&record, &mut gate_bytes, Phase::Established);
        assert_eq!(block_on(socket.read(&mut header)), Ok(5));
        let mut body = [0u8; 17];
        assert_eq!(block_on(socket.read(&mut body)), Ok(17));
    }

    #[test]
    fn records_are_handed_over_header_then_whole_body() {
        let mut stream = [0u8; 5 + 17 + 5 + 18];
        stream[..5].copy_from_slice(&[0x17, 0x03, 0x03, 0x00, 17]);
        stream[5..22].copy_from_slice(&[3; 17]);
        stream[22..27].copy_from_slice(&[0x17, 0x03, 0x03, 0x00, 18]);
        let mut gate_bytes = [0; 2];
        let (mut socket, _) = gated(&stream, &mut gate_bytes, Phase::Established);
        let mut header = [0u8; 5];
        assert_eq!(block_on(socket.read(&mut header)), Ok(5));
        assert_eq!(header, [0x17, 0x03, 0x03, 0x00, 17]);
        let mut body = [0u8; 17];
        assert_eq!(block_on(socket.read(&mut body)), Ok(17));
        assert_eq!(body, [3; 17]);
        assert_eq!(block_on(socket.read(&mut header)), Ok(5));
        // A request that is not the whole body is refused (not 0.19's pattern).
        let mut short = [0u8; 1];
        assert_eq!(
            block_on(socket.read(&mut short)),
            Err(ErrorKind::Unsupported)
        );
    }

    /// An unencrypted record after the handshake (here an empty
    /// EncryptedExtensions, which made embedded-tls 0.19 panic) never
    /// reaches embedded-tls: the read fails, the gate names the record, and
    /// every later read fails too.
    #[test]
    fn an_unencrypted_record_after_the_handshake_never_reaches_embedded_tls() {
        let stream = [
            0x16, 0x03, 0x03, 0x00, 0x06, 0x08, 0x00, 0x00, 0x02, 0x00, 0x00,
        ];
        let mut gate_bytes = [0; 2];
        let (mut socket, gate) = gated(&stream, &mut gate_bytes, Phase::Established);
        let mut header = [0u8; 5];
        assert_eq!(
            block_on(socket.read(&mut header)),
            Err(ErrorKind::InvalidData)
        );
        assert_eq!(header, [0; 5], "nothing handed over");
        assert_eq!(
            gate.refusal(),
            Some(Refusal {
                content_type: 22,
                after_handshake: true
            })
        );
        assert_eq!(
            block_on(socket.read(&mut header)),
            Err(ErrorKind::InvalidData)
        );
    }

    /// ServerHello moves the gate on; after it, the server's flight must be
    /// encrypted (here a plaintext EncryptedExtensions is refused), but the
    /// compatibility change_cipher_spec passes.
    #[test]
    fn server_hello_opens_the_encrypted_phase() {
        let mut stream = [0u8; 5 + 42 + 6 + 11];
        stream[..5].copy_from_slice(&[0x16, 0x03, 0x03, 0x00, 42]);
        // ServerHello: type 2, length 38, version, random, one more byte.
        stream[5..9].copy_from_slice(&[2, 0, 0, 38]);
        stream[9..11].copy_from_slice(&[3, 3]);
        stream[47..53].copy_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
        stream[53..].copy_from_slice(&[
            0x16, 0x03, 0x03, 0x00, 0x06, 0x08, 0x00, 0x00, 0x02, 0x00, 0x00,
        ]);
        let mut gate_bytes = [0; 2];
        let (mut socket, gate) = gated(&stream, &mut gate_bytes, Phase::AwaitingServerHello);
        let mut header = [0u8; 5];
        let mut hello = [0u8; 42];
        assert_eq!(block_on(socket.read(&mut header)), Ok(5));
        assert_eq!(block_on(socket.read(&mut hello)), Ok(42));
        assert_eq!(gate.phase(), Phase::Handshake);
        let mut ccs = [0u8; 1];
        assert_eq!(block_on(socket.read(&mut header)), Ok(5));
        assert_eq!(block_on(socket.read(&mut ccs)), Ok(1));
        assert_eq!(gate.refusal(), None);
        assert_eq!(
            block_on(socket.read(&mut header)),
            Err(ErrorKind::InvalidData)
        );
        assert_eq!(
            gate.refusal(),
            Some(Refusal {
                content_type: 22,
                after_handshake: false
            })
        );
    }

    /// A handshake record before ServerHello is read whole before the gate
    /// decides: a plaintext flight behind the ServerHello is refused before
    /// embedded-tls gets the body.
    #[test]
    fn a_plaintext_flight_behind_server_hello_is_refused() {
        let mut stream = [0u8; 5 + 48];
        stream[..5].copy_from_slice(&[0x16, 0x03, 0x03, 0x00, 48]);
        stream[5..9].copy_from_slice(&[2, 0, 0, 38]);
        stream[47..53].copy_from_slice(&[8, 0, 0, 2, 0, 0]);
        let mut gate_bytes = [0; 2];
        let (mut socket, gate) = gated(&stream, &mut gate_bytes, Phase::AwaitingServerHello);
        let mut header = [0u8; 5];
        let mut body = [0u8; 48];
        assert_eq!(block_on(socket.read(&mut header)), Ok(5));
        assert_eq!(
            block_on(socket.read(&mut body)),
            Err(ErrorKind::InvalidData)
        );
        assert_eq!(gate.phase(), Phase::AwaitingServerHello);
        assert!(gate.refusal().is_some());
    }
}
