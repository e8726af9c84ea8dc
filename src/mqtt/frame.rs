//! MQTT 3.1.1 framing (§2.2): the fixed header, the remaining length, and
//! the exact length and flag rules of every packet a broker may send a
//! client.
//!
//! mqttrs 0.4.1 panics on short frames and accepts wrong fixed lengths, so
//! no byte from the network reaches it before [`decode`] has checked the
//! whole frame: its type and flags, its length, and that every inner length
//! stays inside it. Parsing is zero-copy: topics and payloads borrow the
//! frame.

use super::{PacketId, ProtocolError, QoS};

/// The largest remaining length four bytes can encode (§2.2.3).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// MQTT control packet types (§2.2.1, table 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)] // the names are the specification's
pub enum PacketType {
    Connect = 1,
    Connack = 2,
    Publish = 3,
    Puback = 4,
    Pubrec = 5,
    Pubrel = 6,
    Pubcomp = 7,
    Subscribe = 8,
    Suback = 9,
    Unsubscribe = 10,
    Unsuback = 11,
    Pingreq = 12,
    Pingresp = 13,
    Disconnect = 14,
}

impl PacketType {
    /// The type in the high nibble of a fixed header's first byte; 0 and 15
    /// are reserved.
    pub const fn from_nibble(nibble: u8) -> Option<Self> {
        Some(match nibble {
            1 => Self::Connect,
            2 => Self::Connack,
            3 => Self::Publish,
            4 => Self::Puback,
            5 => Self::Pubrec,
            6 => Self::Pubrel,
            7 => Self::Pubcomp,
            8 => Self::Subscribe,
            9 => Self::Suback,
            10 => Self::Unsubscribe,
            11 => Self::Unsuback,
            12 => Self::Pingreq,
            13 => Self::Pingresp,
            14 => Self::Disconnect,
            _ => return None,
        })
    }
}

/// A parsed fixed header (§2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FixedHeader {
    /// The packet type.
    pub packet_type: PacketType,
    /// The low nibble of the first byte.
    pub flags: u8,
    /// Bytes after the fixed header.
    pub remaining_len: usize,
    /// Bytes of the fixed header itself (2 to 5).
    pub header_len: usize,
}

impl FixedHeader {
    /// The whole frame's length.
    pub const fn frame_len(&self) -> usize {
        self.header_len + self.remaining_len
    }

    /// Reads a fixed header from the start of `bytes`: `Ok(None)` if more
    /// bytes are needed to know it.
    ///
    /// Only the type (not reserved) and the remaining length (at most four
    /// bytes, §2.2.3) are checked here; [`decode`] checks the rest.
    pub fn parse(bytes: &[u8]) -> Result<Option<Self>, ProtocolError> {
        let Some(&first) = bytes.first() else {
            return Ok(None);
        };
        let packet_type = PacketType::from_nibble(first >> 4)
            .ok_or(ProtocolError::ReservedPacketType(first >> 4))?;
        let mut remaining_len = 0usize;
        for i in 0..4 {
            let Some(&byte) = bytes.get(1 + i) else {
                return Ok(None);
            };
            remaining_len |= usize::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(Some(Self {
                    packet_type,
                    flags: first & 0x0F,
                    remaining_len,
                    header_len: 2 + i,
                }));
            }
        }
        Err(ProtocolError::MalformedRemainingLength)
    }

    /// Encodes a fixed header into `out`, returning its length.
    pub fn encode(first_byte: u8, remaining_len: usize, out: &mut [u8]) -> Option<usize> {
        if remaining_len > MAX_REMAINING_LENGTH {
            return None;
        }
        let mut len = remaining_len;
        let mut written = 1;
        *out.first_mut()? = first_byte;
        loop {
            let mut byte = (len % 128) as u8;
            len /= 128;
            if len > 0 {
                byte |= 0x80;
            }
            *out.get_mut(written)? = byte;
            written += 1;
            if len == 0 {
                return Some(written);
            }
        }
    }

    /// Bytes the fixed header of a packet with this remaining length takes.
    pub const fn len_for(remaining_len: usize) -> usize {
        match remaining_len {
            0..=127 => 2,
            128..=16_383 => 3,
            16_384..=2_097_151 => 4,
            _ => 5,
        }
    }
}

/// A CONNACK return code (§3.2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConnackCode {
    /// 0: connection accepted.
    Accepted,
    /// 1: the broker does not support MQTT 3.1.1.
    UnacceptableProtocolVersion,
    /// 2: the client identifier is not allowed.
    IdentifierRejected,
    /// 3: the MQTT service is unavailable.
    ServerUnavailable,
    /// 4: malformed user name or password.
    BadUserNameOrPassword,
    /// 5: the client is not authorized to connect.
    NotAuthorized,
}

impl ConnackCode {
    const fn from_u8(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Accepted,
            1 => Self::UnacceptableProtocolVersion,
            2 => Self::IdentifierRejected,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNameOrPassword,
            5 => Self::NotAuthorized,
            _ => return None,
        })
    }

    /// The code on the wire.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// One SUBACK return code (§3.9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SubackCode {
    /// The subscription was granted at this maximum QoS.
    Granted(QoS),
    /// 0x80: the subscription was refused.
    Failure,
}

/// An incoming PUBLISH (§3.3), borrowing its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Publish<'a> {
    /// The topic name.
    pub topic: &'a str,
    /// The application message.
    pub payload: &'a [u8],
    /// The QoS it was sent with.
    pub qos: QoS,
    /// Its packet identifier (QoS 1 and 2 only).
    pub packet_id: Option<PacketId>,
    /// DUP: the broker may have sent it before (§3.3.1.1).
    pub dup: bool,
    /// RETAIN: a retained message, sent because of a new subscription (§3.3.1.3).
    pub retain: bool,
}

/// A packet a broker may send to a client, parsed from one validated frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Incoming<'a> {
    /// CONNACK (§3.2).
    Connack {
        /// The broker kept a session for this client id (§3.2.2.2).
        session_present: bool,
        /// The return code.
        code: ConnackCode,
    },
    /// PUBLISH (§3.3).
    Publish(Publish<'a>),
    /// PUBACK (§3.4).
    Puback(PacketId),
    /// PUBREC (§3.5).
    Pubrec(PacketId),
    /// PUBREL (§3.6).
    Pubrel(PacketId),
    /// PUBCOMP (§3.7).
    Pubcomp(PacketId),
    /// SUBACK (§3.9): one return code byte per filter, in order.
    Suback {
        /// The SUBSCRIBE it answers.
        packet_id: PacketId,
        /// The raw return codes; see [`SubackCode`].
        codes: &'a [u8],
    },
    /// UNSUBACK (§3.11).
    Unsuback(PacketId),
    /// PINGRESP (§3.13).
    Pingresp,
}

/// Reads the SUBACK return code at `index` (§3.9.3).
pub fn suback_code(code: u8) -> Result<SubackCode, ProtocolError> {
    match code {
        0 => Ok(SubackCode::Granted(QoS::AtMostOnce)),
        1 => Ok(SubackCode::Granted(QoS::AtLeastOnce)),
        2 => Ok(SubackCode::Granted(QoS::ExactlyOnce)),
        0x80 => Ok(SubackCode::Failure),
        other => Err(ProtocolError::InvalidSubackCode(other)),
    }
}

fn packet_id(packet: PacketType, hi: u8, lo: u8) -> Result<PacketId, ProtocolError> {
    PacketId::new(u16::from_be_bytes([hi, lo])).ok_or(ProtocolError::PacketIdZero(packet))
}

/// Checks and parses exactly one frame from a broker.
///
/// Every rule of §2 and §3 that concerns a packet a client receives is
/// checked: reserved flags (§2.2.2), fixed lengths, inner lengths, UTF-8
/// topic names without wildcards or U+0000 (§1.5.3, §4.7), non-zero packet
/// identifiers (§2.3.1), CONNACK and SUBACK codes. Packets only a client may
/// send (CONNECT, SUBSCRIBE, ...) are [`ProtocolError::UnexpectedPacket`].
pub fn decode(frame: &[u8]) -> Result<Incoming<'_>, ProtocolError> {
    let header = FixedHeader::parse(frame)?.ok_or(ProtocolError::Truncated)?;
    let body = frame
        .get(header.header_len..)
        .filter(|body| body.len() == header.remaining_len)
        .ok_or(ProtocolError::Truncated)?;
    let packet = header.packet_type;
    let expect_flags = |flags: u8| {
        if header.flags == flags {
            Ok(())
        } else {
            Err(ProtocolError::InvalidFlags {
                packet,
                flags: header.flags,
            })
        }
    };
    let expect_len = |len: usize| {
        if body.len() == len {
            Ok(())
        } else {
            Err(ProtocolError::WrongLength {
                packet,
                expected: len,
                found: body.len(),
            })
        }
    };

    // One pass per type: flags, length, then the fields (every field read
    // below is in bounds and checked; mqttrs stays the oracle of the
    // property tests).
    let id = |hi: u8, lo: u8| packet_id(packet, hi, lo);
    match packet {
        PacketType::Connack => {
            expect_flags(0)?;
            expect_len(2)?;
            let [flags, code] = *body else {
                return Err(ProtocolError::Truncated);
            };
            // Bits 7-1 of the acknowledge flags are reserved (§3.2.2.1).
            if flags & 0xFE != 0 {
                return Err(ProtocolError::InvalidConnackFlags(flags));
            }
            let code = ConnackCode::from_u8(code).ok_or(ProtocolError::InvalidConnackCode(code))?;
            // A refusal must not claim a session (§3.2.2.2).
            if code != ConnackCode::Accepted && flags != 0 {
                return Err(ProtocolError::InvalidConnackFlags(flags));
            }
            Ok(Incoming::Connack {
                session_present: flags & 1 == 1,
                code,
            })
        }
        // Checked field by field while it is read.
        PacketType::Publish => validate_publish(header.flags, body).map(Incoming::Publish),
        PacketType::Puback
        | PacketType::Pubrec
        | PacketType::Pubrel
        | PacketType::Pubcomp
        | PacketType::Unsuback => {
            // PUBREL has flags 0b0010 (§3.6.1), the others 0.
            expect_flags(if packet == PacketType::Pubrel {
                0b0010
            } else {
                0
            })?;
            expect_len(2)?;
            let [hi, lo] = *body else {
                return Err(ProtocolError::Truncated);
            };
            let id = id(hi, lo)?;
            Ok(match packet {
                PacketType::Puback => Incoming::Puback(id),
                PacketType::Pubrec => Incoming::Pubrec(id),
                PacketType::Pubrel => Incoming::Pubrel(id),
                PacketType::Pubcomp => Incoming::Pubcomp(id),
                _ => Incoming::Unsuback(id),
            })
        }
        PacketType::Suback => {
            expect_flags(0)?;
            let [hi, lo, ref codes @ ..] = *body else {
                return Err(ProtocolError::WrongLength {
                    packet,
                    expected: 3,
                    found: body.len(),
                });
            };
            if codes.is_empty() {
                return Err(ProtocolError::WrongLength {
                    packet,
                    expected: 3,
                    found: body.len(),
                });
            }
            for &code in codes {
                suback_code(code)?;
            }
            Ok(Incoming::Suback {
                packet_id: id(hi, lo)?,
                codes,
            })
        }
        PacketType::Pingresp => {
            expect_flags(0)?;
            expect_len(0)?;
            Ok(Incoming::Pingresp)
        }
        PacketType::Connect
        | PacketType::Subscribe
        | PacketType::Unsubscribe
        | PacketType::Pingreq
        | PacketType::Disconnect => Err(ProtocolError::UnexpectedPacket(packet)),
    }
}

/// §3.3: flags carry DUP, QoS and RETAIN; the body is a topic name, a
/// packet identifier for QoS 1 and 2, and the payload.
fn validate_publish(flags: u8, body: &[u8]) -> Result<Publish<'_>, ProtocolError> {
    let packet = PacketType::Publish;
    let qos = match (flags >> 1) & 0b11 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        // "MUST NOT have both QoS bits set to 1" [MQTT-3.3.1-4].
        _ => return Err(ProtocolError::InvalidFlags { packet, flags }),
    };
    let dup = flags & 0b1000 != 0;
    // DUP must be 0 for QoS 0 [MQTT-3.3.1-2].
    if qos == QoS::AtMostOnce && dup {
        return Err(ProtocolError::InvalidFlags { packet, flags });
    }
    let [hi, lo, rest @ ..] = body else {
        return Err(ProtocolError::WrongLength {
            packet,
            expected: 2,
            found: body.len(),
        });
    };
    let topic_len = usize::from(u16::from_be_bytes([*hi, *lo]));
    let (topic, rest) = rest
        .split_at_checked(topic_len)
        .ok_or(ProtocolError::FieldOutOfBounds(packet))?;
    let topic = super::topic::validate_name_bytes(topic).map_err(ProtocolError::InvalidTopic)?;
    let (packet_id, payload) = match (qos, rest) {
        (QoS::AtMostOnce, payload) => (None, payload),
        (_, [hi, lo, payload @ ..]) => (Some(packet_id(packet, *hi, *lo)?), payload),
        _ => return Err(ProtocolError::FieldOutOfBounds(packet)),
    };
    Ok(Publish {
        topic,
        payload,
        qos,
        packet_id,
        dup,
        retain: flags & 1 == 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::TopicError;

    fn pid(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    #[test]
    fn fixed_header_lengths_at_the_boundaries() {
        for (bytes, len, header_len) in [
            (&[0x30, 0x00][..], 0, 2),
            (&[0x30, 0x7F], 127, 2),
            (&[0x30, 0x80, 0x01], 128, 3),
            (&[0x30, 0xFF, 0x7F], 16_383, 3),
            (&[0x30, 0x80, 0x80, 0x01], 16_384, 4),
            (&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], MAX_REMAINING_LENGTH, 5),
        ] {
            let header = FixedHeader::parse(bytes).unwrap().unwrap();
            assert_eq!((header.remaining_len, header.header_len), (len, header_len));
            assert_eq!(FixedHeader::len_for(len), header_len);
            let mut out = [0u8; 5];
            assert_eq!(FixedHeader::encode(0x30, len, &mut out), Some(header_len));
            assert_eq!(&out[..header_len], bytes);
        }
        assert_eq!(FixedHeader::parse(&[]), Ok(None));
        assert_eq!(FixedHeader::parse(&[0x30]), Ok(None));
        assert_eq!(FixedHeader::parse(&[0x30, 0x80, 0x80]), Ok(None));
        assert_eq!(
            FixedHeader::parse(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(ProtocolError::MalformedRemainingLength)
        );
        assert_eq!(
            FixedHeader::parse(&[0x00, 0x00]),
            Err(ProtocolError::ReservedPacketType(0))
        );
        assert_eq!(
            FixedHeader::parse(&[0xF0, 0x00]),
            Err(ProtocolError::ReservedPacketType(15))
        );
    }

    /// Every input the task lists as a mqttrs panic or a wrong length accepted.
    #[test]
    fn frames_that_crash_or_fool_mqttrs_are_protocol_errors() {
        use PacketType as P;
        for (frame, expected) in [
            (
                &[0x20, 0x00][..],
                ProtocolError::WrongLength {
                    packet: P::Connack,
                    expected: 2,
                    found: 0,
                },
            ),
            (
                &[0x40, 0x00],
                ProtocolError::WrongLength {
                    packet: P::Puback,
                    expected: 2,
                    found: 0,
                },
            ),
            (
                &[0x90, 0x00],
                ProtocolError::WrongLength {
                    packet: P::Suback,
                    expected: 3,
                    found: 0,
                },
            ),
            (
                &[0xB0, 0x01, 0x00],
                ProtocolError::WrongLength {
                    packet: P::Unsuback,
                    expected: 2,
                    found: 1,
                },
            ),
            (
                &[0x30, 0x02, 0x00, 0x05, 0x61, 0x62, 0x63, 0x64, 0x65],
                ProtocolError::Truncated,
            ),
            (
                &[0x30, 0x02, 0x00, 0x05],
                ProtocolError::FieldOutOfBounds(P::Publish),
            ),
            (
                &[0x32, 0x03, 0x00, 0x01, 0x61],
                ProtocolError::FieldOutOfBounds(P::Publish),
            ),
            (
                &[0x20, 0x03, 0x00, 0x00, 0x00],
                ProtocolError::WrongLength {
                    packet: P::Connack,
                    expected: 2,
                    found: 3,
                },
            ),
            (
                &[0xD0, 0x02, 0x00, 0x00],
                ProtocolError::WrongLength {
                    packet: P::Pingresp,
                    expected: 0,
                    found: 2,
                },
            ),
            (
                &[0x62, 0x03, 0x00, 0x01, 0x00],
                ProtocolError::WrongLength {
                    packet: P::Pubrel,
                    expected: 2,
                    found: 3,
                },
            ),
        ] {
            assert_eq!(decode(frame), Err(expected), "{frame:02X?}");
        }
    }

    #[test]
    fn flags_codes_and_identifiers_are_checked() {
        use PacketType as P;
        for (frame, expected) in [
            (
                &[0x21, 0x02, 0x00, 0x00][..],
                ProtocolError::InvalidFlags {
                    packet: P::Connack,
                    flags: 1,
                },
            ),
            (
                &[0x20, 0x02, 0x02, 0x00],
                ProtocolError::InvalidConnackFlags(2),
            ),
            (
                &[0x20, 0x02, 0x01, 0x05],
                ProtocolError::InvalidConnackFlags(1),
            ),
            (
                &[0x20, 0x02, 0x00, 0x06],
                ProtocolError::InvalidConnackCode(6),
            ),
            (
                &[0x60, 0x02, 0x00, 0x01],
                ProtocolError::InvalidFlags {
                    packet: P::Pubrel,
                    flags: 0,
                },
            ),
            (
                &[0x40, 0x02, 0x00, 0x00],
                ProtocolError::PacketIdZero(P::Puback),
            ),
            (
                &[0x90, 0x03, 0x00, 0x01, 0x03],
                ProtocolError::InvalidSubackCode(3),
            ),
            (
                &[0x90, 0x03, 0x00, 0x00, 0x00],
                ProtocolError::PacketIdZero(P::Suback),
            ),
            (
                &[0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01],
                ProtocolError::InvalidFlags {
                    packet: P::Publish,
                    flags: 6,
                },
            ),
            (
                &[0x38, 0x03, 0x00, 0x01, 0x61],
                ProtocolError::InvalidFlags {
                    packet: P::Publish,
                    flags: 8,
                },
            ),
            (
                &[0x32, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00],
                ProtocolError::PacketIdZero(P::Publish),
            ),
            (
                &[0x30, 0x03, 0x00, 0x01, 0x23],
                ProtocolError::InvalidTopic(TopicError::Wildcard),
            ),
            (
                &[0x30, 0x02, 0x00, 0x00],
                ProtocolError::InvalidTopic(TopicError::Empty),
            ),
            (
                &[0x30, 0x03, 0x00, 0x01, 0xFF],
                ProtocolError::InvalidTopic(TopicError::InvalidUtf8),
            ),
            (
                &[0x30, 0x03, 0x00, 0x01, 0x00],
                ProtocolError::InvalidTopic(TopicError::NullCharacter),
            ),
            (&[0x10, 0x00], ProtocolError::UnexpectedPacket(P::Connect)),
            (&[0x82, 0x00], ProtocolError::UnexpectedPacket(P::Subscribe)),
            (&[0xC0, 0x00], ProtocolError::UnexpectedPacket(P::Pingreq)),
            (
                &[0xE0, 0x00],
                ProtocolError::UnexpectedPacket(P::Disconnect),
            ),
        ] {
            assert_eq!(decode(frame), Err(expected), "{frame:02X?}");
        }
    }

    #[test]
    fn decodes_every_packet_a_broker_sends() {
        assert_eq!(
            decode(&[0x20, 0x02, 0x01, 0x00]),
            Ok(Incoming::Connack {
                session_present: true,
                code: ConnackCode::Accepted
            })
        );
        assert_eq!(
            decode(&[0x20, 0x02, 0x00, 0x05]),
            Ok(Incoming::Connack {
                session_present: false,
                code: ConnackCode::NotAuthorized
            })
        );
        assert_eq!(
            decode(&[0x30, 0x05, 0x00, 0x01, b'a', b'h', b'i']),
            Ok(Incoming::Publish(Publish {
                topic: "a",
                payload: b"hi",
                qos: QoS::AtMostOnce,
                packet_id: None,
                dup: false,
                retain: false,
            }))
        );
        assert_eq!(
            decode(&[0x3D, 0x07, 0x00, 0x03, b'a', b'/', b'b', 0x12, 0x34]),
            Ok(Incoming::Publish(Publish {
                topic: "a/b",
                payload: b"",
                qos: QoS::ExactlyOnce,
                packet_id: Some(pid(0x1234)),
                dup: true,
                retain: true,
            }))
        );
        assert_eq!(
            decode(&[0x40, 0x02, 0x00, 0x07]),
            Ok(Incoming::Puback(pid(7)))
        );
        assert_eq!(
            decode(&[0x50, 0x02, 0x00, 0x07]),
            Ok(Incoming::Pubrec(pid(7)))
        );
        assert_eq!(
            decode(&[0x62, 0x02, 0x00, 0x07]),
            Ok(Incoming::Pubrel(pid(7)))
        );
        assert_eq!(
            decode(&[0x70, 0x02, 0xFF, 0xFF]),
            Ok(Incoming::Pubcomp(pid(0xFFFF)))
        );
        assert_eq!(
            decode(&[0xB0, 0x02, 0x00, 0x07]),
            Ok(Incoming::Unsuback(pid(7)))
        );
        assert_eq!(decode(&[0xD0, 0x00]), Ok(Incoming::Pingresp));
        // Seven filters: more than mqttrs holds without std.
        let suback = [0x90, 0x09, 0x00, 0x02, 0, 1, 2, 0x80, 0, 1, 2];
        assert_eq!(
            decode(&suback),
            Ok(Incoming::Suback {
                packet_id: pid(2),
                codes: &[0, 1, 2, 0x80, 0, 1, 2]
            })
        );
    }

    #[test]
    fn never_panics_on_any_short_input() {
        // Every 1-, 2- and 3-byte input, and 4-byte inputs over the
        // interesting first bytes.
        for a in 0..=255u8 {
            let _ = decode(&[a]);
            for b in 0..=255u8 {
                let _ = decode(&[a, b]);
                for c in [0u8, 1, 2, 3, 0x7F, 0x80, 0xFF] {
                    let _ = decode(&[a, b, c]);
                    for d in [0u8, 1, 0x23, 0x2B, 0x61, 0xFF] {
                        let _ = decode(&[a, b, c, d]);
                        let _ = decode(&[a, 4, 0, 1, c, d]);
                        let _ = decode(&[a, 5, 0, 1, c, d, b]);
                    }
                }
            }
        }
    }
}
