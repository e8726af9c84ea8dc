//! Target (a): frames read from a byte stream and decoded.

use crate::mqttrs_oracle;
use mqtts::mqtt::encode::{self, Ack};
use mqtts::mqtt::frame::{self, FixedHeader, MAX_REMAINING_LENGTH, SubackCode};
use mqtts::mqtt::{ConnackCode, Incoming, PacketId, ProtocolError, QoS, topic};

/// The largest frame re-encoded for the round trip (larger ones are
/// decoded but not re-encoded, to keep each run cheap).
const MAX_REENCODED: usize = 4096;

/// Reads `data` as consecutive frames, as the client's receive loop does,
/// and checks every one. Stops at the first error or incomplete frame.
pub fn check_stream(data: &[u8]) {
    let mut rest = data;
    while !rest.is_empty() {
        let header = match FixedHeader::parse(rest) {
            Ok(Some(header)) => header,
            Ok(None) => {
                // More bytes needed: decoding what there is must say so.
                assert!(rest.len() < 5, "no header in {} bytes", rest.len());
                assert_eq!(frame::decode(rest), Err(ProtocolError::Truncated));
                return;
            }
            Err(e) => {
                assert!(matches!(
                    e,
                    ProtocolError::ReservedPacketType(_) | ProtocolError::MalformedRemainingLength
                ));
                // The decoder reads the same header and must agree.
                assert_eq!(frame::decode(rest), Err(e));
                return;
            }
        };
        check_header(rest, &header);
        let len = header.frame_len();
        let Some(frame) = rest.get(..len) else {
            assert_eq!(frame::decode(rest), Err(ProtocolError::Truncated));
            return;
        };
        check_frame(frame);
        rest = &rest[len..];
    }
}

fn check_header(bytes: &[u8], header: &FixedHeader) {
    assert!((2..=5).contains(&header.header_len));
    assert!(header.remaining_len <= MAX_REMAINING_LENGTH);
    assert_eq!(header.flags, bytes[0] & 0x0F);
    assert_eq!(header.packet_type as u8, bytes[0] >> 4);
    // The shortest encoding of this length parses back to it; the one
    // read may be longer (MQTT 3.1.1 does not forbid padding 0x80 bytes).
    let shortest = FixedHeader::len_for(header.remaining_len);
    assert!(shortest <= header.header_len);
    let mut out = [0u8; 5];
    assert_eq!(
        FixedHeader::encode(bytes[0], header.remaining_len, &mut out),
        Some(shortest)
    );
    let again = FixedHeader::parse(&out[..shortest]).unwrap().unwrap();
    assert_eq!(again.remaining_len, header.remaining_len);
    assert_eq!(again.header_len, shortest);
}

/// One whole frame (per its fixed header): decode it, check what came out.
fn check_frame(frame: &[u8]) {
    let result = frame::decode(frame);
    // Cut by one byte, a frame is never accepted.
    assert!(frame::decode(&frame[..frame.len() - 1]).is_err());
    let Ok(packet) = result else {
        return;
    };
    // What mqtts accepts, mqttrs (the codec it replaced on this path)
    // reads the same way.
    if let Err(why) = mqttrs_oracle::agrees(frame, &packet) {
        panic!("{frame:02X?}: {why}");
    }
    let header = FixedHeader::parse(frame).unwrap().unwrap();
    let canonical = header.header_len == FixedHeader::len_for(header.remaining_len);
    let body = &frame[header.header_len..];
    match packet {
        Incoming::Connack {
            session_present,
            code,
        } => {
            assert_eq!(body, [u8::from(session_present), code.as_u8()]);
            assert!(code == ConnackCode::Accepted || !session_present);
        }
        Incoming::Publish(publish) => {
            topic::validate_name(publish.topic).expect("a decoded topic is valid");
            // A valid topic name is a filter that matches itself.
            assert!(topic::matches(publish.topic, publish.topic));
            assert_eq!(
                topic::matches("#", publish.topic),
                !publish.topic.starts_with('$')
            );
            assert_eq!(publish.packet_id.is_some(), publish.qos != QoS::AtMostOnce);
            assert!(!(publish.dup && publish.qos == QoS::AtMostOnce));
            let id_len = if publish.packet_id.is_some() { 2 } else { 0 };
            assert_eq!(
                body.len(),
                2 + publish.topic.len() + id_len + publish.payload.len()
            );
            assert_eq!(
                encode::publish_len(publish.topic, publish.payload, publish.qos),
                FixedHeader::len_for(header.remaining_len) + header.remaining_len
            );
            if canonical && frame.len() <= MAX_REENCODED {
                let mut out = [0u8; MAX_REENCODED];
                let written = encode::publish(
                    publish.topic,
                    publish.payload,
                    publish.qos,
                    publish.packet_id,
                    publish.retain,
                    publish.dup,
                    &mut out,
                )
                .expect("a decoded PUBLISH encodes");
                assert_eq!(&out[..written], frame, "PUBLISH round trip");
            }
        }
        Incoming::Puback(id) => check_ack(frame, canonical, Ack::Puback, id),
        Incoming::Pubrec(id) => check_ack(frame, canonical, Ack::Pubrec, id),
        Incoming::Pubrel(id) => check_ack(frame, canonical, Ack::Pubrel, id),
        Incoming::Pubcomp(id) => check_ack(frame, canonical, Ack::Pubcomp, id),
        Incoming::Unsuback(id) => assert_eq!(body, id.get().to_be_bytes()),
        Incoming::Suback { packet_id, codes } => {
            assert!(!codes.is_empty());
            assert_eq!(body.len(), 2 + codes.len());
            assert_eq!(body[..2], packet_id.get().to_be_bytes());
            for &code in codes {
                match frame::suback_code(code).expect("decoded codes are valid") {
                    SubackCode::Granted(qos) => assert_eq!(qos as u8, code),
                    SubackCode::Failure => assert_eq!(code, 0x80),
                }
            }
        }
        Incoming::Pingresp => assert!(body.is_empty() && frame[0] == 0xD0),
    }
}

fn check_ack(frame: &[u8], canonical: bool, kind: Ack, id: PacketId) {
    let encoded = encode::ack(kind, id);
    assert_eq!(frame[0], encoded[0], "{kind:?} type and flags");
    assert_eq!(
        frame[frame.len() - 2..],
        encoded[2..],
        "{kind:?} identifier"
    );
    if canonical {
        assert_eq!(frame, encoded, "{kind:?} round trip");
    }
}
