//! The calendar time for CA mode's certificate checks, from SNTP (RFC 4330).
//!
//! [`SntpClock`] is the [`WallClock`] the TLS options read at each connect:
//! it has no time until an SNTP server answered once, then counts on with
//! embassy-time's monotonic clock. [`request`] and [`parse_reply`] are the
//! whole protocol (one 48-byte datagram each way); the query over UDP is in
//! [`crate::net`] (feature `embassy-net`).
//!
//! SNTP is not authenticated: someone on the path can answer with another
//! time. mqtts bounds what that can do: a time before the firmware's build
//! time counts as no time at all (the connect fails with
//! `Error::ClockNotSet`), so a forged time can at worst reopen the window
//! that clock-less validation has (certificates that expired after the
//! build). The reply must echo the random value the request carried, so a
//! forger must see the request.

use core::cell::Cell;

use embassy_time::{Duration, Instant};
use mqtts::time::WallClock;

/// The NTP port (RFC 4330 §4).
pub const PORT: u16 = 123;

/// An SNTP message without the optional authenticator (RFC 4330 §4).
pub const PACKET_LEN: usize = 48;

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
const NTP_TO_UNIX: u64 = 2_208_988_800;

/// Offsets in the message (RFC 4330 §4, figure 1).
mod field {
    /// Leap indicator (2 bits), version (3 bits), mode (3 bits).
    pub const FLAGS: usize = 0;
    /// Stratum: 0 kiss-o'-death, 1 primary, 2-15 secondary, 16+ reserved.
    pub const STRATUM: usize = 1;
    /// Originate timestamp: the request's transmit timestamp, echoed.
    pub const ORIGINATE: core::ops::Range<usize> = 24..32;
    /// Transmit timestamp: when the server sent the reply.
    pub const TRANSMIT: core::ops::Range<usize> = 40..48;
}

/// Version 4, mode 3 (client), no leap indicator (RFC 4330 §5).
const CLIENT_FLAGS: u8 = (4 << 3) | 3;
/// Mode 4: a server's reply (RFC 4330 §4).
const MODE_SERVER: u8 = 4;
/// Leap indicator 3: the server's clock is not synchronized.
const LEAP_ALARM: u8 = 3;

/// Why a reply was not taken (RFC 4330 §5 lists the checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SntpError {
    /// Shorter than 48 bytes.
    Truncated,
    /// Not a server's reply (mode 4) of version 3 or 4.
    NotAServerReply,
    /// The server says its own clock is not synchronized (leap indicator 3).
    ServerUnsynchronized,
    /// Stratum 0 ("kiss-o'-death": go away) or a reserved stratum.
    KissOfDeath,
    /// The reply does not echo this request's transmit timestamp: late, or forged.
    NotOurRequest,
    /// The transmit timestamp is zero.
    NoTime,
}

/// A client request whose transmit timestamp is `nonce`: the server echoes
/// it as the originate timestamp, which ties its reply to this request
/// (RFC 4330 §5 lets a client put any value there).
pub fn request(nonce: u64) -> [u8; PACKET_LEN] {
    let mut packet = [0; PACKET_LEN];
    packet[field::FLAGS] = CLIENT_FLAGS;
    packet[field::TRANSMIT].copy_from_slice(&nonce.to_be_bytes());
    packet
}

/// The time a server's `reply` to [`request`]`(nonce)` gives, seconds
/// since the Unix epoch.
pub fn parse_reply(reply: &[u8], nonce: u64) -> Result<u64, SntpError> {
    let reply: &[u8; PACKET_LEN] = reply
        .get(..PACKET_LEN)
        .and_then(|head| head.try_into().ok())
        .ok_or(SntpError::Truncated)?;
    let flags = reply[field::FLAGS];
    let (leap, version, mode) = (flags >> 6, (flags >> 3) & 0b111, flags & 0b111);
    if mode != MODE_SERVER || !(3..=4).contains(&version) {
        return Err(SntpError::NotAServerReply);
    }
    if leap == LEAP_ALARM {
        return Err(SntpError::ServerUnsynchronized);
    }
    if !(1..=15).contains(&reply[field::STRATUM]) {
        return Err(SntpError::KissOfDeath);
    }
    if timestamp(reply, field::ORIGINATE) != nonce {
        return Err(SntpError::NotOurRequest);
    }
    let transmit = timestamp(reply, field::TRANSMIT);
    if transmit == 0 {
        return Err(SntpError::NoTime);
    }
    let ntp_secs = transmit >> 32;
    // RFC 4330 §3: a seconds value with the top bit clear is in era 1
    // (from 2036-02-07 on), since era 0 before 1968 never occurs.
    let era_secs = if ntp_secs & 0x8000_0000 == 0 {
        ntp_secs + (1 << 32)
    } else {
        ntp_secs
    };
    Ok(era_secs - NTP_TO_UNIX)
}

/// The 64-bit timestamp at `range` (8 bytes of a 48-byte message).
fn timestamp(message: &[u8; PACKET_LEN], range: core::ops::Range<usize>) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&message[range]);
    u64::from_be_bytes(bytes)
}

/// How long a synchronized time is trusted before asking again: the
/// monotonic clock drifts by seconds a day, which does not matter for
/// certificate dates; resynchronizing daily keeps it honest.
pub const RESYNC_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The time SNTP last gave, carried on by the monotonic clock: the
/// [`WallClock`] of the TLS options (`None` until the first answer).
#[derive(Debug, Default)]
pub struct SntpClock {
    /// Seconds since the Unix epoch, and when they were received.
    synced: Cell<Option<(u64, Instant)>>,
}

impl SntpClock {
    /// A clock with no time yet.
    pub const fn new() -> Self {
        Self {
            synced: Cell::new(None),
        }
    }

    /// Sets the time (seconds since the Unix epoch), as of now.
    pub fn set(&self, unix_secs: u64) {
        self.synced.set(Some((unix_secs, Instant::now())));
    }

    /// Whether to ask an SNTP server: never answered, or [`RESYNC_AFTER`] ago.
    pub fn needs_sync(&self) -> bool {
        self.synced
            .get()
            .is_none_or(|(_, at)| at.elapsed() >= RESYNC_AFTER)
    }
}

impl WallClock for SntpClock {
    fn now_unix_secs(&self) -> Option<u64> {
        let (unix_secs, at) = self.synced.get()?;
        Some(unix_secs.saturating_add(at.elapsed().as_secs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request's nonce, which the reply below echoes.
    const NONCE: u64 = 0x1122_3344_5566_7788;

    /// A server's reply laid out as RFC 4330 §4 shows it (written for the
    /// test, not captured): stratum 2, transmit timestamp 0xE9DC_8A3A.2 =
    /// 2024-05-01 09:30:34 UTC.
    fn reply() -> [u8; PACKET_LEN] {
        let mut reply = [0u8; PACKET_LEN];
        reply[0] = 0x24; // leap 0, version 4, mode 4 (server)
        reply[1] = 2; // stratum
        reply[2] = 0x03; // poll
        reply[3] = 0xE7; // precision
        reply[12..16].copy_from_slice(&[0xC0, 0xA8, 0x01, 0x01]); // reference id
        reply[16..24].copy_from_slice(&0xE9DC_8A30_0000_0000u64.to_be_bytes()); // reference
        reply[24..32].copy_from_slice(&NONCE.to_be_bytes()); // originate
        reply[32..40].copy_from_slice(&0xE9DC_8A3A_1000_0000u64.to_be_bytes()); // receive
        reply[40..48].copy_from_slice(&0xE9DC_8A3A_2000_0000u64.to_be_bytes()); // transmit
        reply
    }

    #[test]
    fn a_request_carries_version_4_client_mode_and_the_nonce() {
        let packet = request(NONCE);
        assert_eq!(packet[0], 0x23);
        assert!(packet[1..40].iter().all(|&b| b == 0));
        assert_eq!(packet[40..48], NONCE.to_be_bytes());
    }

    #[test]
    fn a_server_reply_gives_unix_time() {
        // 0xE9DC8A3A = 3,923,544,634 s since 1900 = 1,714,555,834 since 1970.
        assert_eq!(parse_reply(&reply(), NONCE), Ok(1_714_555_834));
        // Extra bytes (an authenticator) are ignored.
        let mut longer = [0u8; 68];
        longer[..PACKET_LEN].copy_from_slice(&reply());
        assert_eq!(parse_reply(&longer, NONCE), Ok(1_714_555_834));
    }

    #[test]
    fn era_1_starts_in_2036() {
        let mut reply = reply();
        // Seconds 0x0000_0010 with the top bit clear: 2036-02-07 06:28:32 UTC.
        reply[40..48].copy_from_slice(&0x0000_0010_0000_0000u64.to_be_bytes());
        assert_eq!(parse_reply(&reply, NONCE), Ok((1 << 32) + 16 - NTP_TO_UNIX));
        assert_eq!((1u64 << 32) - NTP_TO_UNIX, 2_085_978_496);
    }

    #[test]
    fn replies_that_are_not_for_us_or_not_usable_are_refused() {
        let edit = |at: usize, value: u8| {
            let mut reply = reply();
            reply[at] = value;
            reply
        };
        let cases: [([u8; PACKET_LEN], SntpError); 8] = [
            (edit(0, 0x23), SntpError::NotAServerReply), // our own request echoed
            (edit(0, 0x25), SntpError::NotAServerReply), // broadcast
            (edit(0, 0x14), SntpError::NotAServerReply), // version 2
            (edit(0, 0xE4), SntpError::ServerUnsynchronized), // leap 3
            (edit(1, 0), SntpError::KissOfDeath),
            (edit(1, 16), SntpError::KissOfDeath),
            (edit(31, 0x89), SntpError::NotOurRequest),
            (
                {
                    let mut reply = reply();
                    reply[40..48].fill(0);
                    reply
                },
                SntpError::NoTime,
            ),
        ];
        for (reply, expected) in cases {
            assert_eq!(parse_reply(&reply, NONCE), Err(expected), "{reply:02X?}");
        }
        assert_eq!(
            parse_reply(&reply()[..47], NONCE),
            Err(SntpError::Truncated)
        );
        assert_eq!(parse_reply(&[], NONCE), Err(SntpError::Truncated));
    }

    #[test]
    fn the_clock_has_no_time_until_set_then_counts_on() {
        let clock = SntpClock::new();
        assert_eq!(clock.now_unix_secs(), None);
        assert!(clock.needs_sync());
        clock.set(1_800_000_000);
        assert!(!clock.needs_sync());
        let now = clock.now_unix_secs().expect("set");
        assert!((1_800_000_000..1_800_000_010).contains(&now), "{now}");
    }
}
