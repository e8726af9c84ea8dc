//! Property tests for the sans-IO MQTT layer (`mqtts::mqtt`): framing,
//! validation of what a broker sends, encoders, topic rules.
//!
//! Every reference used to judge the library (remaining-length codec,
//! SUBSCRIBE parser, filter validity, topic matching) is written here from
//! the MQTT 3.1.1 specification, independently of `src/`.

use mqtts::mqtt::encode::{self, Ack, EncodeError};
use mqtts::mqtt::frame::{
    self, ConnackCode, FixedHeader, Incoming, MAX_REMAINING_LENGTH, PacketType, Publish,
    SubackCode, decode,
};
use mqtts::mqtt::topic::{self, TopicError};
use mqtts::mqtt::{PacketId, ProtocolError, QoS};
use proptest::prelude::*;

#[path = "support/mqttrs_oracle.rs"]
mod mqttrs_oracle;
use proptest::sample::select;
use proptest::test_runner::Config;

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// Cheap properties.
fn config() -> Config {
    Config {
        // Only tests/mqtt_properties.rs is ours to write: no regression file
        // next to it. A failure found here becomes a plain #[test] below.
        failure_persistence: None,
        ..Config::with_cases(256)
    }
}

/// Properties that decode hundreds or thousands of frames per case.
fn expensive() -> Config {
    Config {
        failure_persistence: None,
        ..Config::with_cases(64)
    }
}

// ---------------------------------------------------------------------------
// References, written from the specification
// ---------------------------------------------------------------------------

/// §2.2.3: the minimal variable-length encoding of a remaining length.
fn ref_encode_len(mut len: usize) -> Vec<u8> {
    assert!(len <= MAX_REMAINING_LENGTH);
    let mut out = Vec::new();
    loop {
        let digit = u8::try_from(len % 128).unwrap();
        len /= 128;
        if len == 0 {
            out.push(digit);
            return out;
        }
        out.push(digit | 0x80);
    }
}

/// An encoding of `len` that uses `width` bytes (1 to 4), with redundant
/// zero continuation digits if `width` is more than the minimum.
fn ref_encode_len_wide(len: usize, width: usize) -> Vec<u8> {
    let mut out = ref_encode_len(len);
    assert!(out.len() <= width && width <= 4);
    while out.len() < width {
        *out.last_mut().unwrap() |= 0x80;
        out.push(0);
    }
    out
}

/// What `FixedHeader::parse` should say, as `Err(())` for "malformed",
/// `Ok(None)` for "need more", `Ok(Some((type nibble, remaining, header len)))`.
#[allow(clippy::type_complexity)]
fn ref_parse_header(bytes: &[u8]) -> Result<Option<(u8, usize, usize)>, ProtocolError> {
    let Some(&first) = bytes.first() else {
        return Ok(None);
    };
    let nibble = first >> 4;
    if nibble == 0 || nibble == 15 {
        return Err(ProtocolError::ReservedPacketType(nibble));
    }
    let mut value = 0usize;
    let mut multiplier = 1usize;
    for digits in 1..=4 {
        let Some(&byte) = bytes.get(digits) else {
            return Ok(None);
        };
        value += usize::from(byte & 0x7F) * multiplier;
        multiplier *= 128;
        if byte & 0x80 == 0 {
            return Ok(Some((nibble, value, 1 + digits)));
        }
    }
    Err(ProtocolError::MalformedRemainingLength)
}

/// §4.7.1: `#` only as the whole last level, `+` only as a whole level;
/// §1.5.3, §4.7.3: non-empty, at most 65,535 bytes, no U+0000.
fn ref_validate_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if filter.len() > 65_535 {
        return Err(TopicError::TooLong);
    }
    if filter.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    // '+', '#' and '/' are ASCII, so never inside a multi-byte character.
    let b = filter.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let starts_level = i == 0 || b[i - 1] == b'/';
        let is_last_byte = i + 1 == b.len();
        let ends_level = is_last_byte || b[i + 1] == b'/';
        let ok = match c {
            b'+' => starts_level && ends_level,
            b'#' => starts_level && is_last_byte,
            _ => true,
        };
        if !ok {
            return Err(TopicError::MisplacedWildcard);
        }
    }
    Ok(())
}

/// §4.7: topic names have no wildcards.
fn ref_validate_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        Err(TopicError::Empty)
    } else if name.len() > 65_535 {
        Err(TopicError::TooLong)
    } else if name.contains('\0') {
        Err(TopicError::NullCharacter)
    } else if name.contains('+') || name.contains('#') {
        Err(TopicError::Wildcard)
    } else {
        Ok(())
    }
}

/// §4.7, level by level, recursively; §4.7.2 for `$` topics.
fn ref_matches(filter: &str, topic: &str) -> bool {
    fn levels(filter: &[&str], topic: &[&str]) -> bool {
        match (filter.split_first(), topic.split_first()) {
            (None, None) => true,
            // '#' matches the parent level and any number of child levels.
            (Some((&"#", _)), _) => true,
            (Some((&"+", f_rest)), Some((_, t_rest))) => levels(f_rest, t_rest),
            (Some((f, f_rest)), Some((t, t_rest))) if f == t => levels(f_rest, t_rest),
            _ => false,
        }
    }
    let filter: Vec<&str> = filter.split('/').collect();
    let topic: Vec<&str> = topic.split('/').collect();
    if topic[0].starts_with('$') && (filter[0] == "+" || filter[0] == "#") {
        return false;
    }
    levels(&filter, &topic)
}

/// A SUBSCRIBE or UNSUBSCRIBE as read back by [`ref_parse_subscription`].
#[derive(Debug, PartialEq)]
struct Subscription {
    first_byte: u8,
    packet_id: u16,
    /// Filters with their QoS byte (SUBSCRIBE) or `None` (UNSUBSCRIBE).
    entries: Vec<(String, Option<u8>)>,
}

/// §3.8 and §3.10: fixed header, minimal remaining length matching the
/// rest exactly, packet id, then (u16 length, UTF-8 filter[, QoS]) entries.
fn ref_parse_subscription(frame: &[u8], with_qos: bool) -> Result<Subscription, String> {
    let (&first_byte, rest) = frame.split_first().ok_or("empty")?;
    let mut value = 0usize;
    let mut multiplier = 1usize;
    let mut digits = 0;
    let body = loop {
        let byte = *rest.get(digits).ok_or("length runs out")?;
        digits += 1;
        value += usize::from(byte & 0x7F) * multiplier;
        multiplier *= 128;
        if byte & 0x80 == 0 {
            break &rest[digits..];
        }
        if digits == 4 {
            return Err("remaining length over 4 bytes".into());
        }
    };
    if ref_encode_len(value) != rest[..digits] {
        return Err(format!(
            "non-minimal remaining length {:02X?}",
            &rest[..digits]
        ));
    }
    if body.len() != value {
        return Err(format!("remaining length {value}, body {}", body.len()));
    }
    let (id, mut body) = body.split_at_checked(2).ok_or("no packet id")?;
    let packet_id = u16::from_be_bytes([id[0], id[1]]);
    let mut entries = Vec::new();
    while !body.is_empty() {
        let (len, rest) = body.split_at_checked(2).ok_or("entry length runs out")?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let (filter, rest) = rest.split_at_checked(len).ok_or("filter runs out")?;
        let filter = std::str::from_utf8(filter).map_err(|e| e.to_string())?;
        body = rest;
        let qos = if with_qos {
            let (&qos, rest) = body.split_first().ok_or("no QoS byte")?;
            body = rest;
            Some(qos)
        } else {
            None
        };
        entries.push((filter.to_owned(), qos));
    }
    Ok(Subscription {
        first_byte,
        packet_id,
        entries,
    })
}

/// The canonical bytes of what `decode` returned, built by hand (or with the
/// encoders, which are checked separately): a frame accepted by `decode`
/// must be exactly these bytes once its remaining length is re-encoded
/// minimally. Anything else would mean `decode` ignored part of the frame.
fn reencode(incoming: &Incoming<'_>) -> Vec<u8> {
    let with_body = |first: u8, body: &[u8]| {
        let mut v = vec![first];
        v.extend(ref_encode_len(body.len()));
        v.extend_from_slice(body);
        v
    };
    match *incoming {
        Incoming::Connack {
            session_present,
            code,
        } => vec![0x20, 2, u8::from(session_present), code.as_u8()],
        Incoming::Publish(p) => {
            let mut out = vec![0u8; encode::publish_len(p.topic, p.payload, p.qos)];
            let n = encode::publish(
                p.topic,
                p.payload,
                p.qos,
                p.packet_id,
                p.retain,
                p.dup,
                &mut out,
            )
            .expect("a decoded PUBLISH re-encodes");
            out.truncate(n);
            out
        }
        Incoming::Puback(id) => encode::ack(Ack::Puback, id).to_vec(),
        Incoming::Pubrec(id) => encode::ack(Ack::Pubrec, id).to_vec(),
        Incoming::Pubrel(id) => encode::ack(Ack::Pubrel, id).to_vec(),
        Incoming::Pubcomp(id) => encode::ack(Ack::Pubcomp, id).to_vec(),
        Incoming::Unsuback(id) => with_body(0xB0, &id.get().to_be_bytes()),
        Incoming::Suback { packet_id, codes } => {
            let mut body = packet_id.get().to_be_bytes().to_vec();
            body.extend_from_slice(codes);
            with_body(0x90, &body)
        }
        Incoming::Pingresp => vec![0xD0, 0],
    }
}

/// The packet type an `Incoming` variant is.
fn type_nibble(incoming: &Incoming<'_>) -> u8 {
    match incoming {
        Incoming::Connack { .. } => 2,
        Incoming::Publish(_) => 3,
        Incoming::Puback(_) => 4,
        Incoming::Pubrec(_) => 5,
        Incoming::Pubrel(_) => 6,
        Incoming::Pubcomp(_) => 7,
        Incoming::Suback { .. } => 9,
        Incoming::Unsuback(_) => 11,
        Incoming::Pingresp => 13,
    }
}

/// Checks one outcome of `decode` on any input: an `Ok` is a packet a broker
/// may send, of the frame's type, that is exactly the frame, and that mqttrs
/// decodes to the same packet.
fn check_decode_outcome(frame: &[u8]) -> Result<(), TestCaseError> {
    // An error is a refusal, which is fine for arbitrary bytes.
    if let Ok(incoming) = decode(frame) {
        let (nibble, remaining, header_len) = ref_parse_header(frame)
            .ok()
            .flatten()
            .ok_or_else(|| TestCaseError::fail("Ok from a frame without a header"))?;
        prop_assert_eq!(type_nibble(&incoming), nibble, "{:02X?}", frame);
        prop_assert_eq!(frame.len(), header_len + remaining, "{:02X?}", frame);
        let mut canonical = vec![frame[0]];
        canonical.extend(ref_encode_len(remaining));
        canonical.extend_from_slice(&frame[header_len..]);
        prop_assert_eq!(
            reencode(&incoming),
            canonical,
            "decode({:02X?}) = {:?}",
            frame,
            incoming
        );
        if let Incoming::Publish(p) = incoming {
            prop_assert_eq!(topic::validate_name(p.topic), Ok(()));
            prop_assert_eq!(p.packet_id.is_some(), p.qos != QoS::AtMostOnce);
            prop_assert!(!(p.dup && p.qos == QoS::AtMostOnce));
        }
        if let Err(why) = mqttrs_oracle::agrees(frame, &incoming) {
            return Err(TestCaseError::fail(format!("{frame:02X?}: {why}")));
        }
        if let Incoming::Suback { codes, .. } = incoming {
            prop_assert!(!codes.is_empty());
            for &c in codes {
                prop_assert!(frame::suback_code(c).is_ok());
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce),
    ]
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1u16..=65_535).prop_map(|id| PacketId::new(id).unwrap())
}

/// Valid topic names: non-empty UTF-8 without '+', '#' or NUL, under 200
/// bytes; some with many levels and empty levels, some starting with '$'.
fn topic_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^+#\u{0}]{1,60}",
        "[a-z$/]{1,30}",
        proptest::collection::vec("[^+#/\u{0}]{0,6}", 1..8).prop_map(|l| l.join("/")),
    ]
    .prop_filter("non-empty, < 200 bytes", |t| !t.is_empty() && t.len() < 200)
}

/// Valid topic filters, built level by level.
fn topic_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![
        3 => "[^+#/\u{0}]{0,8}",
        1 => Just("+".to_owned()),
        1 => select(vec!["a", "b", "", "$SYS"]).prop_map(str::to_owned),
    ];
    (proptest::collection::vec(level, 1..6), any::<bool>())
        .prop_map(|(mut levels, hash)| {
            if hash {
                levels.push("#".to_owned());
            }
            levels.join("/")
        })
        .prop_filter("valid filter", |f| ref_validate_filter(f).is_ok())
}

/// Bodies that reach past the length checks: random bytes, PUBLISH-shaped
/// bodies (short topic length, topic bytes from an alphabet with wildcards,
/// NUL, '/', bad UTF-8), and short bodies of interesting bytes (acks,
/// CONNACK, SUBACK).
fn body() -> impl Strategy<Value = Vec<u8>> {
    let topic_byte = select(vec![
        b'a', b'/', b'+', b'#', b'$', 0x00, 0xC3, 0xA9, 0xFF, 0x80,
    ]);
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..300),
        2 => (
            // The topic's own length most of the time, else any small one.
            prop_oneof![3 => Just(None), 1 => (0u16..12).prop_map(Some)],
            proptest::collection::vec(topic_byte, 0..12),
            proptest::collection::vec(select(vec![0u8, 1, 2, 0x80, 0xFF]), 0..6),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(len, topic, id, payload)| {
                let len = len.unwrap_or(u16::try_from(topic.len()).unwrap());
                let mut v = len.to_be_bytes().to_vec();
                v.extend(topic);
                v.extend(id);
                v.extend(payload);
                v
            }),
        1 => proptest::collection::vec(
            select(vec![0u8, 1, 2, 3, 5, 6, 0x7F, 0x80, 0xFE, 0xFF]),
            0..12
        ),
    ]
}

/// How a test frame states its remaining length.
#[derive(Debug, Clone, Copy)]
enum Claim {
    /// The body's length, minimally encoded.
    Correct,
    /// The body's length with redundant zero digits (1 to 4 bytes in all).
    Wide(usize),
    /// The body's length plus this (may be negative), minimally encoded.
    Off(i64),
    /// Any length, minimally encoded.
    Any(usize),
}

fn claim() -> impl Strategy<Value = Claim> {
    prop_oneof![
        3 => Just(Claim::Correct),
        1 => (1usize..=4).prop_map(Claim::Wide),
        2 => (-5i64..=5).prop_filter("wrong", |d| *d != 0).prop_map(Claim::Off),
        1 => (0..=MAX_REMAINING_LENGTH).prop_map(Claim::Any),
    ]
}

/// The remaining-length bytes for `claim` and a body of `body_len` bytes,
/// and the length they claim.
fn claimed_len(claim: Claim, body_len: usize) -> (Vec<u8>, usize) {
    match claim {
        Claim::Correct => (ref_encode_len(body_len), body_len),
        Claim::Wide(width) => {
            let width = width.max(ref_encode_len(body_len).len());
            (ref_encode_len_wide(body_len, width), body_len)
        }
        Claim::Off(delta) => {
            let len = usize::try_from((body_len as i64 + delta).max(0)).unwrap();
            (ref_encode_len(len), len)
        }
        Claim::Any(len) => (ref_encode_len(len), len),
    }
}

// ---------------------------------------------------------------------------
// 1. decode never panics
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes: no panic; an `Ok` is exactly the frame, and mqttrs
    /// agrees with it.
    #[test]
    fn p1_decode_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        check_decode_outcome(&bytes)?;
    }
}

proptest! {
    #![proptest_config(expensive())]

    /// Every first byte (all 16 type nibbles with all 16 flag nibbles) in
    /// front of a correct, redundant-width, or wrong remaining length and a
    /// random or near-valid body.
    #[test]
    fn p1_decode_never_panics_behind_every_first_byte(
        body in body(),
        claim in claim(),
    ) {
        let (len_bytes, claimed) = claimed_len(claim, body.len());
        let mut frame = vec![0];
        frame.extend(&len_bytes);
        frame.extend(&body);
        for first in 0..=255u8 {
            frame[0] = first;
            let nibble = first >> 4;
            let result = decode(&frame);
            if nibble == 0 || nibble == 15 {
                prop_assert_eq!(result, Err(ProtocolError::ReservedPacketType(nibble)));
            } else if claimed != body.len() {
                prop_assert_eq!(result, Err(ProtocolError::Truncated), "{:02X?}", frame);
            } else {
                check_decode_outcome(&frame)?;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 2. FixedHeader
// ---------------------------------------------------------------------------

fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        any::<u8>(),
        0x80u8..=0xFF,
        select(vec![0x00u8, 0x01, 0x7F, 0x80, 0x81, 0xFF]),
    ];
    proptest::collection::vec(byte, 0..8)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn p2_fixed_header_parse_agrees_with_the_reference(bytes in header_bytes()) {
        let parsed = FixedHeader::parse(&bytes);
        let expected = ref_parse_header(&bytes);
        match (parsed, expected) {
            (Ok(None), Ok(None)) => {}
            (Ok(Some(h)), Ok(Some((nibble, remaining, header_len)))) => {
                prop_assert_eq!(PacketType::from_nibble(nibble), Some(h.packet_type));
                prop_assert_eq!(h.flags, bytes[0] & 0x0F);
                prop_assert_eq!(h.remaining_len, remaining);
                prop_assert_eq!(h.header_len, header_len);
                prop_assert!((2..=5).contains(&h.header_len));
                prop_assert!(h.remaining_len <= MAX_REMAINING_LENGTH);
                prop_assert_eq!(h.frame_len(), h.header_len + h.remaining_len);
                // The header alone parses to the same header.
                prop_assert_eq!(FixedHeader::parse(&bytes[..h.header_len]), Ok(Some(h)));
                let minimal = ref_encode_len(h.remaining_len).len() + 1 == h.header_len;
                if minimal {
                    let mut out = [0u8; 5];
                    let n = FixedHeader::encode(bytes[0], h.remaining_len, &mut out);
                    prop_assert_eq!(n, Some(h.header_len));
                    prop_assert_eq!(&out[..h.header_len], &bytes[..h.header_len]);
                    prop_assert_eq!(
                        FixedHeader::len_for(h.remaining_len) + h.remaining_len,
                        h.frame_len()
                    );
                } else {
                    // Redundant zero digits (§2.2.3 does not forbid them in
                    // 3.1.1): the header is longer than the minimal one.
                    prop_assert!(FixedHeader::len_for(h.remaining_len) < h.header_len);
                }
            }
            (parsed, expected) => {
                prop_assert_eq!(
                    parsed.map(|h| h.map(|h| (h.packet_type as u8, h.remaining_len, h.header_len))),
                    expected,
                    "{:02X?}",
                    bytes
                );
            }
        }
    }

    #[test]
    fn p2_fixed_header_encode_round_trips(
        first in 0x10u8..0xF0,
        remaining in prop_oneof![
            0..=MAX_REMAINING_LENGTH,
            select(vec![0usize, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, MAX_REMAINING_LENGTH]),
        ],
        short in 0usize..5,
    ) {
        let expected = ref_encode_len(remaining);
        let mut out = [0u8; 6];
        let n = FixedHeader::encode(first, remaining, &mut out);
        prop_assert_eq!(n, Some(1 + expected.len()));
        prop_assert_eq!(out[0], first);
        prop_assert_eq!(&out[1..1 + expected.len()], &expected[..]);
        prop_assert_eq!(FixedHeader::len_for(remaining), 1 + expected.len());
        let h = FixedHeader::parse(&out[..1 + expected.len()]).unwrap().unwrap();
        prop_assert_eq!((h.remaining_len, h.header_len, h.flags), (remaining, 1 + expected.len(), first & 0x0F));
        // Too small a buffer: None, no panic.
        let short = short.min(expected.len());
        prop_assert_eq!(FixedHeader::encode(first, remaining, &mut out[..short]), None);
        // Over the maximum: None.
        prop_assert_eq!(FixedHeader::encode(first, MAX_REMAINING_LENGTH + 1 + remaining, &mut out), None);
    }
}

// ---------------------------------------------------------------------------
// 3 and 6. PUBLISH round trips, truncation, wrong lengths
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct PublishCase {
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
    packet_id: Option<PacketId>,
    retain: bool,
    dup: bool,
}

fn publish_case() -> impl Strategy<Value = PublishCase> {
    (
        topic_name(),
        proptest::collection::vec(any::<u8>(), 0..2000),
        qos(),
        packet_id(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(topic, payload, qos, id, retain, dup)| {
            let with_id = qos != QoS::AtMostOnce;
            PublishCase {
                topic,
                payload,
                qos,
                packet_id: with_id.then_some(id),
                retain,
                dup: dup && with_id,
            }
        })
}

impl PublishCase {
    fn encode(&self) -> Vec<u8> {
        let len = encode::publish_len(&self.topic, &self.payload, self.qos);
        let mut out = vec![0xAA; len + 16];
        let n = encode::publish(
            &self.topic,
            &self.payload,
            self.qos,
            self.packet_id,
            self.retain,
            self.dup,
            &mut out,
        )
        .expect("fits");
        assert_eq!(n, len, "publish_len");
        out.truncate(n);
        out
    }

    fn expected(&self) -> Incoming<'_> {
        Incoming::Publish(Publish {
            topic: &self.topic,
            payload: &self.payload,
            qos: self.qos,
            packet_id: self.packet_id,
            dup: self.dup,
            retain: self.retain,
        })
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn p3_publish_round_trips(case in publish_case(), spare in 0usize..64) {
        let needed = encode::publish_len(&case.topic, &case.payload, case.qos);
        let mut out = vec![0xAA; needed + spare];
        let n = encode::publish(
            &case.topic, &case.payload, case.qos, case.packet_id, case.retain, case.dup, &mut out,
        );
        prop_assert_eq!(n, Ok(needed));
        prop_assert!(out[needed..].iter().all(|&b| b == 0xAA), "wrote past the frame");
        let frame = &out[..needed];
        prop_assert_eq!(decode(frame), Ok(case.expected()));

        // The bytes, by hand (§3.3).
        let flags = (u8::from(case.dup) << 3) | ((case.qos as u8) << 1) | u8::from(case.retain);
        let mut body = u16::try_from(case.topic.len()).unwrap().to_be_bytes().to_vec();
        body.extend_from_slice(case.topic.as_bytes());
        if let Some(id) = case.packet_id {
            body.extend_from_slice(&id.get().to_be_bytes());
        }
        body.extend_from_slice(&case.payload);
        let mut by_hand = vec![0x30 | flags];
        by_hand.extend(ref_encode_len(body.len()));
        by_hand.extend(&body);
        prop_assert_eq!(frame, &by_hand[..]);
        // And what mqttrs reads in them.
        let read = mqttrs_oracle::reads_publish(
            frame, &case.topic, &case.payload, case.qos,
            case.packet_id.map(|id| id.get()), case.retain, case.dup,
        );
        prop_assert_eq!(read, Ok(()));
    }

    #[test]
    fn p3_publish_into_a_small_buffer_is_an_encode_error(
        case in publish_case(),
        shortfall in prop_oneof![Just(1usize), 1usize..4000],
    ) {
        let needed = encode::publish_len(&case.topic, &case.payload, case.qos);
        let capacity = needed.saturating_sub(shortfall);
        let mut out = vec![0xAA; capacity];
        let result = encode::publish(
            &case.topic, &case.payload, case.qos, case.packet_id, case.retain, case.dup, &mut out,
        );
        prop_assert_eq!(result, Err(EncodeError::BufferTooSmall { needed, capacity }));
        // "fails with EncodeError before writing anything" (encode.rs).
        prop_assert!(out.iter().all(|&b| b == 0xAA), "wrote into a buffer too small");
    }
}

proptest! {
    #![proptest_config(config())]

    /// A PUBLISH built by hand with each of the 16 flag nibbles (§3.3.1):
    /// QoS 3 and DUP with QoS 0 are `InvalidFlags`; every other nibble
    /// decodes to its DUP, QoS and RETAIN, with a packet id exactly for QoS
    /// 1 and 2.
    #[test]
    fn p3_publish_flags(
        topic in topic_name(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        id in packet_id(),
    ) {
        for flags in 0..16u8 {
            let qos_bits = (flags >> 1) & 0b11;
            let dup = flags & 0b1000 != 0;
            let retain = flags & 1 != 0;
            let mut body = u16::try_from(topic.len()).unwrap().to_be_bytes().to_vec();
            body.extend_from_slice(topic.as_bytes());
            if qos_bits != 0 {
                body.extend_from_slice(&id.get().to_be_bytes());
            }
            body.extend_from_slice(&payload);
            let mut frame = vec![0x30 | flags];
            frame.extend(ref_encode_len(body.len()));
            frame.extend(&body);
            let result = decode(&frame);
            let qos = match qos_bits {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                2 => QoS::ExactlyOnce,
                _ => {
                    prop_assert_eq!(
                        result,
                        Err(ProtocolError::InvalidFlags { packet: PacketType::Publish, flags })
                    );
                    continue;
                }
            };
            if dup && qos == QoS::AtMostOnce {
                prop_assert_eq!(
                    result,
                    Err(ProtocolError::InvalidFlags { packet: PacketType::Publish, flags })
                );
                continue;
            }
            prop_assert_eq!(
                result,
                Ok(Incoming::Publish(Publish {
                    topic: &topic,
                    payload: &payload,
                    qos,
                    packet_id: (qos != QoS::AtMostOnce).then_some(id),
                    dup,
                    retain,
                })),
                "flags {:04b}",
                flags
            );
            if qos == QoS::AtMostOnce {
                continue;
            }
            // §2.3.1: packet identifier zero.
            let id_at = frame.len() - body.len() + 2 + topic.len();
            let mut zero = frame.clone();
            zero[id_at..id_at + 2].fill(0);
            prop_assert_eq!(
                decode(&zero),
                Err(ProtocolError::PacketIdZero(PacketType::Publish))
            );
            // QoS 1 or 2 with no room for the packet identifier.
            for missing in 1..=2 {
                let mut short_body = body[..2 + topic.len() + 2 - missing].to_vec();
                let mut short = vec![0x30 | flags];
                short.extend(ref_encode_len(short_body.len()));
                short.append(&mut short_body);
                prop_assert_eq!(
                    decode(&short),
                    Err(ProtocolError::FieldOutOfBounds(PacketType::Publish))
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(expensive())]

    /// Every proper prefix of a valid PUBLISH, remaining length unchanged,
    /// is `Truncated`.
    #[test]
    fn p6_truncated_publish_is_an_error(case in publish_case()) {
        let frame = case.encode();
        for end in 0..frame.len() {
            prop_assert_eq!(
                decode(&frame[..end]),
                Err(ProtocolError::Truncated),
                "prefix of {} bytes of {}",
                end,
                frame.len()
            );
        }
        prop_assert_eq!(decode(&frame), Ok(case.expected()));
    }

    /// A valid PUBLISH whose remaining length claims more or fewer bytes
    /// than follow (re-encoded, so its width may change), or followed by
    /// extra bytes, is `Truncated`.
    #[test]
    fn p6_wrong_remaining_length_is_an_error(
        case in publish_case(),
        claims in proptest::collection::vec(
            prop_oneof![
                (-300i64..=300).prop_filter("wrong", |d| *d != 0).prop_map(Claim::Off),
                (0..=MAX_REMAINING_LENGTH).prop_map(Claim::Any),
            ],
            1..16,
        ),
        extra in proptest::collection::vec(any::<u8>(), 1..8),
    ) {
        let frame = case.encode();
        let h = FixedHeader::parse(&frame).unwrap().unwrap();
        let body = &frame[h.header_len..];
        for claim in claims {
            let (len_bytes, claimed) = claimed_len(claim, body.len());
            if claimed == body.len() {
                continue;
            }
            let mut wrong = vec![frame[0]];
            wrong.extend(len_bytes);
            wrong.extend_from_slice(body);
            prop_assert_eq!(decode(&wrong), Err(ProtocolError::Truncated), "claims {}", claimed);
        }
        let mut longer = frame.clone();
        longer.extend(extra);
        prop_assert_eq!(decode(&longer), Err(ProtocolError::Truncated));
    }
}

// ---------------------------------------------------------------------------
// 4. Acknowledgements
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum AckKind {
    Puback,
    Pubrec,
    Pubrel,
    Pubcomp,
    Unsuback,
}

impl AckKind {
    const ALL: [Self; 5] = [
        Self::Puback,
        Self::Pubrec,
        Self::Pubrel,
        Self::Pubcomp,
        Self::Unsuback,
    ];

    fn nibble(self) -> u8 {
        match self {
            Self::Puback => 4,
            Self::Pubrec => 5,
            Self::Pubrel => 6,
            Self::Pubcomp => 7,
            Self::Unsuback => 11,
        }
    }

    /// §3.6.1: PUBREL has flags 0b0010; the others 0.
    fn flags(self) -> u8 {
        match self {
            Self::Pubrel => 0b0010,
            _ => 0,
        }
    }

    fn packet(self) -> PacketType {
        PacketType::from_nibble(self.nibble()).unwrap()
    }

    fn incoming(self, id: PacketId) -> Incoming<'static> {
        match self {
            Self::Puback => Incoming::Puback(id),
            Self::Pubrec => Incoming::Pubrec(id),
            Self::Pubrel => Incoming::Pubrel(id),
            Self::Pubcomp => Incoming::Pubcomp(id),
            Self::Unsuback => Incoming::Unsuback(id),
        }
    }

    fn client_ack(self) -> Option<Ack> {
        match self {
            Self::Puback => Some(Ack::Puback),
            Self::Pubrec => Some(Ack::Pubrec),
            Self::Pubrel => Some(Ack::Pubrel),
            Self::Pubcomp => Some(Ack::Pubcomp),
            Self::Unsuback => None,
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn p4_acks_decode_to_their_variant(
        id in packet_id(),
        kind in select(AckKind::ALL.to_vec()),
        wrong_flags in 0u8..16,
        wrong_len in prop_oneof![0usize..2, 3usize..300],
        filler in any::<u8>(),
    ) {
        let first = (kind.nibble() << 4) | kind.flags();
        let [hi, lo] = id.get().to_be_bytes();
        let frame = [first, 2, hi, lo];
        prop_assert_eq!(decode(&frame), Ok(kind.incoming(id)));
        if let Some(ack) = kind.client_ack() {
            // The client's encoder writes the same frame.
            prop_assert_eq!(encode::ack(ack, id), frame);
        }

        // Any other flag nibble.
        if wrong_flags != kind.flags() {
            let bad = [(kind.nibble() << 4) | wrong_flags, 2, hi, lo];
            prop_assert_eq!(
                decode(&bad),
                Err(ProtocolError::InvalidFlags { packet: kind.packet(), flags: wrong_flags })
            );
        }

        // Any other length, stated correctly.
        let mut body = vec![hi, lo];
        body.resize(wrong_len, filler);
        let mut bad = vec![first];
        bad.extend(ref_encode_len(wrong_len));
        bad.extend(&body);
        prop_assert_eq!(
            decode(&bad),
            Err(ProtocolError::WrongLength { packet: kind.packet(), expected: 2, found: wrong_len })
        );

        // Zero is not a packet identifier.
        let zero = [first, 2, 0, 0];
        prop_assert_eq!(
            decode(&zero),
            Err(ProtocolError::PacketIdZero(kind.packet()))
        );
    }

    #[test]
    fn p4_connack_and_pingresp(
        flags in prop_oneof![0u8..4, any::<u8>()],
        code in prop_oneof![0u8..8, any::<u8>()],
        first in any::<u8>(),
    ) {
        let frame = [0x20, 2, flags, code];
        let result = decode(&frame);
        let valid = flags & 0xFE == 0 && code <= 5 && (code == 0 || flags == 0);
        if valid {
            let Ok(Incoming::Connack { session_present, code: c }) = result else {
                return Err(TestCaseError::fail(format!("{result:?}")));
            };
            prop_assert_eq!(session_present, flags == 1);
            prop_assert_eq!(c.as_u8(), code);
            prop_assert_eq!(c == ConnackCode::Accepted, code == 0);
        } else {
            prop_assert!(result.is_err());
        }
        let frame = [first, 0];
        let pingresp = decode(&frame);
        if first == 0xD0 {
            prop_assert_eq!(pingresp, Ok(Incoming::Pingresp));
        } else {
            prop_assert!(pingresp.is_err());
        }
    }
}

/// All 65,536 CONNACK bodies (§3.2.2): flags bits 7-1 reserved, codes 0 to 5,
/// and a refusal never claims a session.
#[test]
fn p4_every_connack() {
    for flags in 0..=255u8 {
        for code in 0..=255u8 {
            let frame = [0x20, 2, flags, code];
            let result = decode(&frame);
            let valid = flags & 0xFE == 0 && code <= 5 && (code == 0 || flags == 0);
            if valid {
                let Ok(Incoming::Connack {
                    session_present,
                    code: c,
                }) = result
                else {
                    panic!("{frame:02X?}: {result:?}");
                };
                assert_eq!(session_present, flags == 1, "{frame:02X?}");
                assert_eq!(c.as_u8(), code, "{frame:02X?}");
            } else {
                assert!(result.is_err(), "{frame:02X?}: {result:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 5. SUBACK
// ---------------------------------------------------------------------------

fn suback_frame(id: u16, codes: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x90];
    frame.extend(ref_encode_len(2 + codes.len()));
    frame.extend(id.to_be_bytes());
    frame.extend_from_slice(codes);
    frame
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn p5_suback_codes_round_trip(
        id in packet_id(),
        codes in proptest::collection::vec(select(vec![0u8, 1, 2, 0x80]), 1..40),
    ) {
        let frame = suback_frame(id.get(), &codes);
        prop_assert_eq!(
            decode(&frame),
            Ok(Incoming::Suback { packet_id: id, codes: &codes })
        );
        for &c in &codes {
            let expected = match c {
                0 => SubackCode::Granted(QoS::AtMostOnce),
                1 => SubackCode::Granted(QoS::AtLeastOnce),
                2 => SubackCode::Granted(QoS::ExactlyOnce),
                _ => SubackCode::Failure,
            };
            prop_assert_eq!(frame::suback_code(c), Ok(expected));
        }
    }

    #[test]
    fn p5_suback_with_another_code_is_an_error(
        id in packet_id(),
        mut codes in proptest::collection::vec(select(vec![0u8, 1, 2, 0x80]), 0..40),
        bad in any::<u8>().prop_filter("not a SUBACK code", |c| ![0, 1, 2, 0x80].contains(c)),
        at in any::<prop::sample::Index>(),
    ) {
        let at = at.index(codes.len() + 1);
        codes.insert(at, bad);
        let frame = suback_frame(id.get(), &codes);
        prop_assert_eq!(decode(&frame), Err(ProtocolError::InvalidSubackCode(bad)));
        prop_assert_eq!(frame::suback_code(bad), Err(ProtocolError::InvalidSubackCode(bad)));
    }

    #[test]
    fn p5_suback_without_codes_or_id_is_an_error(id in 0u16..=65_535, flags in 1u8..16) {
        // No return code.
        prop_assert!(decode(&suback_frame(id, &[])).is_err());
        // Packet identifier zero.
        let zero = suback_frame(0, &[0]);
        prop_assert_eq!(
            decode(&zero),
            Err(ProtocolError::PacketIdZero(PacketType::Suback))
        );
        // Reserved flags.
        let mut frame = suback_frame(id.max(1), &[0]);
        frame[0] |= flags;
        prop_assert_eq!(
            decode(&frame),
            Err(ProtocolError::InvalidFlags { packet: PacketType::Suback, flags })
        );
    }
}

// ---------------------------------------------------------------------------
// 7. Topic names and filters
// ---------------------------------------------------------------------------

/// Filters and names over a small alphabet of levels, joined by '/'.
fn joined(levels: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(select(levels), 1..max).prop_map(|l| l.join("/"))
}

const FILTER_LEVELS: &[&str] = &["a", "b", "+", "#", "", "$a"];
const NAME_LEVELS: &[&str] = &["a", "b", "", "$a"];
const MESSY_LEVELS: &[&str] = &[
    "a", "b", "+", "#", "", "a+", "+a", "#a", "a#", "##", "++", "+#", "$", "\0", "é",
];

/// Any string over a small alphabet of characters.
fn char_soup() -> impl Strategy<Value = String> {
    proptest::collection::vec(select(vec!['a', '/', '+', '#', '$', '\0', 'é']), 0..12)
        .prop_map(|c| c.into_iter().collect())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn p7_validate_filter_agrees_with_the_reference(
        filter in prop_oneof![joined(MESSY_LEVELS, 6), joined(FILTER_LEVELS, 6), char_soup()],
    ) {
        prop_assert_eq!(topic::validate_filter(&filter), ref_validate_filter(&filter), "{:?}", filter);
    }

    #[test]
    fn p7_validate_name_agrees_with_the_reference(
        name in prop_oneof![joined(MESSY_LEVELS, 6), char_soup(), topic_name()],
    ) {
        prop_assert_eq!(topic::validate_name(&name), ref_validate_name(&name), "{:?}", name);
    }

    #[test]
    fn p7_matches_agrees_with_the_reference(
        filter in joined(FILTER_LEVELS, 6)
            .prop_filter("valid filter", |f| ref_validate_filter(f).is_ok()),
        topic in joined(NAME_LEVELS, 6)
            .prop_filter("valid name", |t| ref_validate_name(t).is_ok()),
    ) {
        prop_assert_eq!(
            topic::matches(&filter, &topic),
            ref_matches(&filter, &topic),
            "matches({:?}, {:?})",
            filter,
            topic
        );
    }

    /// A name without wildcards, used as a filter, matches exactly itself;
    /// "#" matches every name not starting with '$'.
    #[test]
    fn p7_a_name_matches_itself(a in topic_name(), b in topic_name()) {
        prop_assert!(topic::matches(&a, &a));
        prop_assert_eq!(topic::matches(&a, &b), a == b);
        prop_assert_eq!(topic::matches("#", &a), !a.starts_with('$'));
    }
}

// ---------------------------------------------------------------------------
// 8. SUBSCRIBE and UNSUBSCRIBE
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn p8_subscribe_parses_back(
        id in packet_id(),
        entries in proptest::collection::vec((topic_filter(), qos()), 1..20),
        spare in 0usize..16,
    ) {
        let filters: Vec<(&str, QoS)> = entries.iter().map(|(f, q)| (f.as_str(), *q)).collect();
        let needed = encode::subscribe_len(filters.iter().map(|(f, _)| *f));
        let mut out = vec![0xAA; needed + spare];
        let n = encode::subscribe(id, &filters, &mut out);
        prop_assert_eq!(n, Ok(needed));
        prop_assert!(out[needed..].iter().all(|&b| b == 0xAA), "wrote past the frame");
        let parsed = ref_parse_subscription(&out[..needed], true);
        let expected = Subscription {
            first_byte: 0x82,
            packet_id: id.get(),
            entries: entries.iter().map(|(f, q)| (f.clone(), Some(*q as u8))).collect(),
        };
        prop_assert_eq!(parsed, Ok(expected));
        // A client never receives its own SUBSCRIBE.
        prop_assert_eq!(
            decode(&out[..needed]),
            Err(ProtocolError::UnexpectedPacket(PacketType::Subscribe))
        );

        let capacity = needed - 1;
        let mut small = vec![0xAA; capacity];
        prop_assert_eq!(
            encode::subscribe(id, &filters, &mut small),
            Err(EncodeError::BufferTooSmall { needed, capacity })
        );
        prop_assert!(small.iter().all(|&b| b == 0xAA), "wrote into a buffer too small");
    }

    #[test]
    fn p8_unsubscribe_parses_back(
        id in packet_id(),
        filters in proptest::collection::vec(topic_filter(), 1..20),
        spare in 0usize..16,
    ) {
        let refs: Vec<&str> = filters.iter().map(String::as_str).collect();
        let needed = encode::unsubscribe_len(refs.iter().copied());
        let mut out = vec![0xAA; needed + spare];
        let n = encode::unsubscribe(id, &refs, &mut out);
        prop_assert_eq!(n, Ok(needed));
        prop_assert!(out[needed..].iter().all(|&b| b == 0xAA), "wrote past the frame");
        let parsed = ref_parse_subscription(&out[..needed], false);
        let expected = Subscription {
            first_byte: 0xA2,
            packet_id: id.get(),
            entries: filters.iter().map(|f| (f.clone(), None)).collect(),
        };
        prop_assert_eq!(parsed, Ok(expected));
        prop_assert_eq!(
            decode(&out[..needed]),
            Err(ProtocolError::UnexpectedPacket(PacketType::Unsubscribe))
        );

        let capacity = needed - 1;
        let mut small = vec![0xAA; capacity];
        prop_assert_eq!(
            encode::unsubscribe(id, &refs, &mut small),
            Err(EncodeError::BufferTooSmall { needed, capacity })
        );
        prop_assert!(small.iter().all(|&b| b == 0xAA), "wrote into a buffer too small");
    }

    /// Many long filters: remaining lengths of two and three bytes.
    #[test]
    fn p8_subscribe_with_long_filters(
        id in packet_id(),
        entries in proptest::collection::vec(("[a-z/]{100,400}", qos()), 1..60),
    ) {
        let filters: Vec<(&str, QoS)> = entries.iter().map(|(f, q)| (f.as_str(), *q)).collect();
        let needed = encode::subscribe_len(filters.iter().map(|(f, _)| *f));
        let mut out = vec![0; needed];
        prop_assert_eq!(encode::subscribe(id, &filters, &mut out), Ok(needed));
        let parsed = ref_parse_subscription(&out, true).map(|s| s.entries.len());
        prop_assert_eq!(parsed, Ok(entries.len()));
    }
}

// ---------------------------------------------------------------------------
// Fields longer than their 16-bit length prefix (outside the generated
// ranges above, which keep every string under 65,536 bytes).
// ---------------------------------------------------------------------------

/// A string field of MQTT is at most 65,535 bytes (§1.5.3): mqttrs would
/// write `len as u16`, a wrapped length; mqtts refuses before writing.
#[test]
fn publish_with_a_topic_over_65535_bytes_is_an_error() {
    let topic = "x".repeat(65_536);
    let mut out = vec![0xAA; 70_000];
    let result = encode::publish(&topic, b"hi", QoS::AtMostOnce, None, false, false, &mut out);
    assert_eq!(result, Err(EncodeError::FieldTooLong { len: 65_536 }));
    assert!(out.iter().all(|&b| b == 0xAA), "nothing written");
}

/// encode.rs: "Every function computes the exact size first and fails with
/// [`EncodeError`] before writing anything if it does not fit": a filter
/// over 65,535 bytes is `FieldTooLong` and nothing is written.
#[test]
fn subscribe_with_a_filter_over_65535_bytes_writes_nothing() {
    let long = "x".repeat(65_536);
    let id = PacketId::new(1).unwrap();
    let mut out = vec![0xAA; 70_000];
    let result = encode::subscribe(
        id,
        &[("a", QoS::AtMostOnce), (&long, QoS::AtMostOnce)],
        &mut out,
    );
    assert_eq!(result, Err(EncodeError::FieldTooLong { len: 65_536 }));
    assert!(
        out.iter().all(|&b| b == 0xAA),
        "subscribe returned {result:?} after writing {:02X?}",
        &out[..12]
    );
    let mut out = vec![0xAA; 70_000];
    let result = encode::unsubscribe(id, &["a", &long], &mut out);
    assert_eq!(result, Err(EncodeError::FieldTooLong { len: 65_536 }));
    assert!(
        out.iter().all(|&b| b == 0xAA),
        "unsubscribe returned {result:?} after writing {:02X?}",
        &out[..12]
    );
}

// ---------------------------------------------------------------------------
// P9: CONNECT, written by mqtts, byte for byte as mqttrs writes it
// ---------------------------------------------------------------------------

fn short_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..300)
}

proptest! {
    #![proptest_config(config())]

    /// Every combination of optional fields (user name, password, will with
    /// each QoS and retain), long enough fields for 2-byte remaining
    /// lengths: the same bytes as mqttrs, the exact length, nothing written
    /// past the frame, and `BufferTooSmall` with nothing written when one
    /// byte is missing.
    #[test]
    fn p9_connect_matches_mqttrs(
        client_id in "[a-z0-9]{0,40}",
        username in proptest::option::of("[ -~]{0,200}"),
        password in proptest::option::of(short_bytes()),
        keep_alive in any::<u16>(),
        clean_session in any::<bool>(),
        will in proptest::option::of((topic_name(), short_bytes(), qos(), any::<bool>())),
        spare in 0usize..16,
    ) {
        let c = encode::Connect {
            client_id: &client_id,
            username: username.as_deref(),
            password: password.as_deref(),
            keep_alive_secs: keep_alive,
            clean_session,
            will: will.as_ref().map(|(topic, payload, qos, retain)| encode::Will {
                topic,
                payload,
                qos: *qos,
                retain: *retain,
            }),
        };
        let needed = encode::connect_len(&c);
        let mut out = vec![0xAA; needed + spare];
        prop_assert_eq!(encode::connect(&c, &mut out), Ok(needed));
        prop_assert!(out[needed..].iter().all(|&b| b == 0xAA), "wrote past the frame");

        let reference = mqttrs::Packet::Connect(mqttrs::Connect {
            protocol: mqttrs::Protocol::MQTT311,
            keep_alive,
            client_id: &client_id,
            clean_session,
            last_will: will.as_ref().map(|(topic, payload, qos, retain)| mqttrs::LastWill {
                topic,
                message: payload,
                qos: match qos {
                    QoS::AtMostOnce => mqttrs::QoS::AtMostOnce,
                    QoS::AtLeastOnce => mqttrs::QoS::AtLeastOnce,
                    QoS::ExactlyOnce => mqttrs::QoS::ExactlyOnce,
                },
                retain: *retain,
            }),
            username: username.as_deref(),
            password: password.as_deref(),
        });
        let mut expected = vec![0u8; needed + 16];
        let written = mqttrs::encode_slice(&reference, &mut expected);
        prop_assert_eq!(written, Ok(needed));
        prop_assert_eq!(&out[..needed], &expected[..needed]);

        let capacity = needed - 1;
        let mut small = vec![0xAA; capacity];
        prop_assert_eq!(
            encode::connect(&c, &mut small),
            Err(EncodeError::BufferTooSmall { needed, capacity })
        );
        prop_assert!(small.iter().all(|&b| b == 0xAA), "wrote into a buffer too small");
    }
}

/// A CONNECT field over 65,535 bytes is `FieldTooLong` and nothing is written.
#[test]
fn connect_with_a_field_over_65535_bytes_writes_nothing() {
    let long = "x".repeat(65_536);
    let mut out = vec![0xAA; 70_000];
    let c = encode::Connect {
        client_id: "id",
        username: Some(&long),
        password: None,
        keep_alive_secs: 60,
        clean_session: true,
        will: None,
    };
    assert_eq!(
        encode::connect(&c, &mut out),
        Err(EncodeError::FieldTooLong { len: 65_536 })
    );
    assert!(out.iter().all(|&b| b == 0xAA), "nothing written");
}
