//! Errors: each variant names the cause and carries what a person needs to fix it.

use crate::mqtt::{ConnackCode, PacketId, PacketType, ProtocolError, TopicError};
use crate::trust::{KeyAlgorithm, PresentedCertificate};
use core::fmt;

/// How much of a refused filter an error keeps.
pub const MAX_FILTER_IN_ERROR: usize = 64;

/// A topic filter kept inside an error: at most [`MAX_FILTER_IN_ERROR`]
/// bytes, ending in "…" when the filter was longer.
pub type FilterName = heapless::String<MAX_FILTER_IN_ERROR, u8>;

/// How much of the dialled server name an error keeps.
///
/// A DNS name may have 253 bytes (RFC 1035 §2.3.4), but every `Result` the
/// client returns is as large as its largest error: keeping a whole name
/// made `Error` 352 bytes on x86_64, copied at each step of every publish
/// (550 instructions of a pipelined QoS 1 message, docs/PERFORMANCE.md).
/// A longer name is kept as its first 61 bytes and "…"; the whole name is
/// the one the application passed to `connect`.
pub const MAX_SERVER_NAME_LEN: usize = 64;

/// A server name kept inside an error: at most [`MAX_SERVER_NAME_LEN`]
/// bytes, ending in "…" when the name was longer.
pub type ServerName = heapless::String<MAX_SERVER_NAME_LEN, u8>;

/// `text` if it fits `N` bytes; otherwise its longest prefix that fits
/// with "…" after it (so a cut name never reads as a whole one), cut at a
/// character boundary: how names and filters are kept inside errors.
pub(crate) fn truncated<const N: usize>(text: &str) -> heapless::String<N, u8> {
    const MARK: &str = "…";
    let mut out = heapless::String::new();
    if out.push_str(text).is_ok() {
        return out;
    }
    let mut end = N.saturating_sub(MARK.len());
    // Ends at 0 at the latest, which is always a boundary.
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    // Cannot fail: at most `N` bytes (no mark when `N` has no room for it).
    let _ = out.push_str(text.get(..end).unwrap_or_default());
    let _ = out.push_str(MARK);
    out
}

/// Everything that can make [`connect`](crate::tls::connect) or a later read
/// or write fail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The socket failed; its error kind is kept.
    Io(embedded_io::ErrorKind),
    /// The server closed the connection.
    ConnectionClosed,
    /// The server sent a fatal TLS alert (RFC 8446 §6.2).
    AlertReceived(Alert),
    /// The TLS exchange failed for a reason other than trust.
    Tls(TlsFailure),
    /// The server's certificate matches none of the pins.
    PinMismatch {
        /// The fingerprints of the certificate the server presented.
        presented: PresentedCertificate,
    },
    /// CA mode: the server's certificate chain was refused.
    CertificateRejected {
        /// Why the chain was refused.
        reason: CertificateError,
        /// The fingerprints of the leaf certificate the server presented.
        presented: PresentedCertificate,
    },
    /// The server's certificate could not be parsed.
    MalformedCertificate,
    /// The server's key is of a type this build cannot check signatures of.
    UnsupportedKey(KeyAlgorithm),
    /// The server's CertificateVerify signature is not valid for the key of
    /// the certificate it presented: it does not hold that key (a replayed
    /// certificate) or the handshake was tampered with (RFC 8446 §4.4.3).
    ServerSignatureInvalid,
    /// The server signed with a scheme that does not fit its key, or that
    /// TLS 1.3 forbids in CertificateVerify (RSA PKCS#1 v1.5, RFC 8446 §4.4.3).
    SignatureSchemeMismatch {
        /// The scheme's code point (RFC 8446 §4.2.3).
        scheme: u16,
        /// The certificate's key type.
        key: KeyAlgorithm,
    },
    /// The server finished the handshake without sending its certificate.
    MissingCertificate,
    /// The server sent a certificate but never proved it holds its key
    /// (no CertificateVerify).
    MissingCertificateVerify,
    /// The server sent CertificateVerify before Certificate, or a second one.
    UnexpectedHandshakeMessage,
    /// CA mode: the [`WallClock`](crate::time::WallClock) given with
    /// [`TlsOptions::with_wall_clock`](crate::tls::TlsOptions::with_wall_clock)
    /// has no time yet (SNTP has not answered), or reads a time before the
    /// floor (an RTC that lost its time): certificate dates cannot be
    /// checked, so the handshake was not started. Not permanent: the next
    /// connect reads the clock again. For boards that cannot learn the
    /// time, see [`TlsOptions::allow_unknown_time`](crate::tls::TlsOptions::allow_unknown_time).
    ClockNotSet {
        /// What the clock (or the fixed time) read, seconds since the Unix epoch.
        reads: Option<u64>,
        /// The floor it must reach: [`CRATE_RELEASE_TIME`](crate::time::CRATE_RELEASE_TIME)
        /// or the application's minimum time.
        minimum: u64,
    },
    /// The configuration passed to mqtts cannot work; nothing was sent.
    Config(ConfigError),
    /// The broker broke MQTT 3.1.1; the connection was abandoned.
    Protocol(ProtocolError),
    /// The broker refused the connection (CONNACK return code, §3.2.2.3).
    ConnectionRefused(ConnackCode),
    /// The broker stayed silent past the keep-alive deadline (§3.1.2.10):
    /// the connection is dead.
    KeepAliveTimeout,
    /// A topic name or filter is invalid; nothing was sent.
    InvalidTopic(TopicError),
    /// A packet does not fit the buffer it must be written to; nothing was sent.
    PacketTooLarge {
        /// The packet's size in bytes.
        size: usize,
        /// The buffer's capacity.
        capacity: usize,
    },
    /// `N` QoS 1/2 messages are already in flight: poll for their
    /// completion first; nothing was sent.
    InFlightFull {
        /// The session's `N`.
        max: usize,
    },
    /// The session outbox cannot hold this message until it is
    /// acknowledged; nothing was sent.
    OutboxFull {
        /// The message's encoded size.
        needed: usize,
        /// Free bytes in the outbox.
        available: usize,
        /// The outbox's size.
        capacity: usize,
    },
    /// The broker sent more unreleased QoS 2 messages than the session
    /// tracks (`N`); exactly-once delivery could not be kept.
    Qos2ReceiveWindowFull {
        /// The session's `N`.
        max: usize,
    },
    /// The packet was sent, but its acknowledgement is behind incoming
    /// messages that fill the receive buffer. Not a connection failure:
    /// call `poll()`, which delivers them and then reports the outcome for
    /// this identifier (`Event::Published`, `Event::Subscribed` or
    /// `Event::Unsubscribed`). Do not send the message again.
    AckPending(PacketId),
    /// The broker refused a subscription (SUBACK 0x80, §3.9.3).
    SubscriptionRefused {
        /// Its position in the filters passed.
        index: usize,
        /// The filter (its first 61 bytes and "…" if longer than 64).
        filter: FilterName,
    },
    /// More filters in one SUBSCRIBE or UNSUBSCRIBE than mqtts handles at once.
    TooManyFilters {
        /// The limit.
        max: usize,
    },
    /// The broker sent a packet (not a PUBLISH) larger than the receive buffer.
    FrameTooLarge {
        /// The packet type.
        packet: PacketType,
        /// Its size in bytes.
        size: usize,
        /// The receive buffer's size.
        capacity: usize,
    },
    /// The connection failed before; open a new one.
    Disconnected,
    /// The broker's host name could not be resolved.
    NameResolution,
    /// The broker did not answer CONNECT within the connect timeout.
    ConnackTimeout,
    /// The broker does not support this QoS for PUBLISH; nothing was sent.
    QosNotSupported {
        /// The QoS asked for.
        requested: crate::mqtt::QoS,
        /// The highest the broker supports.
        max: crate::mqtt::QoS,
    },
    /// Clients may not publish to this topic on this broker; nothing was sent.
    ReservedTopic {
        /// The reserved prefix.
        prefix: &'static str,
    },
    /// The Wi-Fi modem (ESP-AT firmware over a UART) failed (feature `esp-at`).
    #[cfg(feature = "esp-at")]
    Modem(crate::esp_at::ModemError),
}

impl Error {
    /// [`Error::SubscriptionRefused`], built out of line: the filter is
    /// copied into the error once, here (the byte-aligned string is copied
    /// byte by byte wherever it is inlined: 0.3 KB of flash on riscv32imc).
    #[cold]
    #[inline(never)]
    pub(crate) fn subscription_refused(index: usize, filter: &str) -> Self {
        Self::SubscriptionRefused {
            index,
            filter: truncated(filter),
        }
    }
}

/// Why a CA-validated certificate chain was refused (RFC 5280 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CertificateError {
    /// The chain leads to none of the trust anchors.
    UnknownIssuer,
    /// The certificate is not valid for the server name that was dialled.
    NameMismatch {
        /// The name mqtts expected: the one passed to `connect` (its first 61
        /// bytes and "…" if longer than [`MAX_SERVER_NAME_LEN`]).
        expected: ServerName,
    },
    /// A certificate in the chain has expired.
    Expired {
        /// The current time used, seconds since the Unix epoch.
        now: u64,
        /// That certificate's `notBefore`, seconds since the Unix epoch (0 if unknown).
        not_before: u64,
        /// That certificate's `notAfter`, seconds since the Unix epoch.
        not_after: u64,
    },
    /// A certificate in the chain is not valid yet (or the device clock is behind).
    NotYetValid {
        /// The current time used, seconds since the Unix epoch.
        now: u64,
        /// That certificate's `notBefore`, seconds since the Unix epoch.
        not_before: u64,
        /// That certificate's `notAfter`, seconds since the Unix epoch (0 if unknown).
        not_after: u64,
    },
    /// A certificate that issued another is not a CA (basicConstraints, RFC 5280 §4.2.1.9).
    IssuerNotCa,
    /// The server presented a CA certificate as its own.
    LeafIsCa,
    /// The certificate may not be used for TLS servers (extended key usage).
    NotForServerAuthentication,
    /// A signature in the chain does not verify: an issuer with the trusted
    /// CA's name but another key, a corrupted certificate, or an issuer
    /// whose key is too weak to be used (RSA under 2048 bits).
    BadSignature,
    /// A certificate in the chain is signed with an algorithm this build does
    /// not support (enable the `rsa`, `p384` or `ed25519` feature), or with
    /// one mqtts never accepts (signatures over SHA-1).
    UnsupportedSignatureAlgorithm,
    /// The chain is longer than mqtts accepts or path building gave up.
    ChainTooLong,
    /// A certificate in the chain is malformed or uses an unsupported critical extension.
    Malformed,
    /// A name or path-length constraint of an issuer is violated.
    ConstraintViolated,
}

/// A TLS failure other than trust, named as precisely as embedded-tls reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TlsFailure {
    /// A record from the server does not fit the read buffer: make it larger
    /// (16,640 bytes holds any record) or negotiate `max_fragment_length`.
    RecordTooLarge,
    /// The server chose a version, cipher suite, group or extension that was not offered.
    NegotiationFailed,
    /// A record could not be decrypted or authenticated (bad_record_mac).
    DecryptFailed,
    /// The server's Finished message is wrong: the handshake was tampered with.
    FinishedMismatch,
    /// The server sent a message that is malformed or not allowed at this point.
    ProtocolViolation,
    /// The server asked for something embedded-tls does not implement
    /// (e.g. a post-handshake KeyUpdate or an unsupported extension).
    Unsupported,
    /// The connection is not open (it failed or was closed before).
    NotOpen,
    /// A local fault in the TLS engine (e.g. the write buffer is too small
    /// for a handshake message), or a fatal alert from the server after the
    /// handshake: embedded-tls 0.19 reports both this way and drops the
    /// alert's description.
    Internal,
    /// mqtts refused the server and aborted the handshake; see the alert sent.
    Aborted(Alert),
    /// The server did not complete the handshake in time.
    Timeout,
    /// A record arrived that TLS 1.3 does not allow at this point
    /// (RFC 8446 §5): after the handshake, only encrypted records (outer
    /// type application_data); before it, unencrypted only ServerHello,
    /// alerts before ServerHello and the compatibility ChangeCipherSpec.
    /// Anyone on the network path can insert such a record without any
    /// key, so mqtts ends the connection instead of handing it to the TLS
    /// engine (embedded-tls 0.19 would panic on some, or report a close
    /// the server never sent).
    UnexpectedRecord {
        /// The record's outer content type (RFC 8446 §5.1: 20
        /// change_cipher_spec, 21 alert, 22 handshake, 23 application_data).
        content_type: u8,
        /// Whether the handshake was complete when it arrived.
        after_handshake: bool,
    },
}

/// A configuration that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// The server name is not a valid DNS name (RFC 1035, RFC 5890).
    InvalidServerName,
    /// Pinning was chosen with an empty list of pins.
    NoPins,
    /// CA mode was chosen with no trust anchor.
    NoTrustAnchors,
    /// More trust anchors than [`MAX_TRUST_ANCHORS`](crate::trust::MAX_TRUST_ANCHORS).
    TooManyTrustAnchors,
    /// A trust anchor is not a valid DER certificate.
    InvalidTrustAnchor {
        /// Its position in the list.
        index: usize,
    },
    /// The broker needs a client identifier.
    ClientIdRequired,
    /// A TLS stream from `tls::connect` has no timer: an MQTT client needs
    /// one from `tls::connect_with_timer` (or `Client::connect_tls`).
    StreamWithoutTimer,
    /// SUBSCRIBE and UNSUBSCRIBE need at least one filter (§3.8.3, §3.10.3).
    NoFilters,
    /// A flespi token key shorter than 16 characters.
    TokenKeyTooShort,
    /// A password without a user name (MQTT 3.1.1 §3.1.2.9).
    PasswordWithoutUserName,
    /// An empty client identifier needs a clean session (§3.1.3.1).
    EmptyClientIdNeedsCleanSession,
    /// A string or binary field is longer than 65,535 bytes (MQTT §1.5.3).
    FieldTooLong,
    /// A QoS 1 or 2 PUBLISH was encoded without a packet identifier.
    MissingPacketId,
    /// CA mode checks certificate dates (RFC 5280 §4.1.2.5) and was given
    /// no time source: give a clock with
    /// [`TlsOptions::with_wall_clock`](crate::tls::TlsOptions::with_wall_clock)
    /// (SNTP, an RTC) or a time with
    /// [`TlsOptions::with_unix_time`](crate::tls::TlsOptions::with_unix_time),
    /// or choose to validate without one with
    /// [`TlsOptions::allow_unknown_time`](crate::tls::TlsOptions::allow_unknown_time).
    NoTimeSource,
    /// A record buffer is smaller than a handshake needs.
    BufferTooSmall {
        /// `"read"` or `"write"`.
        buffer: &'static str,
        /// The length passed.
        len: usize,
        /// The smallest length that can work.
        min: usize,
    },
}

/// A TLS alert description (RFC 8446 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Alert(pub u8);

impl Alert {
    /// The alert's name in RFC 8446 §6.
    pub const fn name(self) -> &'static str {
        match self.0 {
            0 => "close_notify",
            10 => "unexpected_message",
            20 => "bad_record_mac",
            22 => "record_overflow",
            40 => "handshake_failure",
            42 => "bad_certificate",
            43 => "unsupported_certificate",
            44 => "certificate_revoked",
            45 => "certificate_expired",
            46 => "certificate_unknown",
            47 => "illegal_parameter",
            48 => "unknown_ca",
            49 => "access_denied",
            50 => "decode_error",
            51 => "decrypt_error",
            70 => "protocol_version",
            71 => "insufficient_security",
            80 => "internal_error",
            86 => "inappropriate_fallback",
            90 => "user_canceled",
            109 => "missing_extension",
            110 => "unsupported_extension",
            112 => "unrecognized_name",
            113 => "bad_certificate_status_response",
            115 => "unknown_psk_identity",
            116 => "certificate_required",
            120 => "no_application_protocol",
            _ => "unknown alert",
        }
    }

    /// What the alert usually means for an MQTT client, if there is a common cause.
    pub const fn hint(self) -> Option<&'static str> {
        Some(match self.0 {
            22 => "a record was larger than the server accepts (max_fragment_length)",
            40 | 71 => {
                "the server accepts none of the cipher suites, groups or signature schemes offered \
                 (mqtts offers TLS_AES_128_GCM_SHA256 with P-256 key exchange)"
            }
            70 => "the server does not speak TLS 1.3",
            112 => "the server does not know the server name (SNI) that was sent",
            116 => "the server requires a client certificate",
            120 => "the server supports none of the ALPN protocols offered",
            _ => return None,
        })
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)?;
        if let Some(hint) = self.hint() {
            write!(f, ": {hint}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(kind) => write!(f, "socket error: {kind:?}"),
            Self::ConnectionClosed => f.write_str("the server closed the connection"),
            Self::AlertReceived(alert) => write!(f, "the server sent the TLS alert {alert}"),
            Self::Tls(failure) => write!(f, "TLS failure: {failure}"),
            Self::PinMismatch { presented } => write!(
                f,
                "the server's certificate matches none of the pins; it presented {presented}"
            ),
            Self::CertificateRejected { reason, presented } => write!(
                f,
                "the server's certificate was rejected: {reason}; it presented {presented}"
            ),
            Self::MalformedCertificate => {
                f.write_str("the server's certificate is not a valid X.509 DER certificate")
            }
            Self::UnsupportedKey(key) => match key.feature() {
                // Enabled, so the key itself is refused: RSA outside 2048-4096 bits.
                Some(_) if key.is_enabled() => write!(
                    f,
                    "the server's {key} key is refused (RSA keys must have 2048 to 4096 bits)"
                ),
                Some(feature) => write!(
                    f,
                    "the server's key is {key}: enable the `{feature}` feature of mqtts"
                ),
                None => write!(f, "the server's key is {key}"),
            },
            Self::ServerSignatureInvalid => f.write_str(
                "the server's CertificateVerify signature does not match the key of its \
                 certificate: it does not hold that key (a replayed certificate?)",
            ),
            Self::SignatureSchemeMismatch { scheme, key } => write!(
                f,
                "the server signed with scheme 0x{scheme:04x}, which is not allowed for a {key} key in TLS 1.3"
            ),
            Self::MissingCertificate => f.write_str(
                "the server completed the handshake without a certificate; refused",
            ),
            Self::MissingCertificateVerify => f.write_str(
                "the server never proved it holds its certificate's key (no CertificateVerify); refused",
            ),
            Self::UnexpectedHandshakeMessage => f.write_str(
                "the server sent CertificateVerify out of order; refused",
            ),
            Self::ClockNotSet { reads, minimum } => {
                f.write_str("CA mode needs the current time to check certificate dates, but the clock ")?;
                match reads {
                    Some(reads) => write!(f, "reads {}", UtcTime(*reads))?,
                    None => f.write_str("has no time yet")?,
                }
                write!(
                    f,
                    " (it cannot be before {}); set it (SNTP, RTC) before connecting",
                    UtcTime(*minimum)
                )
            }
            Self::Config(e) => write!(f, "invalid configuration: {e}"),
            Self::Protocol(e) => write!(f, "MQTT protocol violation by the broker: {e}"),
            Self::ConnectionRefused(code) => write!(f, "the broker refused the connection: {code}"),
            Self::KeepAliveTimeout => f.write_str(
                "the broker did not answer within the keep-alive deadline: the connection is dead",
            ),
            Self::InvalidTopic(e) => write!(f, "invalid topic: {e}"),
            Self::PacketTooLarge { size, capacity } => write!(
                f,
                "the packet needs {size} bytes but the buffer holds {capacity}; nothing was sent"
            ),
            Self::InFlightFull { max } => write!(
                f,
                "{max} QoS 1/2 messages are already waiting for acknowledgement; poll first"
            ),
            Self::OutboxFull {
                needed,
                available,
                capacity,
            } => write!(
                f,
                "the session outbox has {available} of {capacity} bytes free, the message needs {needed}"
            ),
            Self::Qos2ReceiveWindowFull { max } => write!(
                f,
                "the broker sent more than {max} unreleased QoS 2 messages (raise the session's N)"
            ),
            Self::AckPending(id) => write!(
                f,
                "message {id} was sent; its acknowledgement waits behind unread messages: poll()"
            ),
            Self::SubscriptionRefused { index, filter } => write!(
                f,
                "the broker refused the subscription to {filter:?} (filter #{index})"
            ),
            Self::TooManyFilters { max } => write!(f, "more than {max} filters at once"),
            Self::FrameTooLarge {
                packet,
                size,
                capacity,
            } => write!(
                f,
                "the broker sent a {packet:?} of {size} bytes; the receive buffer holds {capacity}"
            ),
            Self::Disconnected => f.write_str("the connection failed earlier; reconnect"),
            Self::NameResolution => f.write_str("the broker's host name could not be resolved (DNS)"),
            Self::ConnackTimeout => f.write_str("the broker did not answer CONNECT in time"),
            Self::QosNotSupported { requested, max } => write!(
                f,
                "the broker supports PUBLISH up to {max:?}, not {requested:?}; nothing was sent"
            ),
            Self::ReservedTopic { prefix } => write!(
                f,
                "clients may not publish to topics starting with {prefix:?}; nothing was sent"
            ),
            #[cfg(feature = "esp-at")]
            Self::Modem(e) => write!(f, "Wi-Fi modem: {e}"),
        }
    }
}

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownIssuer => f.write_str("it is not issued by any of the trusted CAs"),
            Self::NameMismatch { expected } => {
                write!(f, "it is not valid for the name {expected:?}")
            }
            Self::Expired {
                now,
                not_before,
                not_after,
            } => write!(
                f,
                "a certificate in the chain expired (valid from {} to {}, now {})",
                UtcTime(*not_before),
                UtcTime(*not_after),
                UtcTime(*now)
            ),
            Self::NotYetValid {
                now,
                not_before,
                not_after,
            } => write!(
                f,
                "a certificate in the chain is not valid yet (valid from {} to {}, now {}): is the clock set?",
                UtcTime(*not_before),
                UtcTime(*not_after),
                UtcTime(*now)
            ),
            Self::IssuerNotCa => f.write_str("an issuer in the chain is not a CA certificate"),
            Self::LeafIsCa => f.write_str("the server presented a CA certificate as its own"),
            Self::NotForServerAuthentication => {
                f.write_str("it may not be used for TLS servers (extended key usage)")
            }
            Self::BadSignature => f.write_str(
                "a signature in the chain does not verify with its issuer's key (an issuer \
                 with the trusted CA's name but another key, a corrupted certificate, or an \
                 RSA issuer key under 2048 bits)",
            ),
            Self::UnsupportedSignatureAlgorithm => f.write_str(
                "a certificate is signed with an algorithm this build does not support \
                 (enable the `rsa`, `p384` or `ed25519` feature; SHA-1 signatures are \
                 never accepted)",
            ),
            Self::ChainTooLong => f.write_str("the chain is too long"),
            Self::Malformed => f.write_str("a certificate in the chain is malformed"),
            Self::ConstraintViolated => {
                f.write_str("a name or path-length constraint of an issuer is violated")
            }
        }
    }
}

/// Seconds since the Unix epoch, shown as `YYYY-MM-DD HH:MM:SS UTC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime(pub u64);

impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
        let days = self.0 / 86_400;
        let secs = self.0 % 86_400;
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
            secs / 3_600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

/// The name of a TLS record content type (RFC 8446 §5.1, RFC 6520).
fn content_type_name(content_type: u8) -> &'static str {
    match content_type {
        20 => "change_cipher_spec",
        21 => "alert",
        22 => "handshake",
        23 => "application_data",
        24 => "heartbeat",
        _ => "not a TLS 1.3 content type",
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RecordTooLarge => f.write_str(
                "a record from the server does not fit the read buffer (16,640 bytes holds any \
                 record; or negotiate max_fragment_length)",
            ),
            Self::NegotiationFailed => {
                f.write_str("the server chose parameters that were not offered")
            }
            Self::DecryptFailed => f.write_str("a record could not be decrypted (bad_record_mac)"),
            Self::FinishedMismatch => {
                f.write_str("the server's Finished message is wrong (handshake tampered with)")
            }
            Self::ProtocolViolation => {
                f.write_str("the server sent a malformed or unexpected message")
            }
            Self::Unsupported => f.write_str("the server used a TLS feature that is not supported"),
            Self::NotOpen => f.write_str("the connection is not open"),
            Self::Internal => f.write_str(
                "internal TLS error, or a fatal alert from the server after the handshake \
                     (are the record buffers large enough?)",
            ),
            Self::Aborted(alert) => write!(f, "handshake aborted with alert {alert}"),
            Self::Timeout => f.write_str("the server did not complete the handshake in time"),
            Self::UnexpectedRecord {
                content_type,
                after_handshake,
            } => write!(
                f,
                "a TLS record of content type {content_type} ({}) arrived {} the handshake, \
                 where TLS 1.3 does not allow it (RFC 8446 §5): inserted on the network path, \
                 or a broken server; the connection was ended",
                content_type_name(*content_type),
                if *after_handshake { "after" } else { "during" },
            ),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidServerName => f.write_str("the server name is not a valid DNS name"),
            Self::NoPins => f.write_str("pinning needs at least one pin"),
            Self::NoTrustAnchors => f.write_str("CA mode needs at least one trust anchor"),
            Self::TooManyTrustAnchors => write!(
                f,
                "more than {} trust anchors",
                crate::trust::MAX_TRUST_ANCHORS
            ),
            Self::InvalidTrustAnchor { index } => {
                write!(f, "trust anchor #{index} is not a valid DER certificate")
            }
            Self::StreamWithoutTimer => f.write_str(
                "this TLS stream has no timer (use tls::connect_with_timer or Client::connect_tls)",
            ),
            Self::NoFilters => f.write_str("SUBSCRIBE and UNSUBSCRIBE need at least one filter"),
            Self::ClientIdRequired => f.write_str(
                "a client identifier is required (each device needs its own: two devices \
                 with the same one disconnect each other)",
            ),
            Self::TokenKeyTooShort => {
                f.write_str("the token key is shorter than the 16 characters needed")
            }
            Self::PasswordWithoutUserName => {
                f.write_str("MQTT 3.1.1 allows a password only with a user name")
            }
            Self::EmptyClientIdNeedsCleanSession => {
                f.write_str("an empty client identifier needs a clean session")
            }
            Self::FieldTooLong => f.write_str("a field is longer than 65,535 bytes"),
            Self::MissingPacketId => f.write_str("a QoS 1 or 2 PUBLISH needs a packet identifier"),
            Self::NoTimeSource => f.write_str(
                "CA mode checks certificate dates and needs the current time: give a clock \
                 (TlsOptions::with_wall_clock: SNTP, an RTC) or a time (with_unix_time), or \
                 choose allow_unknown_time (certificates that expired after the firmware's \
                 minimum time are then not detected)",
            ),
            Self::BufferTooSmall { buffer, len, min } => write!(
                f,
                "the {buffer} buffer has {len} bytes; at least {min} are needed"
            ),
        }
    }
}

impl fmt::Display for ConnackCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Accepted => "accepted",
            Self::UnacceptableProtocolVersion => {
                "code 1: the broker does not accept MQTT 3.1.1"
            }
            Self::IdentifierRejected => {
                "code 2: client identifier rejected (empty, too long or not allowed)"
            }
            Self::ServerUnavailable => "code 3: the MQTT service is unavailable; try again later",
            Self::BadUserNameOrPassword => {
                "code 4: bad user name or password (for flespi: check the token)"
            }
            Self::NotAuthorized => {
                "code 5: not authorized (for flespi: the token is wrong, expired or lacks MQTT rights)"
            }
        })
    }
}

impl core::error::Error for Error {}

impl core::error::Error for CertificateError {}
impl core::error::Error for TlsFailure {}
impl core::error::Error for ConfigError {}

impl embedded_io::Error for Error {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            Self::Io(kind) => *kind,
            Self::ConnectionClosed => embedded_io::ErrorKind::ConnectionAborted,
            Self::Config(_) => embedded_io::ErrorKind::InvalidInput,
            #[cfg(feature = "esp-at")]
            Self::Modem(e) => embedded_io::Error::kind(e),
            _ => embedded_io::ErrorKind::Other,
        }
    }
}

impl From<embedded_tls::TlsError> for Error {
    fn from(e: embedded_tls::TlsError) -> Self {
        use embedded_tls::TlsError as E;
        match e {
            E::ConnectionClosed => Self::ConnectionClosed,
            E::HandshakeAborted(_, description) => Self::AlertReceived(Alert(description as u8)),
            E::AbortHandshake(_, description) => {
                Self::Tls(TlsFailure::Aborted(Alert(description as u8)))
            }
            E::Io(kind) => Self::Io(kind),
            // embedded-tls's name for a read that returned 0 bytes: end of stream.
            E::IoError => Self::ConnectionClosed,
            E::MissingHandshake => Self::Tls(TlsFailure::NotOpen),
            E::InsufficientSpace => Self::Tls(TlsFailure::RecordTooLarge),
            E::InvalidCipherSuite
            | E::InvalidKeyShare
            | E::InvalidSupportedVersions
            | E::InvalidSignatureScheme => Self::Tls(TlsFailure::NegotiationFailed),
            E::CryptoError => Self::Tls(TlsFailure::DecryptFailed),
            E::InvalidSignature => Self::Tls(TlsFailure::FinishedMismatch),
            E::Unimplemented | E::UnknownExtensionType => Self::Tls(TlsFailure::Unsupported),
            E::InvalidCertificate | E::InvalidCertificateEntry => Self::MalformedCertificate,
            E::InternalError
            | E::OutOfMemory
            | E::EncodeError
            | E::InvalidPrivateKey
            | E::UnableToInitializeCryptoEngine => Self::Tls(TlsFailure::Internal),
            _ => Self::Tls(TlsFailure::ProtocolViolation),
        }
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

impl From<TopicError> for Error {
    fn from(e: TopicError) -> Self {
        Self::InvalidTopic(e)
    }
}

impl From<crate::mqtt::encode::EncodeError> for Error {
    fn from(e: crate::mqtt::encode::EncodeError) -> Self {
        use crate::mqtt::encode::EncodeError as E;
        match e {
            E::BufferTooSmall { needed, capacity } => Self::PacketTooLarge {
                size: needed,
                capacity,
            },
            E::FieldTooLong { .. } => Self::Config(ConfigError::FieldTooLong),
            E::MissingPacketId => Self::Config(ConfigError::MissingPacketId),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

#[cfg(test)]
mod tests {
    use super::UtcTime;
    use std::string::ToString as _;

    /// Names and filters kept in errors are cut at a character boundary,
    /// never inside a UTF-8 sequence, and say that they were cut.
    #[test]
    fn truncation_keeps_whole_characters_and_marks_the_cut() {
        assert_eq!(super::truncated::<8>("broker.test").as_str(), "broke…");
        assert_eq!(
            super::truncated::<11>("broker.test").as_str(),
            "broker.test"
        );
        assert_eq!(super::truncated::<8>("short").as_str(), "short");
        // "é" is 2 bytes: 4 ASCII + "é" + "…" would be 9, so "é" goes whole.
        assert_eq!(super::truncated::<8>("abcdéfgh").as_str(), "abcd…");
        assert_eq!(super::truncated::<3>("€€").as_str(), "…");
        // No room for the mark: cut only.
        assert_eq!(super::truncated::<2>("€").as_str(), "");
        assert_eq!(super::truncated::<0>("a").as_str(), "");
    }

    #[test]
    fn utc_times() {
        assert_eq!(UtcTime(0).to_string(), "1970-01-01 00:00:00 UTC");
        // GlobalSign Root CA (R1) expiry.
        assert_eq!(
            UtcTime(1_832_673_600).to_string(),
            "2028-01-28 12:00:00 UTC"
        );
        assert_eq!(UtcTime(951_782_400).to_string(), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            UtcTime(253_402_300_799).to_string(),
            "9999-12-31 23:59:59 UTC"
        );
    }
}
