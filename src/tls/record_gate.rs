//! Which records the server may send in each phase of a TLS 1.3
//! connection (RFC 8446 §5), checked on the record headers before
//! embedded-tls sees them.
//!
//! embedded-tls 0.19 decrypts only records of outer type application_data
//! and hands every other record to its state machine as it came: after the
//! handshake, an unencrypted handshake record reaches `unimplemented!()`
//! (a panic) and an unencrypted close_notify reads as a clean close; during
//! it, the server's whole flight is accepted unencrypted. Nobody needs a
//! key to send such records: anyone on the path can insert one. TLS 1.3
//! allows unencrypted only what comes before the keys, so the gate refuses
//! the rest (RFC 8446 §5: "unexpected_message"):
//!
//! | phase | allowed |
//! |---|---|
//! | [`Phase::AwaitingServerHello`] | one ServerHello (or HelloRetryRequest) alone in a handshake record; alerts; change_cipher_spec |
//! | [`Phase::Handshake`] | application_data (17 bytes at least); change_cipher_spec |
//! | [`Phase::Established`] | application_data (17 bytes at least) |
//!
//! change_cipher_spec is the compatibility record of RFC 8446 §5 and
//! Appendix D.4: a single byte 0x01, dropped, allowed until the handshake
//! is over.
//!
//! The gate is sans-IO: [`Phase`] decides on headers and bodies, and
//! [`Gate`] is the state the socket and the connection share (the socket
//! lives inside embedded-tls, the stream needs the refusal to name it).

use crate::error::{Error, TlsFailure};
use core::cell::Cell;

/// Outer content types (RFC 8446 §5.1).
mod content_type {
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
}

/// Handshake type of ServerHello (and HelloRetryRequest), RFC 8446 §4.
const SERVER_HELLO: u8 = 2;

/// The shortest encrypted record: the inner content type and the 16-byte
/// AES-GCM tag (RFC 8446 §5.2). embedded-tls 0.19 panics on a shorter one.
const MIN_ENCRYPTED_LEN: u16 = 1 + 16;

/// The `random` of a ServerHello that is a HelloRetryRequest: SHA-256 of
/// "HelloRetryRequest" (RFC 8446 §4.1.3).
const HELLO_RETRY_REQUEST_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

/// Where the server's side of the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// ClientHello sent: the server's next handshake message is ServerHello
    /// (or HelloRetryRequest), unencrypted.
    AwaitingServerHello,
    /// ServerHello received: the rest of the server's flight is encrypted.
    Handshake,
    /// The handshake is complete.
    Established,
}

/// What to do with a record whose header the gate let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Hand it over as it is.
    Pass,
    /// Hand it over once [`Phase::after_body`] accepted its body.
    CheckBody,
}

/// A record the gate refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub content_type: u8,
    pub after_handshake: bool,
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Error::Tls(TlsFailure::UnexpectedRecord {
            content_type: r.content_type,
            after_handshake: r.after_handshake,
        })
    }
}

impl Phase {
    fn refuse(self, content_type: u8) -> Refusal {
        Refusal {
            content_type,
            after_handshake: self == Phase::Established,
        }
    }

    /// Decides on a record from its header's content type and length.
    pub fn admit(self, content_type: u8, len: u16) -> Result<Admission, Refusal> {
        use content_type::*;
        match (self, content_type) {
            (Phase::Handshake | Phase::Established, APPLICATION_DATA)
                if len >= MIN_ENCRYPTED_LEN =>
            {
                Ok(Admission::Pass)
            }
            (Phase::AwaitingServerHello, ALERT) => Ok(Admission::Pass),
            (Phase::AwaitingServerHello, HANDSHAKE) => Ok(Admission::CheckBody),
            (Phase::AwaitingServerHello | Phase::Handshake, CHANGE_CIPHER_SPEC) if len == 1 => {
                Ok(Admission::CheckBody)
            }
            _ => Err(self.refuse(content_type)),
        }
    }

    /// Decides on the body of a record [`Phase::admit`] asked to check, and
    /// gives the phase after it.
    pub fn after_body(self, content_type: u8, body: &[u8]) -> Result<Phase, Refusal> {
        match (content_type, body) {
            (content_type::CHANGE_CIPHER_SPEC, [0x01]) => Ok(self),
            // One ServerHello filling the record: no other message may
            // share it, as the keys change right after (RFC 8446 §5.1).
            (content_type::HANDSHAKE, [SERVER_HELLO, l0, l1, l2, message @ ..])
                if u32::from_be_bytes([0, *l0, *l1, *l2]) as usize == message.len() =>
            {
                // legacy_version (2 bytes), then random (32).
                let is_retry = message.get(2..34) == Some(&HELLO_RETRY_REQUEST_RANDOM[..]);
                Ok(if is_retry {
                    Phase::AwaitingServerHello
                } else {
                    Phase::Handshake
                })
            }
            _ => Err(self.refuse(content_type)),
        }
    }
}

/// The gate's state, shared by the socket under embedded-tls (which
/// advances it and records a refusal) and the connection (which marks the
/// handshake complete and reads the refusal to report it).
///
/// Two bytes the connection sets apart from the caller's write buffer
/// ([`crate::tls::connect`]): the stream owns the socket through
/// embedded-tls, so the state cannot live in either of them.
#[derive(Clone, Copy)]
pub(crate) struct Gate<'a>(&'a Cell<[u8; 2]>);

/// First byte: the phase, with this bit set once a record was refused;
/// second byte: the refused record's content type.
const REFUSED: u8 = 0x80;

impl<'a> Gate<'a> {
    /// A gate awaiting ServerHello, kept in `bytes`.
    pub fn new(bytes: &'a mut [u8; 2]) -> Self {
        let cell = Cell::from_mut(bytes);
        cell.set([Self::code(Phase::AwaitingServerHello), 0]);
        Self(cell)
    }

    const fn code(phase: Phase) -> u8 {
        match phase {
            Phase::AwaitingServerHello => 0,
            Phase::Handshake => 1,
            Phase::Established => 2,
        }
    }

    pub fn phase(self) -> Phase {
        match self.0.get()[0] & !REFUSED {
            0 => Phase::AwaitingServerHello,
            1 => Phase::Handshake,
            _ => Phase::Established,
        }
    }

    pub fn set_phase(self, phase: Phase) {
        let [state, content_type] = self.0.get();
        self.0
            .set([(state & REFUSED) | Self::code(phase), content_type]);
    }

    /// The handshake completed: from now on only encrypted records.
    pub fn establish(self) {
        self.set_phase(Phase::Established);
    }

    /// Records a refusal; the first one is kept.
    pub fn refuse(self, refusal: Refusal) {
        if self.refusal().is_none() {
            let phase = if refusal.after_handshake {
                Phase::Established
            } else {
                self.phase()
            };
            self.0
                .set([REFUSED | Self::code(phase), refusal.content_type]);
        }
    }

    /// The record refused, if one was: the connection is over then.
    pub fn refusal(self) -> Option<Refusal> {
        let [state, content_type] = self.0.get();
        (state & REFUSED != 0).then(|| Refusal {
            content_type,
            after_handshake: self.phase() == Phase::Established,
        })
    }

    /// `error` as the caller sees it: a refused record is the cause of
    /// whatever error embedded-tls made of it.
    pub fn explain(self, error: Error) -> Error {
        match self.refusal() {
            Some(refusal) => refusal.into(),
            None => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::content_type::*;
    use super::*;

    /// A ServerHello message: type, length, legacy_version, `random`, and
    /// `rest` after it.
    fn server_hello(random: [u8; 32], rest: &[u8]) -> ([u8; 128], usize) {
        let mut out = [0u8; 128];
        let body_len = 2 + 32 + rest.len();
        out[0] = SERVER_HELLO;
        out[1..4].copy_from_slice(&(body_len as u32).to_be_bytes()[1..]);
        out[4..6].copy_from_slice(&[0x03, 0x03]);
        out[6..38].copy_from_slice(&random);
        out[38..38 + rest.len()].copy_from_slice(rest);
        (out, 4 + body_len)
    }

    #[test]
    fn after_the_handshake_only_application_data_passes() {
        let phase = Phase::Established;
        assert_eq!(phase.admit(APPLICATION_DATA, 17), Ok(Admission::Pass));
        // Too short to hold a tag and the content type.
        assert_eq!(
            phase.admit(APPLICATION_DATA, 16),
            Err(Refusal {
                content_type: APPLICATION_DATA,
                after_handshake: true
            })
        );
        for content_type in (0..=255u8).filter(|&t| t != APPLICATION_DATA) {
            for len in [0, 1, 2, 100] {
                assert_eq!(
                    phase.admit(content_type, len),
                    Err(Refusal {
                        content_type,
                        after_handshake: true
                    }),
                    "type {content_type}, length {len}"
                );
            }
        }
    }

    #[test]
    fn during_the_encrypted_handshake_only_application_data_and_ccs_pass() {
        let phase = Phase::Handshake;
        assert_eq!(phase.admit(APPLICATION_DATA, 17), Ok(Admission::Pass));
        assert_eq!(phase.admit(CHANGE_CIPHER_SPEC, 1), Ok(Admission::CheckBody));
        assert_eq!(phase.after_body(CHANGE_CIPHER_SPEC, &[1]), Ok(phase));
        let refused = |content_type| Refusal {
            content_type,
            after_handshake: false,
        };
        assert_eq!(phase.after_body(CHANGE_CIPHER_SPEC, &[2]), Err(refused(20)));
        assert_eq!(phase.admit(CHANGE_CIPHER_SPEC, 2), Err(refused(20)));
        assert_eq!(phase.admit(CHANGE_CIPHER_SPEC, 0), Err(refused(20)));
        // The server's flight after ServerHello is encrypted: a plaintext
        // EncryptedExtensions or alert is not from the server.
        assert_eq!(phase.admit(HANDSHAKE, 6), Err(refused(22)));
        assert_eq!(phase.admit(ALERT, 2), Err(refused(21)));
        assert_eq!(phase.admit(24, 3), Err(refused(24)));
        assert_eq!(phase.admit(0, 3), Err(refused(0)));
    }

    #[test]
    fn before_server_hello_only_server_hello_alerts_and_ccs_pass() {
        let phase = Phase::AwaitingServerHello;
        let refused = |content_type| Refusal {
            content_type,
            after_handshake: false,
        };
        assert_eq!(phase.admit(ALERT, 2), Ok(Admission::Pass));
        assert_eq!(phase.admit(HANDSHAKE, 90), Ok(Admission::CheckBody));
        assert_eq!(phase.admit(CHANGE_CIPHER_SPEC, 1), Ok(Admission::CheckBody));
        assert_eq!(phase.admit(APPLICATION_DATA, 100), Err(refused(23)));
        assert_eq!(phase.admit(24, 3), Err(refused(24)));

        let (hello, len) = server_hello([7; 32], &[0; 40]);
        assert_eq!(
            phase.after_body(HANDSHAKE, &hello[..len]),
            Ok(Phase::Handshake)
        );
        let (retry, len) = server_hello(HELLO_RETRY_REQUEST_RANDOM, &[0; 40]);
        assert_eq!(
            phase.after_body(HANDSHAKE, &retry[..len]),
            Ok(Phase::AwaitingServerHello)
        );
        // Another message, or a ServerHello with more behind it in the
        // record (the flight in plaintext), or one cut short.
        assert_eq!(
            phase.after_body(HANDSHAKE, &[8, 0, 0, 2, 0, 0]),
            Err(refused(22))
        );
        let (hello, len) = server_hello([7; 32], &[0; 40]);
        let mut with_more = [0u8; 128];
        with_more[..len].copy_from_slice(&hello[..len]);
        with_more[len..len + 6].copy_from_slice(&[8, 0, 0, 2, 0, 0]);
        assert_eq!(
            phase.after_body(HANDSHAKE, &with_more[..len + 6]),
            Err(refused(22))
        );
        assert_eq!(
            phase.after_body(HANDSHAKE, &hello[..len - 1]),
            Err(refused(22))
        );
        assert_eq!(phase.after_body(HANDSHAKE, &[]), Err(refused(22)));
        assert_eq!(phase.after_body(HANDSHAKE, &[2, 0, 0]), Err(refused(22)));
        // Too short to hold a random: a ServerHello all the same for the
        // gate (embedded-tls refuses it), never a retry.
        assert_eq!(
            phase.after_body(HANDSHAKE, &[2, 0, 0, 1, 3]),
            Ok(Phase::Handshake)
        );
    }

    #[test]
    fn the_shared_state_keeps_the_phase_and_the_first_refusal() {
        let mut bytes = [0xFF; 2];
        let gate = Gate::new(&mut bytes);
        assert_eq!(gate.phase(), Phase::AwaitingServerHello);
        assert_eq!(gate.refusal(), None);
        gate.set_phase(Phase::Handshake);
        assert_eq!(gate.phase(), Phase::Handshake);
        gate.establish();
        assert_eq!(gate.phase(), Phase::Established);
        assert_eq!(
            gate.explain(Error::ConnectionClosed),
            Error::ConnectionClosed
        );
        let first = Refusal {
            content_type: 22,
            after_handshake: true,
        };
        gate.refuse(first);
        gate.refuse(Refusal {
            content_type: 21,
            after_handshake: true,
        });
        assert_eq!(gate.refusal(), Some(first));
        assert_eq!(gate.phase(), Phase::Established);
        assert_eq!(
            gate.explain(Error::Io(embedded_io::ErrorKind::InvalidData)),
            Error::Tls(TlsFailure::UnexpectedRecord {
                content_type: 22,
                after_handshake: true
            })
        );

        let mut bytes = [0; 2];
        let gate = Gate::new(&mut bytes);
        gate.set_phase(Phase::Handshake);
        gate.refuse(Refusal {
            content_type: 0,
            after_handshake: false,
        });
        // Content type 0 is kept as refused, not read as "none".
        assert_eq!(
            gate.refusal(),
            Some(Refusal {
                content_type: 0,
                after_handshake: false
            })
        );
    }
}
