//! Target `record_gate`: the TLS record gate (src/tls/record_gate.rs) in
//! the socket embedded-tls reads through (`DeadlineSocket`, through
//! `mqtts::fuzzing::GatedSocket`), fed an arbitrary record stream in
//! arbitrary read sizes, with the phase changes the handshake makes (or
//! any) between reads.
//!
//! The harness reads as embedded-tls 0.19 does (a 5-byte header, possibly
//! in pieces, then exactly the body) and checks every record handed over
//! against RFC 8446 §5 as the gate documents it:
//!
//! | phase | handed over |
//! |---|---|
//! | awaiting ServerHello | alert; one ServerHello filling a handshake record; change_cipher_spec `01` |
//! | handshake | application_data (17 bytes at least); change_cipher_spec `01` |
//! | established | application_data (17 bytes at least) only |
//!
//! so in particular, once the handshake is marked done, no record of an
//! outer type other than application_data (23) reaches embedded-tls. A
//! refusal names the record and the phase, and after it every read fails.
//! The gate's phase moves to "handshake" on a ServerHello (not on a
//! HelloRetryRequest). No read waits.

use arbitrary::{Arbitrary, Unstructured};
use mqtts::fuzzing::{GatedSocket, Phase};

/// Deviation found by this target, fixed in c27d0e8: an application_data
/// record shorter than 17 bytes was refused with `InvalidData` without the
/// gate recording a refusal, and the socket kept its header: a read after
/// that error handed the record over, unchecked by the gate.
/// fuzz/regressions/record_gate/ holds the input. `true` accepts that
/// behaviour (for a library before the fix); `false` checks that nothing
/// is handed over after any refusal.
pub const A_SHORT_RECORD_IS_HANDED_OVER_ON_RETRY: bool = false;

const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;

/// The `random` of a HelloRetryRequest (RFC 8446 §4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

#[derive(Debug, Arbitrary)]
pub enum Record {
    /// A record of content type 20 + `kind % 5` (or `kind` itself above
    /// 200), `body` as given.
    Typed { kind: u8, body: Vec<u8> },
    /// A ServerHello (or HelloRetryRequest) handshake message, with bytes
    /// after it in the same record, and its length field off by `skew`.
    ServerHello {
        retry: bool,
        extensions: Vec<u8>,
        after: Vec<u8>,
        skew: i8,
    },
    /// change_cipher_spec with this body.
    ChangeCipherSpec(Vec<u8>),
    /// application_data of this many bytes (0..=40).
    ApplicationData(u8),
    /// Raw bytes (a record cut short, garbage).
    Raw(Vec<u8>),
}

impl Record {
    fn write(&self, out: &mut Vec<u8>) {
        let mut record = |content_type: u8, body: &[u8]| {
            let body = &body[..body.len().min(u16::MAX.into())];
            out.push(content_type);
            out.extend_from_slice(&[3, 3]);
            out.extend_from_slice(&(body.len() as u16).to_be_bytes());
            out.extend_from_slice(body);
        };
        match self {
            Self::Typed { kind, body } => {
                let content_type = if *kind > 200 { *kind } else { 20 + kind % 5 };
                record(content_type, body);
            }
            Self::ServerHello {
                retry,
                extensions,
                after,
                skew,
            } => {
                let mut message = vec![2, 0, 0, 0, 3, 3];
                message.extend_from_slice(if *retry { &HRR_RANDOM } else { &[7; 32] });
                message.extend_from_slice(extensions);
                let len = (message.len() - 4) as i64 + i64::from(*skew);
                let len = len.clamp(0, 0xFF_FFFF) as u32;
                message[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
                message.extend_from_slice(after);
                record(HANDSHAKE, &message);
            }
            Self::ChangeCipherSpec(body) => record(CHANGE_CIPHER_SPEC, body),
            Self::ApplicationData(len) => {
                record(APPLICATION_DATA, &vec![0xAA; usize::from(*len % 41)])
            }
            Self::Raw(bytes) => out.extend_from_slice(bytes),
        }
    }
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Action {
    /// Read a record as embedded-tls does, the header in reads of
    /// `header_step` bytes (1..=5); first a body read of the wrong size
    /// (embedded-tls never makes one: refused) if `wrong_body` says so.
    ReadRecord {
        header_step: u8,
        wrong_body: Option<u8>,
    },
    SetPhase(u8),
    /// What `connect` does when the handshake completed.
    Establish,
}

#[derive(Debug, Arbitrary)]
pub struct Input {
    pub chunk: u8,
    pub records: Vec<Record>,
    pub actions: Vec<Action>,
}

/// What the gate allows handed over in `phase` (RFC 8446 §5, as the module
/// documents it); `body` is the whole record body. Gives the phase after.
fn allowed(phase: Phase, content_type: u8, body: &[u8]) -> Option<Phase> {
    match (phase, content_type) {
        (Phase::Handshake | Phase::Established, APPLICATION_DATA) if body.len() >= 17 => {
            Some(phase)
        }
        (Phase::AwaitingServerHello, ALERT) => Some(phase),
        (Phase::AwaitingServerHello | Phase::Handshake, CHANGE_CIPHER_SPEC) if body == [1] => {
            Some(phase)
        }
        (Phase::AwaitingServerHello, HANDSHAKE) => match body {
            [2, l0, l1, l2, message @ ..]
                if u32::from_be_bytes([0, *l0, *l1, *l2]) as usize == message.len() =>
            {
                Some(if message.get(2..34) == Some(&HRR_RANDOM[..]) {
                    Phase::AwaitingServerHello
                } else {
                    Phase::Handshake
                })
            }
            _ => None,
        },
        _ => None,
    }
}

fn phase_of(choice: u8) -> Phase {
    match choice % 3 {
        0 => Phase::AwaitingServerHello,
        1 => Phase::Handshake,
        _ => Phase::Established,
    }
}

pub fn check(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let trace = std::env::var_os("MQTTS_FUZZ_TRACE").is_some();
    if trace {
        eprintln!("{input:?}");
    }
    let mut server = Vec::new();
    for record in input.records.iter().take(32) {
        record.write(&mut server);
    }
    let chunk = if input.chunk == 0 {
        usize::MAX
    } else {
        usize::from(input.chunk)
    };
    let mut gate_bytes = [0u8; 2];
    let mut socket = GatedSocket::new(&server, chunk, &mut gate_bytes);
    assert_eq!(socket.phase(), Phase::AwaitingServerHello);
    // The connection is over (a read failed with InvalidData).
    let mut over = false;
    // A short application_data record was refused: the socket hands its
    // header over on the next read (see the constant above).
    let mut short_refused = false;
    let mut body = vec![0u8; 1 << 16];

    for action in input.actions.iter().take(64) {
        if trace {
            eprintln!("{action:?} in {:?}, over {over}", socket.phase());
        }
        match *action {
            Action::SetPhase(p) => socket.set_phase(phase_of(p)),
            Action::Establish => {
                socket.establish();
                assert_eq!(socket.phase(), Phase::Established);
            }
            Action::ReadRecord {
                header_step,
                wrong_body,
            } => {
                let phase = socket.phase();
                let refused_before = socket.refusal();
                let step = usize::from(header_step % 5) + 1;
                let mut header = [0u8; 5];
                let mut got = 0;
                let mut failed = None;
                while got < 5 {
                    let end = (got + step).min(5);
                    match socket.read(&mut header[got..end]).expect("a read waited") {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    if e == embedded_io::ErrorKind::InvalidData {
                        // Refused: by the gate (naming the record), or as a
                        // short application_data record.
                        match (refused_before, socket.refusal()) {
                            (None, Some((content_type, after_handshake))) => {
                                assert_eq!(after_handshake, phase == Phase::Established);
                                let _ = content_type;
                            }
                            // A short application_data record.
                            (None, None) if A_SHORT_RECORD_IS_HANDED_OVER_ON_RETRY => {
                                short_refused = true;
                                continue;
                            }
                            (None, None) => {}
                            (Some(a), Some(b)) => assert_eq!(a, b, "the first refusal is kept"),
                            (Some(_), None) => panic!("a refusal forgotten"),
                        }
                        over = true;
                    }
                    continue;
                }
                if got < 5 {
                    // The end of the stream.
                    assert!(got == 0 || !over);
                    continue;
                }
                let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
                let retried_short = std::mem::take(&mut short_refused);
                if retried_short {
                    // The known deviation: the refused header again.
                    assert!(header[0] == APPLICATION_DATA && len < 17, "{header:02X?}");
                }
                assert!(
                    !over,
                    "header {header:02X?} handed over after the connection ended"
                );
                if let Some(wrong) = wrong_body.filter(|_| len > 0) {
                    let wrong = usize::from(wrong).max(1);
                    if wrong != len {
                        let result = socket.read(&mut body[..wrong]).expect("a read waited");
                        assert!(
                            result.is_err(),
                            "a body read of {wrong} for {len}: {result:?}"
                        );
                    }
                }
                // The body, in one read of its exact size (as embedded-tls).
                let delivered = if len == 0 {
                    true
                } else {
                    match socket.read(&mut body[..len]).expect("a read waited") {
                        Ok(n) if n == len => true,
                        Ok(0) => false,
                        Ok(n) => panic!("{n} of {len} body bytes"),
                        Err(e) => {
                            if e == embedded_io::ErrorKind::InvalidData {
                                let (_, after_handshake) =
                                    socket.refusal().expect("a body refused by the gate");
                                assert_eq!(after_handshake, phase == Phase::Established);
                                over = true;
                            }
                            false
                        }
                    }
                };
                if !delivered {
                    continue;
                }
                if retried_short {
                    // The known deviation: no gate check on this one.
                    continue;
                }
                // The property: what reached embedded-tls is allowed in the
                // phase it arrived in.
                if phase == Phase::Established {
                    assert_eq!(header[0], APPLICATION_DATA, "after the handshake");
                }
                let next = allowed(phase, header[0], &body[..len]).unwrap_or_else(|| {
                    panic!(
                        "{phase:?}: type {} of {len} bytes handed over: {:02X?}",
                        header[0],
                        &body[..len.min(40)]
                    )
                });
                assert_eq!(socket.phase(), next);
            }
        }
    }
}
