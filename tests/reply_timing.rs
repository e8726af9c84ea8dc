//! When the client's own replies (PINGREQ, acknowledgements) leave, on a
//! scripted transport with a virtual clock: the broker's bytes arrive at
//! set times, and every flush is recorded with the time it happened.
//! Deterministic cases that a real socket can only hit by chance (bytes
//! landing exactly at a deadline).

use mqtts::client::{Client, ConnectOptions, Event};
use mqtts::mqtt::QoS;
use mqtts::time::{Millis, Timer};
use mqtts::transport::Transport;
use mqtts::{Error, Session};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

/// The virtual clock, shared by the transport and the timer.
#[derive(Clone, Default)]
struct Clock(Rc<Cell<Millis>>);

impl Timer for Clock {
    fn now(&self) -> Millis {
        self.0.get()
    }

    /// The transport moves the clock; nothing waits for real.
    async fn sleep_until(&mut self, _: Millis) {}
}

/// What the transport saw the client do.
#[derive(Default)]
struct Wire {
    /// Written and not yet flushed.
    pending: Vec<u8>,
    /// Each flush: when, and the bytes it sent.
    flushed: Vec<(Millis, Vec<u8>)>,
}

/// Bytes from the broker, each available from a time on. A read that
/// would wait past its deadline moves the clock to the deadline and
/// reports it; otherwise the clock moves to the next arrival. Bytes that
/// arrive exactly at a deadline are there for the next read, not this one.
struct Scripted {
    clock: Clock,
    incoming: VecDeque<(Millis, Vec<u8>)>,
    wire: Rc<RefCell<Wire>>,
}

impl Transport for Scripted {
    async fn read_before(
        &mut self,
        buf: &mut [u8],
        deadline: Millis,
    ) -> Result<Option<usize>, Error> {
        let now = self.clock.now();
        let Some((at, bytes)) = self.incoming.front_mut() else {
            // Nothing more ever arrives.
            self.clock.0.set(now.max(deadline));
            return Ok(None);
        };
        if *at > now && *at >= deadline {
            self.clock.0.set(now.max(deadline));
            return Ok(None);
        }
        self.clock.0.set(now.max(*at));
        let n = buf.len().min(bytes.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        bytes.drain(..n);
        if bytes.is_empty() {
            self.incoming.pop_front();
        }
        Ok(Some(n))
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.wire.borrow_mut().pending.extend_from_slice(bytes);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let mut wire = self.wire.borrow_mut();
        let sent = std::mem::take(&mut wire.pending);
        wire.flushed.push((self.clock.now(), sent));
        Ok(())
    }
}

const CONNACK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];
const PINGREQ: [u8; 2] = [0xC0, 0x00];

fn qos0_publish(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![
        0x30,
        (2 + topic.len() + payload.len()) as u8,
        0,
        topic.len() as u8,
    ];
    packet.extend_from_slice(topic.as_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// When the client flushed `packet` (as the whole of one flush or inside one).
fn flushed_at(wire: &Wire, packet: &[u8]) -> Option<Millis> {
    wire.flushed
        .iter()
        .find(|(_, bytes)| bytes.windows(packet.len()).any(|w| w == packet))
        .map(|(at, _)| *at)
}

/// Connects (CONNACK first in `incoming`), polls once, hands the event to
/// `check`, and asserts that nothing stayed queued when `poll` returned.
/// Returns the clock and what went on the wire.
fn connect_and_poll_once(
    incoming: Vec<(Millis, Vec<u8>)>,
    rx_len: usize,
    keep_alive_secs: u16,
    check: impl FnOnce(Event<'_>),
) -> (Clock, Rc<RefCell<Wire>>) {
    let clock = Clock::default();
    let wire = Rc::new(RefCell::new(Wire::default()));
    let transport = Scripted {
        clock: clock.clone(),
        incoming: incoming.into(),
        wire: Rc::clone(&wire),
    };
    let mut outbox = [0u8; 256];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let (mut rx, mut tx) = (vec![0u8; rx_len], [0u8; 64]);
    let options = ConnectOptions::new("timing").with_keep_alive(keep_alive_secs);
    embassy_futures::block_on(async {
        let (mut client, _) = Client::connect(
            transport,
            clock.clone(),
            &mut session,
            &mut rx,
            &mut tx,
            &options,
        )
        .await
        .expect("connect");
        check(client.poll().await.expect("poll"));
        assert!(!client.has_unsent(), "something is still queued");
    });
    (clock, wire)
}

/// Keep-alive 10 s and nothing sent since CONNECT at 0: the read times out
/// at 10 s, PINGREQ is due, and a message is at hand at that very moment.
/// PINGREQ must leave at 10 s, not wait in the buffer until the
/// application's next call (the broker drops a client it has not heard
/// from for 1.5 intervals).
#[test]
fn a_pingreq_leaves_at_once_even_when_a_message_arrives_with_it() {
    let incoming = vec![(0, CONNACK.to_vec()), (10_000, qos0_publish("a/b", b"hi"))];
    let (clock, wire) = connect_and_poll_once(incoming, 128, 10, |event| match event {
        Event::Message(message) => {
            assert_eq!((message.topic, message.payload), ("a/b", &b"hi"[..]));
            assert_eq!(message.qos, QoS::AtMostOnce);
        }
        other => panic!("{other:?}"),
    });
    let wire = wire.borrow();
    assert_eq!(
        flushed_at(&wire, &PINGREQ),
        Some(10_000),
        "flushes: {:?}",
        wire.flushed
    );
    assert_eq!(clock.now(), 10_000);
}

/// A QoS 1 message too large for `rx` is skipped: its PUBACK has left
/// when `poll` reports it, so that a connection lost before the next call
/// does not make the broker send it (and `poll` report it) again.
#[test]
fn the_puback_of_a_skipped_message_has_left_when_poll_reports_it() {
    // PUBLISH QoS 1, topic "big", id 0x0102, 100 bytes of payload.
    let mut big = vec![0x32, 2 + 3 + 2 + 100, 0, 3, b'b', b'i', b'g', 0x01, 0x02];
    big.extend_from_slice(&[7; 100]);
    let incoming = vec![(0, CONNACK.to_vec()), (5, big)];
    let (_, wire) = connect_and_poll_once(incoming, 64, 60, |event| match event {
        Event::MessageTooLarge {
            size, packet_id, ..
        } => {
            assert_eq!(size, 109);
            assert_eq!(packet_id.map(|id| id.get()), Some(0x0102));
        }
        other => panic!("{other:?}"),
    });
    let wire = wire.borrow();
    assert_eq!(
        flushed_at(&wire, &[0x40, 0x02, 0x01, 0x02]),
        Some(5),
        "flushes: {:?}",
        wire.flushed
    );
}
