//! MQTT 3.1.1 on the wire: framing and validation of what the broker sends,
//! encoding of what the client sends, topics. Sans-IO: nothing here reads
//! or writes a socket.
//!
//! References are to the OASIS MQTT 3.1.1 specification
//! (<http://docs.oasis-open.org/mqtt/mqtt/v3.1.1/os/mqtt-v3.1.1-os.html>).

pub mod encode;
pub mod frame;
pub mod topic;

pub use frame::{ConnackCode, Incoming, PacketType, Publish, SubackCode};
pub use topic::TopicError;

use core::num::NonZeroU16;

/// Quality of service (§4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum QoS {
    /// 0: at most once, no acknowledgement.
    AtMostOnce = 0,
    /// 1: at least once (PUBACK).
    AtLeastOnce = 1,
    /// 2: exactly once (PUBREC, PUBREL, PUBCOMP).
    ExactlyOnce = 2,
}

/// A packet identifier (§2.3.1): never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// `None` for zero, which is not a packet identifier.
    pub const fn new(id: u16) -> Option<Self> {
        match NonZeroU16::new(id) {
            Some(id) => Some(Self(id)),
            None => None,
        }
    }

    /// The identifier's value.
    pub const fn get(self) -> u16 {
        self.0.get()
    }

    /// The next identifier, wrapping from 65,535 to 1.
    pub const fn next(self) -> Self {
        match NonZeroU16::new(self.0.get().wrapping_add(1)) {
            Some(id) => Self(id),
            None => Self(NonZeroU16::MIN),
        }
    }
}

impl core::fmt::Display for PacketId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The broker broke MQTT 3.1.1; the connection cannot continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ProtocolError {
    /// Packet type 0 or 15 (§2.2.1).
    ReservedPacketType(u8),
    /// The remaining length takes more than four bytes (§2.2.3).
    MalformedRemainingLength,
    /// The bytes given are not exactly one frame.
    Truncated,
    /// Reserved flag bits are wrong for this packet (§2.2.2), or a PUBLISH has QoS 3 or DUP with QoS 0.
    InvalidFlags {
        /// The packet.
        packet: PacketType,
        /// The flags found.
        flags: u8,
    },
    /// A packet of fixed length has another length.
    WrongLength {
        /// The packet.
        packet: PacketType,
        /// The length its type requires (the minimum for SUBACK and PUBLISH).
        expected: usize,
        /// The remaining length found.
        found: usize,
    },
    /// A length inside the packet runs past its end.
    FieldOutOfBounds(PacketType),
    /// A packet identifier is zero (§2.3.1).
    PacketIdZero(PacketType),
    /// The topic name of an incoming PUBLISH is invalid.
    InvalidTopic(TopicError),
    /// Reserved CONNACK flags set, or a session claimed with a refusal (§3.2.2).
    InvalidConnackFlags(u8),
    /// A CONNACK return code above 5 (§3.2.2.3).
    InvalidConnackCode(u8),
    /// A SUBACK return code other than 0, 1, 2 or 0x80 (§3.9.3).
    InvalidSubackCode(u8),
    /// SUBACK with another number of return codes than filters subscribed (§3.9.3).
    SubackCountMismatch {
        /// Filters in the SUBSCRIBE.
        expected: usize,
        /// Return codes in the SUBACK.
        found: usize,
    },
    /// A packet only a client may send (CONNECT, SUBSCRIBE, PINGREQ, ...),
    /// or one that is not expected now (a second CONNACK, a PUBLISH before CONNACK).
    UnexpectedPacket(PacketType),
}

impl core::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::ReservedPacketType(t) => write!(f, "reserved packet type {t}"),
            Self::MalformedRemainingLength => f.write_str("remaining length longer than 4 bytes"),
            Self::Truncated => f.write_str("incomplete packet"),
            Self::InvalidFlags { packet, flags } => {
                write!(f, "invalid fixed-header flags 0x{flags:x} for {packet:?}")
            }
            Self::WrongLength {
                packet,
                expected,
                found,
            } => write!(
                f,
                "{packet:?} with remaining length {found}, expected {expected}"
            ),
            Self::FieldOutOfBounds(packet) => {
                write!(f, "a length inside {packet:?} runs past its end")
            }
            Self::PacketIdZero(packet) => write!(f, "{packet:?} with packet identifier 0"),
            Self::InvalidTopic(e) => write!(f, "PUBLISH with an invalid topic: {e}"),
            Self::InvalidConnackFlags(flags) => write!(f, "invalid CONNACK flags 0x{flags:x}"),
            Self::InvalidConnackCode(code) => write!(f, "invalid CONNACK return code {code}"),
            Self::InvalidSubackCode(code) => write!(f, "invalid SUBACK return code 0x{code:x}"),
            Self::SubackCountMismatch { expected, found } => {
                write!(f, "SUBACK with {found} return codes for {expected} filters")
            }
            Self::UnexpectedPacket(packet) => write!(f, "unexpected {packet:?} from the broker"),
        }
    }
}

impl core::error::Error for ProtocolError {}
