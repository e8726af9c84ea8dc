//! Encoding of the packets a client sends (MQTT 3.1.1 §3). CONNECT goes
//! through mqttrs. PUBLISH, the acknowledgements, SUBSCRIBE and
//! UNSUBSCRIBE are written here: PUBLISH is on every message's path and
//! mqttrs copies its payload byte by byte, and mqttrs holds at most five
//! topics per SUBSCRIBE without `std`. The property tests check these
//! encoders byte for byte against mqttrs.
//!
//! Every function computes the exact size first and fails with
//! [`EncodeError`] before writing anything if it does not fit.

use super::frame::FixedHeader;
use super::{PacketId, QoS};

/// Why a packet could not be encoded; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The packet does not fit the buffer.
    BufferTooSmall {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes available.
        capacity: usize,
    },
    /// A string or binary field is longer than its 16-bit length prefix
    /// allows (65,535 bytes, §1.5.3).
    FieldTooLong {
        /// The field's length.
        len: usize,
    },
    /// A QoS 1 or 2 PUBLISH needs a packet identifier.
    MissingPacketId,
}

/// The largest string or binary field (§1.5.3).
const MAX_FIELD: usize = u16::MAX as usize;

/// Checks the length-prefixed fields of a packet before anything is written.
fn check_fields(fields: impl IntoIterator<Item = usize>) -> Result<(), EncodeError> {
    match fields.into_iter().find(|&len| len > MAX_FIELD) {
        Some(len) => Err(EncodeError::FieldTooLong { len }),
        None => Ok(()),
    }
}

/// PINGREQ (§3.12).
pub const PINGREQ: [u8; 2] = [0xC0, 0x00];
/// DISCONNECT (§3.14).
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// The Last Will and Testament (§3.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Will<'a> {
    /// Topic the broker publishes the will to.
    pub topic: &'a str,
    /// The will message.
    pub payload: &'a [u8],
    /// QoS of the will message.
    pub qos: QoS,
    /// Whether the will message is retained.
    pub retain: bool,
}

/// The fields of a CONNECT (§3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Connect<'a> {
    /// Client identifier (§3.1.3.1).
    pub client_id: &'a str,
    /// User name, if any.
    pub username: Option<&'a str>,
    /// Password, if any (§3.1.3.5: only with a user name).
    pub password: Option<&'a [u8]>,
    /// Keep-alive in seconds; 0 disables it (§3.1.2.10).
    pub keep_alive_secs: u16,
    /// Clean session (§3.1.2.4).
    pub clean_session: bool,
    /// Last Will, if any.
    pub will: Option<Will<'a>>,
}

fn check(needed: usize, out: &[u8]) -> Result<(), EncodeError> {
    if needed <= out.len() {
        Ok(())
    } else {
        Err(EncodeError::BufferTooSmall {
            needed,
            capacity: out.len(),
        })
    }
}

fn frame_len(remaining: usize) -> usize {
    FixedHeader::len_for(remaining) + remaining
}

fn mqttrs_qos(qos: QoS) -> mqttrs::QoS {
    match qos {
        QoS::AtMostOnce => mqttrs::QoS::AtMostOnce,
        QoS::AtLeastOnce => mqttrs::QoS::AtLeastOnce,
        QoS::ExactlyOnce => mqttrs::QoS::ExactlyOnce,
    }
}

/// Runs mqttrs's encoder on a buffer known to be large enough.
fn with_mqttrs(
    packet: &mqttrs::Packet<'_>,
    needed: usize,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    check(needed, out)?;
    match mqttrs::encode_slice(packet, out) {
        Ok(written) if written == needed => Ok(written),
        _ => Err(EncodeError::BufferTooSmall {
            needed,
            capacity: out.len(),
        }),
    }
}

/// The size of a CONNECT.
pub fn connect_len(c: &Connect<'_>) -> usize {
    // Protocol name, level, flags, keep-alive (§3.1.2): 10 bytes.
    let mut remaining = 10 + 2 + c.client_id.len();
    if let Some(will) = &c.will {
        remaining += 2 + will.topic.len() + 2 + will.payload.len();
    }
    if let Some(username) = c.username {
        remaining += 2 + username.len();
    }
    if let Some(password) = c.password {
        remaining += 2 + password.len();
    }
    frame_len(remaining)
}

/// Encodes a CONNECT.
pub fn connect(c: &Connect<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    check_fields(
        [
            Some(c.client_id.len()),
            c.username.map(str::len),
            c.password.map(<[u8]>::len),
            c.will.map(|w| w.topic.len()),
            c.will.map(|w| w.payload.len()),
        ]
        .into_iter()
        .flatten(),
    )?;
    let packet = mqttrs::Packet::Connect(mqttrs::Connect {
        protocol: mqttrs::Protocol::MQTT311,
        keep_alive: c.keep_alive_secs,
        client_id: c.client_id,
        clean_session: c.clean_session,
        last_will: c.will.map(|w| mqttrs::LastWill {
            topic: w.topic,
            message: w.payload,
            qos: mqttrs_qos(w.qos),
            retain: w.retain,
        }),
        username: c.username,
        password: c.password,
    });
    with_mqttrs(&packet, connect_len(c), out)
}

/// The size of a PUBLISH.
pub fn publish_len(topic: &str, payload: &[u8], qos: QoS) -> usize {
    let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    frame_len(2 + topic.len() + id_len + payload.len())
}

/// Encodes a PUBLISH (§3.3). `packet_id` must be `Some` exactly for QoS 1 and 2.
pub fn publish(
    topic: &str,
    payload: &[u8],
    qos: QoS,
    packet_id: Option<PacketId>,
    retain: bool,
    dup: bool,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    check_fields([topic.len()])?;
    let id = match (qos, packet_id) {
        (QoS::AtMostOnce, _) => None,
        (_, Some(id)) => Some(id),
        (_, None) => return Err(EncodeError::MissingPacketId),
    };
    // §3.3.1: DUP (bit 3), QoS (bits 2-1), RETAIN (bit 0).
    let first = 0x30 | u8::from(dup) << 3 | (qos as u8) << 1 | u8::from(retain);
    let id_len = if id.is_some() { 2 } else { 0 };
    let mut at = start(first, 2 + topic.len() + id_len + payload.len(), out)?;
    put_string(out, &mut at, topic)?;
    if let Some(id) = id {
        put(out, &mut at, &id.get().to_be_bytes())?;
    }
    put(out, &mut at, payload)?;
    Ok(at)
}

/// An acknowledgement a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Ack {
    /// PUBACK (§3.4), for a QoS 1 PUBLISH.
    Puback,
    /// PUBREC (§3.5), first answer to a QoS 2 PUBLISH.
    Pubrec,
    /// PUBREL (§3.6), answer to PUBREC.
    Pubrel,
    /// PUBCOMP (§3.7), answer to PUBREL.
    Pubcomp,
}

/// Encodes an acknowledgement: always 4 bytes.
pub fn ack(kind: Ack, id: PacketId) -> [u8; 4] {
    let first = match kind {
        Ack::Puback => 0x40,
        Ack::Pubrec => 0x50,
        // PUBREL has flags 0b0010 (§3.6.1).
        Ack::Pubrel => 0x62,
        Ack::Pubcomp => 0x70,
    };
    let [hi, lo] = id.get().to_be_bytes();
    [first, 0x02, hi, lo]
}

fn subscribe_remaining<'f>(filters: impl Iterator<Item = &'f str>) -> usize {
    2 + filters.map(|f| 2 + f.len() + 1).sum::<usize>()
}

fn unsubscribe_remaining<'f>(filters: impl Iterator<Item = &'f str>) -> usize {
    2 + filters.map(|f| 2 + f.len()).sum::<usize>()
}

/// The size of a SUBSCRIBE with these filters.
pub fn subscribe_len<'f>(filters: impl Iterator<Item = &'f str>) -> usize {
    frame_len(subscribe_remaining(filters))
}

/// The size of an UNSUBSCRIBE with these filters.
pub fn unsubscribe_len<'f>(filters: impl Iterator<Item = &'f str>) -> usize {
    frame_len(unsubscribe_remaining(filters))
}

/// Appends bytes at `*at`; the caller checked the total size.
fn put(out: &mut [u8], at: &mut usize, bytes: &[u8]) -> Result<(), EncodeError> {
    let end = *at + bytes.len();
    let capacity = out.len();
    out.get_mut(*at..end)
        .ok_or(EncodeError::BufferTooSmall {
            needed: end,
            capacity,
        })?
        .copy_from_slice(bytes);
    *at = end;
    Ok(())
}

fn put_string(out: &mut [u8], at: &mut usize, s: &str) -> Result<(), EncodeError> {
    let len = u16::try_from(s.len()).map_err(|_| EncodeError::FieldTooLong { len: s.len() })?;
    put(out, at, &len.to_be_bytes())?;
    put(out, at, s.as_bytes())
}

/// Writes a fixed header for `remaining` bytes after checking the whole frame fits.
fn start(first_byte: u8, remaining: usize, out: &mut [u8]) -> Result<usize, EncodeError> {
    let needed = frame_len(remaining);
    check(needed, out)?;
    FixedHeader::encode(first_byte, remaining, out).ok_or(EncodeError::BufferTooSmall {
        needed,
        capacity: out.len(),
    })
}

/// Encodes a SUBSCRIBE (§3.8) with any number of filters.
pub fn subscribe(
    id: PacketId,
    filters: &[(&str, QoS)],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    check_fields(filters.iter().map(|(f, _)| f.len()))?;
    // Flags 0b0010 (§3.8.1).
    let mut at = start(
        0x82,
        subscribe_remaining(filters.iter().map(|(f, _)| *f)),
        out,
    )?;
    put(out, &mut at, &id.get().to_be_bytes())?;
    for (filter, qos) in filters {
        put_string(out, &mut at, filter)?;
        put(out, &mut at, &[*qos as u8])?;
    }
    Ok(at)
}

/// Encodes an UNSUBSCRIBE (§3.10) with any number of filters.
pub fn unsubscribe(id: PacketId, filters: &[&str], out: &mut [u8]) -> Result<usize, EncodeError> {
    check_fields(filters.iter().map(|f| f.len()))?;
    // Flags 0b0010 (§3.10.1).
    let mut at = start(0xA2, unsubscribe_remaining(filters.iter().copied()), out)?;
    put(out, &mut at, &id.get().to_be_bytes())?;
    for filter in filters {
        put_string(out, &mut at, filter)?;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::frame::{Incoming, decode};

    fn pid(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    #[test]
    fn connect_matches_the_specification_example() {
        let c = Connect {
            client_id: "id",
            username: Some("user"),
            password: Some(b"pw"),
            keep_alive_secs: 60,
            clean_session: true,
            will: Some(Will {
                topic: "w",
                payload: b"x",
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
        };
        let mut out = [0u8; 64];
        let n = connect(&c, &mut out).unwrap();
        assert_eq!(n, connect_len(&c));
        assert_eq!(
            &out[..n],
            &[
                0x10,
                30,
                0,
                4,
                b'M',
                b'Q',
                b'T',
                b'T',
                4,
                // user, password, will retain, will QoS 1, will flag, clean session
                0b1110_1110,
                0,
                60,
                0,
                2,
                b'i',
                b'd',
                0,
                1,
                b'w',
                0,
                1,
                b'x',
                0,
                4,
                b'u',
                b's',
                b'e',
                b'r',
                0,
                2,
                b'p',
                b'w'
            ][..]
        );
        assert_eq!(
            connect(&c, &mut out[..n - 1]),
            Err(EncodeError::BufferTooSmall {
                needed: n,
                capacity: n - 1
            })
        );
    }

    #[test]
    fn publish_round_trips_through_the_decoder() {
        let mut out = [0u8; 300];
        let payload = [7u8; 200];
        for (qos, id) in [
            (QoS::AtMostOnce, None),
            (QoS::AtLeastOnce, Some(pid(9))),
            (QoS::ExactlyOnce, Some(pid(65535))),
        ] {
            let n = publish("a/b", &payload, qos, id, true, id.is_some(), &mut out).unwrap();
            assert_eq!(n, publish_len("a/b", &payload, qos));
            let Ok(Incoming::Publish(p)) = decode(&out[..n]) else {
                panic!("decodes")
            };
            assert_eq!(
                (p.topic, p.payload, p.qos, p.packet_id, p.retain, p.dup),
                ("a/b", &payload[..], qos, id, true, id.is_some())
            );
        }
        assert!(publish("t", b"", QoS::AtLeastOnce, None, false, false, &mut out).is_err());
    }

    #[test]
    fn acks() {
        assert_eq!(ack(Ack::Puback, pid(0x0102)), [0x40, 2, 1, 2]);
        assert_eq!(ack(Ack::Pubrel, pid(1)), [0x62, 2, 0, 1]);
    }

    #[test]
    fn subscribe_with_more_filters_than_mqttrs_holds() {
        let filters: [(&str, QoS); 7] = [
            ("a", QoS::AtMostOnce),
            ("b/+", QoS::AtLeastOnce),
            ("c/#", QoS::ExactlyOnce),
            ("d", QoS::AtMostOnce),
            ("e", QoS::AtMostOnce),
            ("f", QoS::AtMostOnce),
            ("g", QoS::AtLeastOnce),
        ];
        let mut out = [0u8; 64];
        let n = subscribe(pid(3), &filters, &mut out).unwrap();
        assert_eq!(n, subscribe_len(filters.iter().map(|f| f.0)));
        assert_eq!(&out[..9], &[0x82, n as u8 - 2, 0, 3, 0, 1, b'a', 0, 0]);
        let n = unsubscribe(pid(4), &["a", "b/+"], &mut out).unwrap();
        assert_eq!(
            &out[..n],
            &[0xA2, 10, 0, 4, 0, 1, b'a', 0, 3, b'b', b'/', b'+']
        );
        assert_eq!(
            subscribe(pid(3), &filters, &mut out[..10]),
            Err(EncodeError::BufferTooSmall {
                needed: 36,
                capacity: 10
            })
        );
    }

    #[test]
    fn long_packets_get_multi_byte_lengths() {
        let payload = vec_of(20_000);
        let mut out = [0u8; 20_100];
        let n = publish("t", &payload, QoS::AtMostOnce, None, false, false, &mut out).unwrap();
        assert_eq!(&out[..4], &[0x30, 0xA3, 0x9C, 0x01]); // 20,003 = 0x4E23
        assert_eq!(n, 4 + 20_003);
    }

    fn vec_of(n: usize) -> [u8; 20_000] {
        let mut a = [0u8; 20_000];
        for (i, b) in a.iter_mut().enumerate().take(n) {
            *b = i as u8;
        }
        a
    }
}
