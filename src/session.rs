//! The client side of an MQTT session (MQTT 3.1.1 §4.1): what must survive
//! a reconnect. Sans-IO: it stores, numbers and matches packets; the
//! [`Client`](crate::client::Client) does the I/O.
//!
//! - QoS 1 and 2 PUBLISH packets stay encoded in a caller-owned outbox until
//!   acknowledged, so after a reconnect they are sent again with DUP = 1,
//!   and PUBREL is sent again for QoS 2 messages the broker has received
//!   (§4.4). Nothing is dropped silently: a full outbox is an error at
//!   publish time.
//! - Packet identifiers are never reused while in flight (§2.3.1).
//! - Incoming QoS 2 messages are remembered by packet identifier from
//!   delivery until PUBREL, so a redelivery is not delivered twice (§4.3.3).

use crate::error::Error;
use crate::mqtt::{PacketId, QoS};
use crate::tls::ReadDeadline;
use heapless::{Deque, Vec};

/// State of one outgoing QoS 1 or 2 message (§4.3.2, §4.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // the states' names in §4.3
pub(crate) enum Outgoing {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    AwaitingPuback,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    AwaitingPubrec,
    /// PUBREL sent, waiting for PUBCOMP (the message itself is no longer kept).
    AwaitingPubcomp,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    id: PacketId,
    state: Outgoing,
    /// The encoded PUBLISH in the outbox (empty once PUBREC arrived).
    offset: usize,
    len: usize,
}

/// What to send again after a reconnect, in the original order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resend {
    /// A stored PUBLISH (outbox range); send with DUP set.
    Publish { offset: usize, len: usize },
    /// PUBREL for this identifier.
    Pubrel(PacketId),
}

/// Session state that outlives connections: in-flight messages, packet
/// identifiers, QoS 2 receive state.
///
/// `N` is the most QoS 1/2 messages in flight each way; the outbox holds
/// their encoded PUBLISH packets (size it for `N` of your messages). It is
/// used as a ring: acknowledgements free bytes without moving the others,
/// and with acknowledgements in order (the usual case) nothing is ever
/// moved; when out-of-order acknowledgements leave no contiguous room for
/// a new message, the stored ones are compacted.
///
/// Against mosquitto, which keeps more QoS 2 messages in flight to a
/// subscriber than its `max_inflight_messages` says after a session resumes
/// (docs/RELIABILITY.md, finding 5), leave a wide margin.
///
/// MQTT 3.1.1 cannot tell the broker how many unreleased QoS 2 messages a
/// client can track: if you subscribe at QoS 2, make `N` at least the
/// broker's in-flight limit (mosquitto: `max_inflight_messages`, 20 by
/// default), or a burst ends the connection with
/// [`Error::Qos2ReceiveWindowFull`] rather than risk a duplicate.
///
/// ```
/// let mut outbox = [0u8; 2048];
/// let session: mqtts::Session<'_, 8> = mqtts::Session::new(&mut outbox);
/// assert_eq!(session.in_flight(), 0);
/// ```
pub struct Session<'s, const N: usize> {
    state: SessionState<'s, N>,
    /// Shared with the TLS socket to bound reads (see [`ReadDeadline`]).
    read_deadline: ReadDeadline,
}

impl<'s, const N: usize> Session<'s, N> {
    /// A new session storing unacknowledged messages in `outbox`.
    pub fn new(outbox: &'s mut [u8]) -> Self {
        Self {
            state: SessionState {
                outbox,
                outbox_used: 0,
                outbox_end: 0,
                completed: Deque::new(),
                in_flight: Vec::new(),
                received_qos2: Vec::new(),
                last_id: 0,
                free_after: 0,
                subscribed: false,
            },
            read_deadline: ReadDeadline::new(),
        }
    }

    /// QoS 1 and 2 messages sent and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.len()
    }

    /// Bytes of the outbox in use.
    pub fn outbox_used(&self) -> usize {
        self.state.outbox_used
    }

    /// Forgets every message in flight, completions not yet reported and
    /// all QoS 2 receive state.
    pub fn clear(&mut self) {
        self.state.clear();
        self.state.completed.clear();
        self.state.subscribed = false;
    }

    /// The state a client mutates, and the deadline its TLS socket reads.
    pub(crate) fn split(&mut self) -> (&mut SessionState<'s, N>, &ReadDeadline) {
        (&mut self.state, &self.read_deadline)
    }
}

/// The mutable part of a [`Session`].
pub(crate) struct SessionState<'s, const N: usize> {
    outbox: &'s mut [u8],
    /// Bytes of the messages in flight.
    outbox_used: usize,
    /// The end of the newest message stored: the next one goes here, or at
    /// the start of the outbox when it wraps (see [`SessionState::place`]).
    /// An acknowledgement costs no copying.
    outbox_end: usize,
    in_flight: Vec<InFlight, N>,
    // A 16-bit length: it keeps `Session<4>` at 112 bytes on 32-bit
    // targets (a connection with full records fits the read buffer + 4 KiB,
    // asserted by perf/size). `N` is at most 65,535 anyway: packet
    // identifiers are 16-bit.
    received_qos2: Vec<PacketId, N, u16>,
    last_id: u16,
    /// How many identifiers after `last_id` are known to be neither in
    /// flight nor waiting in `completed`, so `next_id` can take them
    /// without searching either list (see [`SessionState::next_id`]).
    free_after: u16,
    /// Completions of messages (PUBACK, PUBCOMP) seen while the client
    /// waited for another one, not yet reported by `poll`: kept here, not in
    /// the client, so that a connection lost before `poll` reports them
    /// does not lose the report. At most `N`: a message is either in flight
    /// or here (see `Client::start_publish`).
    completed: Deque<PacketId, N>,
    /// The broker acknowledged `ConnectOptions::subscriptions` (SUBACK) in
    /// the session it keeps now. Until then every connect subscribes, even
    /// when the broker reports a session: it may have created that session
    /// at a CONNECT whose SUBSCRIBE was then lost with the connection.
    subscribed: bool,
}

impl<const N: usize> SessionState<'_, N> {
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    #[cfg(test)]
    fn outbox_used(&self) -> usize {
        self.outbox_used
    }

    pub fn clear(&mut self) {
        self.outbox_used = 0;
        self.outbox_end = 0;
        self.in_flight.clear();
        self.received_qos2.clear();
    }

    /// A packet identifier not in flight, not waiting to be reported as
    /// completed, and not rejected by `busy` (identifiers of
    /// SUBSCRIBE/UNSUBSCRIBE awaiting their acknowledgement).
    ///
    /// Identifiers come into use only by being handed out here, in order
    /// (1, 2, ... 65,535, 1, ...): one handed out now lies behind every
    /// candidate until the numbering wraps round to it. So after one search
    /// of the session's lists, every identifier up to the nearest one still
    /// in use stays free, and `free_after` counts them down without
    /// searching again. With a window of 64 messages that is one search in
    /// ~65,000 identifiers instead of one per message (a linear search over
    /// the window cost 5 % of a QoS 1 message). `busy` is still asked every
    /// time: it is the client's short list of requests.
    pub(crate) fn next_id(&mut self, busy: impl Fn(PacketId) -> bool) -> Option<PacketId> {
        let mut candidate = PacketId::new(self.last_id).map_or(PacketId::new(1)?, PacketId::next);
        if self.free_after > 0 && !busy(candidate) {
            self.free_after -= 1;
            self.last_id = candidate.get();
            return Some(candidate);
        }
        // At most N + a few identifiers are taken: this ends quickly.
        for _ in 0..=u16::MAX {
            if !busy(candidate) && !self.in_use(candidate) {
                self.last_id = candidate.get();
                self.free_after = self.free_run_after(candidate);
                return Some(candidate);
            }
            candidate = candidate.next();
        }
        None
    }

    fn in_use(&self, id: PacketId) -> bool {
        self.in_flight.iter().any(|m| m.id == id) || self.completed.iter().any(|c| *c == id)
    }

    /// How many identifiers follow `taken` before the first one in flight
    /// or in `completed` (`taken` itself is not in either).
    #[inline(never)]
    fn free_run_after(&self, taken: PacketId) -> u16 {
        let taken = taken.get();
        // 65,535 when nothing is in use: every other identifier is free.
        let mut nearest = u16::MAX;
        let in_use = self.in_flight.iter().map(|m| m.id);
        for id in in_use.chain(self.completed.iter().copied()) {
            let id = id.get();
            // How far ahead of `taken` the numbering reaches `id`, over the
            // 65,535 identifiers 1..=65,535: 1..=65,534.
            let ahead = if id > taken {
                id - taken
            } else {
                id.wrapping_sub(taken).wrapping_sub(1)
            };
            nearest = nearest.min(ahead);
        }
        // Every identifier strictly between `taken` and the nearest in use.
        nearest.saturating_sub(1)
    }

    /// Room for one more QoS 1/2 message of `len` encoded bytes?
    pub(crate) fn check_room(&self, len: usize) -> Result<(), Error> {
        if self.in_flight.is_full() {
            return Err(Error::InFlightFull { max: N });
        }
        let available = self.outbox.len() - self.outbox_used;
        if len > available {
            return Err(Error::OutboxFull {
                needed: len,
                available,
                capacity: self.outbox.len(),
            });
        }
        Ok(())
    }

    /// Stores a QoS 1/2 PUBLISH encoded by `encode` into the outbox and
    /// returns where its bytes are (offset, length; see
    /// [`SessionState::stored`]), to be sent. Call [`SessionState::check_room`] first.
    pub(crate) fn store(
        &mut self,
        id: PacketId,
        qos: QoS,
        len: usize,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, Error>,
    ) -> Result<(usize, usize), Error> {
        // `next_id` relies on this: only identifiers it handed out are used.
        debug_assert!(!self.in_use(id), "packet identifier {id} stored twice");
        self.check_room(len)?;
        let offset = match self.place(len) {
            Some(offset) => offset,
            None => {
                self.compact();
                self.outbox_end
            }
        };
        let space = self
            .outbox
            .get_mut(offset..offset + len)
            .ok_or(Error::OutboxFull {
                needed: len,
                available: 0,
                capacity: 0,
            })?;
        let written = encode(space)?;
        let state = match qos {
            QoS::ExactlyOnce => Outgoing::AwaitingPubrec,
            _ => Outgoing::AwaitingPuback,
        };
        self.in_flight
            .push(InFlight {
                id,
                state,
                offset,
                len: written,
            })
            .map_err(|_| Error::InFlightFull { max: N })?;
        self.outbox_used += written;
        self.outbox_end = offset + written;
        Ok((offset, written))
    }

    /// The stored bytes of a resend item.
    pub(crate) fn stored(&self, offset: usize, len: usize) -> &[u8] {
        self.outbox.get(offset..offset + len).unwrap_or_default()
    }

    /// Marks a stored PUBLISH as a duplicate (DUP flag, §3.3.1.1) before resending.
    pub(crate) fn set_dup(&mut self, offset: usize) {
        if let Some(first) = self.outbox.get_mut(offset) {
            *first |= 0b1000;
        }
    }

    /// Everything to resend after a reconnect, oldest first (§4.4).
    pub(crate) fn resends(&self) -> impl Iterator<Item = Resend> + '_ {
        self.in_flight.iter().map(|m| match m.state {
            Outgoing::AwaitingPubcomp => Resend::Pubrel(m.id),
            _ => Resend::Publish {
                offset: m.offset,
                len: m.len,
            },
        })
    }

    fn position(&self, id: PacketId, state: Outgoing) -> Option<usize> {
        self.in_flight
            .iter()
            .position(|m| m.id == id && m.state == state)
    }

    /// Removes a message and its stored bytes.
    fn remove(&mut self, index: usize) {
        let removed = self.in_flight.remove(index);
        self.free_bytes(removed.offset, removed.len);
    }

    /// Frees a message's bytes (its `InFlight` entry is gone or has
    /// `len == 0` already): nothing moves; the end only comes back when the
    /// freed bytes were the last ones.
    fn free_bytes(&mut self, offset: usize, len: usize) {
        if len == 0 {
            return;
        }
        self.outbox_used -= len;
        if offset + len == self.outbox_end {
            self.outbox_end = self.stored_end();
        }
    }

    /// The stored messages, oldest first (those still holding bytes).
    fn stored_messages(&self) -> impl DoubleEndedIterator<Item = &InFlight> {
        self.in_flight.iter().filter(|m| m.len > 0)
    }

    /// The end of the newest stored message (0 when none is stored).
    fn stored_end(&self) -> usize {
        self.stored_messages()
            .next_back()
            .map_or(0, |m| m.offset + m.len)
    }

    /// Where `len` more bytes fit without moving anything, if anywhere.
    ///
    /// The outbox is a ring: messages are stored in `in_flight` order, each
    /// after the previous one, wrapping to the start when the end of the
    /// buffer is reached. The stored bytes run from the oldest message's
    /// offset (`head`) to `outbox_end`, around the end when they wrap.
    /// Acknowledgements come mostly oldest first, so the space they free
    /// is in front of `outbox_end` again once it wraps: with in-order
    /// acknowledgements nothing is ever moved.
    fn place(&self, len: usize) -> Option<usize> {
        let Some(head) = self.stored_messages().next().map(|m| m.offset) else {
            return Some(0);
        };
        let end = self.outbox_end;
        if head < end {
            // [head, end) in use: after it, or wrapped before it.
            if end + len <= self.outbox.len() {
                Some(end)
            } else if len <= head {
                Some(0)
            } else {
                None
            }
        } else if end + len <= head {
            // Wrapped: [head, capacity) and [0, end) in use.
            Some(end)
        } else {
            None
        }
    }

    /// Moves the stored messages to the front of the outbox, oldest first,
    /// closing the gaps that acknowledgements out of order left: needed
    /// only when [`SessionState::place`] finds no contiguous room although
    /// enough bytes are free. A wrapped ring is first rotated so that the
    /// oldest message starts at 0; offsets then grow in `in_flight` order,
    /// so each copy goes backwards or nowhere.
    fn compact(&mut self) {
        let head = self.stored_messages().next().map_or(0, |m| m.offset);
        if head > 0 {
            let capacity = self.outbox.len();
            // `rotate_left(head)` as three reversals: the same bytes, and
            // 0.4 KB less flash than core's rotation (three algorithms).
            if let Some((front, back)) = self.outbox.split_at_mut_checked(head) {
                front.reverse();
                back.reverse();
                self.outbox.reverse();
            }
            for m in self.in_flight.iter_mut().filter(|m| m.len > 0) {
                m.offset = (m.offset + capacity - head) % capacity;
            }
        }
        let mut to = 0;
        for m in self.in_flight.iter_mut().filter(|m| m.len > 0) {
            if m.offset != to {
                self.outbox.copy_within(m.offset..m.offset + m.len, to);
                m.offset = to;
            }
            to += m.len;
        }
        self.outbox_end = to;
    }

    /// PUBACK: a QoS 1 message is complete. `false` if the identifier was
    /// not awaiting one (a late duplicate: ignored, §4.3.2).
    pub(crate) fn on_puback(&mut self, id: PacketId) -> bool {
        match self.position(id, Outgoing::AwaitingPuback) {
            Some(index) => {
                self.remove(index);
                true
            }
            None => false,
        }
    }

    /// PUBREC: the broker has a QoS 2 message; its bytes are dropped and
    /// PUBREL must be sent (also for an unknown identifier, so the broker
    /// can finish).
    pub(crate) fn on_pubrec(&mut self, id: PacketId) {
        if let Some(index) = self.position(id, Outgoing::AwaitingPubrec)
            && let Some(m) = self.in_flight.get(index).copied()
        {
            self.free_bytes(m.offset, m.len);
            if let Some(m) = self.in_flight.get_mut(index) {
                m.state = Outgoing::AwaitingPubcomp;
                m.len = 0;
            }
        }
    }

    /// PUBCOMP: a QoS 2 message is complete.
    pub(crate) fn on_pubcomp(&mut self, id: PacketId) -> bool {
        match self.position(id, Outgoing::AwaitingPubcomp) {
            Some(index) => {
                self.remove(index);
                true
            }
            None => false,
        }
    }

    /// An incoming QoS 2 PUBLISH: `Ok(true)` if it is new (deliver it),
    /// `Ok(false)` if it was delivered before and not yet released.
    pub(crate) fn on_incoming_qos2(&mut self, id: PacketId) -> Result<bool, Error> {
        if self.received_qos2.contains(&id) {
            return Ok(false);
        }
        self.received_qos2
            .push(id)
            .map_err(|_| Error::Qos2ReceiveWindowFull { max: N })?;
        Ok(true)
    }

    /// PUBREL: the broker releases an incoming QoS 2 identifier.
    pub(crate) fn on_pubrel(&mut self, id: PacketId) {
        self.received_qos2.retain(|&r| r != id);
    }

    /// The broker kept no session: incoming QoS 2 state is void (§3.2.2.2).
    /// The broker kept no session: its QoS 2 receive state and its
    /// subscriptions are gone.
    pub(crate) fn forget_incoming(&mut self) {
        self.received_qos2.clear();
        self.subscribed = false;
    }

    /// Completions waiting for `poll` to report them.
    pub(crate) fn completed(&self) -> usize {
        self.completed.len()
    }

    /// A completion for `poll` to report later.
    pub(crate) fn push_completed(&mut self, id: PacketId) {
        // Cannot be full: see the field.
        let _ = self.completed.push_back(id);
    }

    /// The oldest completion not yet reported.
    pub(crate) fn take_completed(&mut self) -> Option<PacketId> {
        self.completed.pop_front()
    }

    /// Whether the subscriptions were acknowledged in the broker's session.
    pub(crate) fn is_subscribed(&self) -> bool {
        self.subscribed
    }

    /// The subscriptions were acknowledged.
    pub(crate) fn set_subscribed(&mut self) {
        self.subscribed = true;
    }
}

impl<const N: usize> core::fmt::Debug for Session<'_, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("in_flight", &self.state.in_flight.len())
            .field("outbox_used", &self.state.outbox_used)
            .field("received_qos2", &self.state.received_qos2.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::encode;

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    fn store<const N: usize>(s: &mut SessionState<'_, N>, qos: QoS, payload: &[u8]) -> PacketId {
        let pid = s.next_id(|_| false).unwrap();
        let len = encode::publish_len("t", payload, qos);
        s.store(pid, qos, len, |out| {
            encode::publish("t", payload, qos, Some(pid), false, false, out).map_err(Error::from)
        })
        .unwrap();
        pid
    }

    #[test]
    fn identifiers_skip_those_in_flight_and_wrap() {
        let mut outbox = [0u8; 256];
        let mut session: Session<'_, 4> = Session::new(&mut outbox);
        let (s, _) = session.split();
        restart_numbering_at(s, 65_534);
        let a = store(s, QoS::AtLeastOnce, b"a");
        let b = store(s, QoS::AtLeastOnce, b"b");
        assert_eq!((a.get(), b.get()), (65_535, 1));
        // 2 is busy elsewhere (a SUBSCRIBE), 3 is next.
        assert_eq!(s.next_id(|i| i.get() == 2), Some(id(3)));
        // Wrap around to 65,535 again: still in flight, so skipped.
        restart_numbering_at(s, 65_534);
        assert_eq!(s.next_id(|_| false), Some(id(2)));
    }

    /// A deterministic generator (an LCG from `seed`): each call returns a
    /// number below its argument.
    fn random_below(mut seed: u32) -> impl FnMut(u32) -> u32 {
        move |bound| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 8) % bound
        }
    }

    /// Moves the numbering as if `last` had just been handed out, forgetting
    /// which identifiers ahead are known to be free.
    fn restart_numbering_at<const N: usize>(s: &mut SessionState<'_, N>, last: u16) {
        s.last_id = last;
        s.free_after = 0;
    }

    /// The first identifier after the last one handed out that is neither
    /// in flight nor in `completed`: what `next_id` must return, found the
    /// slow way.
    fn first_free_after_last<const N: usize>(s: &SessionState<'_, N>) -> PacketId {
        let mut candidate = PacketId::new(s.last_id).map_or(id(1), PacketId::next);
        while s.in_use(candidate) {
            candidate = candidate.next();
        }
        candidate
    }

    /// Over three wraps of the identifier space, with messages completed
    /// out of order, some reported late through `completed` and one message
    /// never acknowledged: every identifier handed out is the one the plain
    /// search would pick, so the one stuck in flight is skipped each time
    /// the numbering comes round to it, and the lists are searched only
    /// a few times per wrap, not once per identifier.
    #[test]
    fn identifiers_without_a_search_each_time_are_those_a_search_finds() {
        let mut outbox = [0u8; 512];
        let mut session: Session<'_, 8> = Session::new(&mut outbox);
        let (s, _) = session.split();
        let stuck = store(s, QoS::AtLeastOnce, b"never acknowledged");
        let mut open: std::vec::Vec<PacketId> = std::vec::Vec::new();
        let mut next = random_below(7);
        let (mut handed_out, mut searches, mut skips_of_stuck) = (0, 0, 0);
        // Bounded: about half the steps hand out an identifier.
        for _ in 0..20 * 65_535 {
            if handed_out == 3 * 65_535 {
                break;
            }
            if s.in_flight() + s.completed() < 8 && (open.len() < 4 || next(2) == 0) {
                let expected = first_free_after_last(s);
                let following = PacketId::new(s.last_id).map(PacketId::next);
                skips_of_stuck += usize::from(following == Some(stuck));
                searches += usize::from(s.free_after == 0);
                let pid = store(s, QoS::AtLeastOnce, b"m");
                assert_eq!(pid, expected);
                assert_ne!(pid, stuck);
                open.push(pid);
                handed_out += 1;
            } else if let Some(pid) =
                (!open.is_empty()).then(|| open.remove(next(open.len() as u32) as usize))
            {
                assert!(s.on_puback(pid));
                // Now and then the completion waits in `completed`, still
                // holding its identifier.
                if next(4) == 0 {
                    s.push_completed(pid);
                }
            }
            if s.completed() > 0 && next(3) == 0 {
                s.take_completed();
            }
        }
        assert_eq!(handed_out, 3 * 65_535);
        assert_eq!(
            skips_of_stuck, 3,
            "the stuck identifier comes round once per wrap"
        );
        assert!(searches <= 8, "{searches} searches in three wraps");
    }

    /// Acknowledgements in any order, messages of every size, the outbox
    /// nearly full: every stored message keeps its exact bytes through the
    /// lazy compaction, and `outbox_used` counts exactly the live bytes.
    #[test]
    fn stored_bytes_survive_acks_in_any_order_and_compaction() {
        let mut outbox = [0u8; 300];
        let mut session: Session<'_, 8> = Session::new(&mut outbox);
        let (s, _) = session.split();
        let mut model: std::vec::Vec<(PacketId, QoS, std::vec::Vec<u8>)> = std::vec::Vec::new();
        let mut next = random_below(12_345);
        let mut compactions_possible = 0;
        for step in 0..5_000u32 {
            if next(2) == 0 {
                let qos = if next(2) == 0 {
                    QoS::AtLeastOnce
                } else {
                    QoS::ExactlyOnce
                };
                let payload: std::vec::Vec<u8> = (0..next(90))
                    .map(|i| (step as u8).wrapping_add(i as u8))
                    .collect();
                let len = encode::publish_len("t", &payload, qos);
                if s.check_room(len).is_ok() {
                    if s.outbox_end + len > s.outbox.len() {
                        compactions_possible += 1;
                    }
                    let pid = s.next_id(|_| false).unwrap();
                    s.store(pid, qos, len, |out| {
                        encode::publish("t", &payload, qos, Some(pid), false, false, out)
                            .map_err(Error::from)
                    })
                    .unwrap();
                    model.push((pid, qos, payload));
                }
            } else if !model.is_empty() {
                let (pid, qos, _) = model.remove(next(model.len() as u32) as usize);
                match qos {
                    QoS::AtLeastOnce => assert!(s.on_puback(pid)),
                    _ => {
                        s.on_pubrec(pid);
                        assert!(s.on_pubcomp(pid));
                    }
                }
            }
            let mut expected_used = 0;
            for (m, (pid, qos, payload)) in s.in_flight.iter().zip(&model) {
                assert_eq!(m.id, *pid);
                let mut want = [0u8; 128];
                let n = encode::publish("t", payload, *qos, Some(*pid), false, false, &mut want)
                    .unwrap();
                assert_eq!(s.stored(m.offset, m.len), &want[..n], "step {step}");
                expected_used += n;
            }
            assert_eq!(s.in_flight.len(), model.len());
            assert_eq!(s.outbox_used, expected_used, "step {step}");
            assert!(s.outbox_end <= s.outbox.len());
        }
        assert!(
            compactions_possible > 50,
            "{compactions_possible} compactions"
        );
    }

    /// An outbox sized for exactly `N` messages, acknowledged oldest first
    /// (a pipelining publisher): the ring reuses the freed front, and no
    /// stored message is ever moved.
    #[test]
    fn in_order_acknowledgements_never_move_stored_messages() {
        let len = encode::publish_len("t", b"0123456789", QoS::AtLeastOnce);
        let mut outbox = [0u8; 4 * 17];
        assert_eq!(len, 17);
        let mut session: Session<'_, 4> = Session::new(&mut outbox);
        let (s, _) = session.split();
        let mut offsets = std::collections::VecDeque::new();
        for round in 0..40 {
            if s.in_flight() == 4 {
                let oldest = s.in_flight[0].id;
                assert!(s.on_puback(oldest));
                offsets.pop_front();
            }
            store(s, QoS::AtLeastOnce, b"0123456789");
            offsets.push_back(s.in_flight.last().unwrap().offset);
            // Every message still where it was stored.
            let now: std::vec::Vec<usize> = s.in_flight.iter().map(|m| m.offset).collect();
            assert_eq!(
                now,
                offsets.iter().copied().collect::<std::vec::Vec<_>>(),
                "round {round}"
            );
        }
        // The ring went round: offsets were reused.
        assert_eq!(s.in_flight[0].offset % 17, 0);
    }

    #[test]
    fn acknowledgements_free_the_outbox_and_keep_order() {
        let mut outbox = [0u8; 256];
        let mut session: Session<'_, 4> = Session::new(&mut outbox);
        let (s, _) = session.split();
        let a = store(s, QoS::AtLeastOnce, b"first");
        let b = store(s, QoS::ExactlyOnce, b"second");
        let c = store(s, QoS::AtLeastOnce, b"third");
        let used = s.outbox_used();
        assert!(s.on_puback(a));
        assert!(!s.on_puback(a), "a second PUBACK is ignored");
        assert!(!s.on_puback(b), "PUBACK does not complete a QoS 2 message");
        assert_eq!(
            s.outbox_used(),
            used - encode::publish_len("t", b"first", QoS::AtLeastOnce)
        );
        s.on_pubrec(b);
        assert_eq!(
            s.outbox_used(),
            encode::publish_len("t", b"third", QoS::AtLeastOnce)
        );
        // After a reconnect: PUBREL for b, then c again (with its bytes intact).
        let resends: std::vec::Vec<Resend> = s.resends().collect();
        assert_eq!(resends[0], Resend::Pubrel(b));
        let Resend::Publish { offset, len } = resends[1] else {
            panic!()
        };
        s.set_dup(offset);
        let Ok(crate::mqtt::Incoming::Publish(p)) =
            crate::mqtt::frame::decode(s.stored(offset, len))
        else {
            panic!()
        };
        assert_eq!(
            (p.payload, p.packet_id, p.dup),
            (&b"third"[..], Some(c), true)
        );
        assert!(s.on_pubcomp(b));
        assert!(s.on_puback(c));
        assert_eq!((s.in_flight(), s.outbox_used()), (0, 0));
    }

    #[test]
    fn full_outbox_or_window_is_an_error_not_a_drop() {
        let mut outbox = [0u8; 20];
        let mut session: Session<'_, 2> = Session::new(&mut outbox);
        let (s, _) = session.split();
        assert!(matches!(
            s.check_room(21),
            Err(Error::OutboxFull {
                needed: 21,
                available: 20,
                capacity: 20
            })
        ));
        store(s, QoS::AtLeastOnce, b"");
        store(s, QoS::AtLeastOnce, b"");
        assert_eq!(s.check_room(1), Err(Error::InFlightFull { max: 2 }));
    }

    #[test]
    fn incoming_qos2_is_delivered_once_until_released() {
        let mut outbox = [0u8; 0];
        let mut session: Session<'_, 2> = Session::new(&mut outbox);
        let (s, _) = session.split();
        assert_eq!(s.on_incoming_qos2(id(7)), Ok(true));
        assert_eq!(s.on_incoming_qos2(id(7)), Ok(false));
        s.on_pubrel(id(7));
        assert_eq!(s.on_incoming_qos2(id(7)), Ok(true));
        assert_eq!(s.on_incoming_qos2(id(8)), Ok(true));
        assert_eq!(
            s.on_incoming_qos2(id(9)),
            Err(Error::Qos2ReceiveWindowFull { max: 2 })
        );
    }
}
