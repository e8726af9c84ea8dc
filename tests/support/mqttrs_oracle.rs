//! mqttrs as the oracle of mqtts's own MQTT codec: mqtts decodes and
//! encodes PUBLISH and the acknowledgements itself (see src/mqtt/), and
//! every frame it accepts or writes must mean the same to mqttrs.
//!
//! Shared by the property tests (tests/mqtt_properties.rs) and the frame
//! fuzz target (fuzz/src/frames.rs), each using what it needs.
#![allow(dead_code)]

use mqtts::mqtt::{Incoming, QoS};

fn qos_of(qos: mqttrs::QoS) -> QoS {
    match qos {
        mqttrs::QoS::AtMostOnce => QoS::AtMostOnce,
        mqttrs::QoS::AtLeastOnce => QoS::AtLeastOnce,
        mqttrs::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn connack_code(code: mqttrs::ConnectReturnCode) -> u8 {
    use mqttrs::ConnectReturnCode as C;
    match code {
        C::Accepted => 0,
        C::RefusedProtocolVersion => 1,
        C::RefusedIdentifierRejected => 2,
        C::ServerUnavailable => 3,
        C::BadUsernamePassword => 4,
        C::NotAuthorized => 5,
    }
}

/// Whether mqttrs decodes `frame`, which mqtts decoded as `ours`, to the
/// same packet; `Err` says how they differ. A SUBACK with more than five
/// return codes is not compared (mqttrs holds five without `std`).
pub fn agrees(frame: &[u8], ours: &Incoming<'_>) -> Result<(), String> {
    if let Incoming::Suback { codes, .. } = ours
        && codes.len() > 5
    {
        return Ok(());
    }
    let theirs = match mqttrs::decode_slice(frame) {
        Ok(Some(packet)) => packet,
        other => return Err(format!("mqttrs: {other:?} for {ours:?}")),
    };
    let pid = |p: mqttrs::Pid| p.get();
    let same = match (ours, &theirs) {
        (
            Incoming::Connack {
                session_present,
                code,
            },
            mqttrs::Packet::Connack(c),
        ) => *session_present == c.session_present && code.as_u8() == connack_code(c.code),
        (Incoming::Publish(p), mqttrs::Packet::Publish(q)) => {
            let (qos, id) = match q.qospid {
                mqttrs::QosPid::AtMostOnce => (QoS::AtMostOnce, None),
                mqttrs::QosPid::AtLeastOnce(id) => (QoS::AtLeastOnce, Some(pid(id))),
                mqttrs::QosPid::ExactlyOnce(id) => (QoS::ExactlyOnce, Some(pid(id))),
            };
            p.topic == q.topic_name
                && p.payload == q.payload
                && p.qos == qos
                && p.packet_id.map(|id| id.get()) == id
                && p.dup == q.dup
                && p.retain == q.retain
        }
        (Incoming::Puback(a), mqttrs::Packet::Puback(b))
        | (Incoming::Pubrec(a), mqttrs::Packet::Pubrec(b))
        | (Incoming::Pubrel(a), mqttrs::Packet::Pubrel(b))
        | (Incoming::Pubcomp(a), mqttrs::Packet::Pubcomp(b))
        | (Incoming::Unsuback(a), mqttrs::Packet::Unsuback(b)) => a.get() == pid(*b),
        (Incoming::Suback { packet_id, codes }, mqttrs::Packet::Suback(s)) => {
            packet_id.get() == pid(s.pid)
                && codes.len() == s.return_codes.len()
                && codes
                    .iter()
                    .zip(s.return_codes.iter())
                    .all(|(&c, r)| match r {
                        mqttrs::SubscribeReturnCodes::Success(q) => c == qos_of(*q) as u8,
                        mqttrs::SubscribeReturnCodes::Failure => c == 0x80,
                    })
        }
        (Incoming::Pingresp, mqttrs::Packet::Pingresp) => true,
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(format!("mqtts: {ours:?}, mqttrs: {theirs:?}"))
    }
}

/// Whether mqttrs decodes `encoded` (a PUBLISH mqtts wrote) to these fields.
pub fn reads_publish(
    encoded: &[u8],
    topic: &str,
    payload: &[u8],
    qos: QoS,
    id: Option<u16>,
    retain: bool,
    dup: bool,
) -> Result<(), String> {
    match mqttrs::decode_slice(encoded) {
        Ok(Some(mqttrs::Packet::Publish(q))) => {
            let (q_qos, q_id) = match q.qospid {
                mqttrs::QosPid::AtMostOnce => (QoS::AtMostOnce, None),
                mqttrs::QosPid::AtLeastOnce(p) => (QoS::AtLeastOnce, Some(p.get())),
                mqttrs::QosPid::ExactlyOnce(p) => (QoS::ExactlyOnce, Some(p.get())),
            };
            if q.topic_name == topic
                && q.payload == payload
                && q_qos == qos
                && q_id == id
                && q.retain == retain
                && q.dup == dup
            {
                Ok(())
            } else {
                Err(format!("mqttrs read {q:?}"))
            }
        }
        other => Err(format!("mqttrs: {other:?}")),
    }
}
