//! A minimal, zero-copy DER reader (ITU-T X.690 §8 and §10).
//!
//! It reads exactly what mqtts needs from a certificate: nested `SEQUENCE`s,
//! context tags, `OBJECT IDENTIFIER`s, `BIT STRING`s and times. Every read is
//! bounds-checked; malformed input yields [`DerError`], never a panic.

/// Why a DER structure could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DerError {
    /// The input ended inside a tag, length or value.
    Truncated,
    /// A tag other than the one the structure requires.
    UnexpectedTag { expected: u8, found: u8 },
    /// Indefinite, non-minimal or over-long length (DER forbids them, X.690 §10.1).
    BadLength,
    /// Bytes left over after a structure that must fill its container.
    TrailingData,
    /// A value that breaks its type's rules (e.g. a time that is not a date).
    BadValue,
}

/// Universal tags used by X.509 (X.690 §8.1.2, X.680 §8.4).
pub(crate) mod tag {
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OID: u8 = 0x06;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    /// `[0] EXPLICIT` (constructed, context-specific 0): the certificate version.
    pub const CONTEXT_0: u8 = 0xA0;
}

/// One tag-length-value element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    /// The value bytes, without tag and length.
    pub value: &'a [u8],
    /// The whole element, tag and length included (what SPKI pins hash).
    pub encoded: &'a [u8],
}

/// A cursor over DER bytes.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The tag of the next element, if any.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads the next element, whatever its tag.
    pub fn read(&mut self) -> Result<Tlv<'a>, DerError> {
        let all = self.rest;
        let (&tag, after_tag) = all.split_first().ok_or(DerError::Truncated)?;
        // Multi-byte tags (low five bits all set) never occur in the X.509
        // structures we read; refusing them keeps the reader simple.
        if tag & 0x1F == 0x1F {
            return Err(DerError::BadValue);
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or(DerError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7F);
            // 0x80 is BER's indefinite length; more than 4 length bytes cannot
            // describe anything that fits in a TLS record.
            if count == 0 || count > 4 {
                return Err(DerError::BadLength);
            }
            let (len_bytes, rest) = after_len
                .split_at_checked(count)
                .ok_or(DerError::Truncated)?;
            after_len = rest;
            let mut len = 0usize;
            for &b in len_bytes {
                len = (len << 8) | usize::from(b);
            }
            // DER: the long form only when needed, and without leading zeros.
            if len < 0x80 || len_bytes.first() == Some(&0) {
                return Err(DerError::BadLength);
            }
            len
        };
        let (value, rest) = after_len.split_at_checked(len).ok_or(DerError::Truncated)?;
        let header_len = all.len() - after_len.len();
        let encoded = all.get(..header_len + len).ok_or(DerError::Truncated)?;
        self.rest = rest;
        Ok(Tlv {
            tag,
            value,
            encoded,
        })
    }

    /// Reads the next element and checks its tag.
    pub fn expect(&mut self, expected: u8) -> Result<Tlv<'a>, DerError> {
        let tlv = self.read()?;
        if tlv.tag != expected {
            return Err(DerError::UnexpectedTag {
                expected,
                found: tlv.tag,
            });
        }
        Ok(tlv)
    }

    /// Reads the next element if it has the given tag.
    pub fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.read().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Fails unless everything was read.
    pub fn finish(&self) -> Result<(), DerError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingData)
        }
    }
}

/// The `r || s` of a DER ECDSA-Sig-Value (RFC 3279 §2.2.3, RFC 8446
/// §4.2.3: `SEQUENCE { r INTEGER, s INTEGER }`), each left-padded to
/// `out.len() / 2` bytes: the fixed form RustCrypto's
/// `Signature::from_slice` takes, so the `der` crate's general decoder (2.9 KB
/// of firmware with `Signature::from_der`) is not linked. Strict DER, as
/// `from_der`: non-negative, minimally encoded integers that fit, nothing
/// after them.
pub(crate) fn ecdsa_signature(der: &[u8], out: &mut [u8]) -> Result<(), DerError> {
    let mut outer = Reader::new(der);
    let sequence = outer.expect(tag::SEQUENCE)?;
    outer.finish()?;
    let mut integers = Reader::new(sequence.value);
    let half = out.len() / 2;
    let (r, s) = out.split_at_mut(half);
    for target in [r, s] {
        let magnitude = unsigned_integer(integers.expect(tag::INTEGER)?.value)?;
        let padding = target
            .len()
            .checked_sub(magnitude.len())
            .ok_or(DerError::BadValue)?;
        let (zeros, digits) = target.split_at_mut(padding);
        zeros.fill(0);
        digits.copy_from_slice(magnitude);
    }
    integers.finish()
}

/// The magnitude of a non-negative DER INTEGER (X.690 §8.3): its content
/// without the leading zero byte that keeps the sign bit clear. Refuses
/// the empty encoding, negative numbers and redundant leading zeros.
fn unsigned_integer(value: &[u8]) -> Result<&[u8], DerError> {
    match value {
        [] => Err(DerError::BadValue),
        [0, next, ..] if *next < 0x80 => Err(DerError::BadValue),
        [0, magnitude @ ..] => Ok(magnitude),
        [first, ..] if *first >= 0x80 => Err(DerError::BadValue),
        _ => Ok(value),
    }
}

/// The content of a `BIT STRING` with no unused bits (X.690 §8.6), as keys are.
pub(crate) fn bit_string_bytes(value: &[u8]) -> Result<&[u8], DerError> {
    match value.split_first() {
        Some((0, bytes)) => Ok(bytes),
        _ => Err(DerError::BadValue),
    }
}

/// Parses a `UTCTime` or `GeneralizedTime` (RFC 5280 §4.1.2.5) into seconds
/// since the Unix epoch. Only the forms RFC 5280 allows are accepted:
/// `YYMMDDHHMMSSZ` and `YYYYMMDDHHMMSSZ`.
pub(crate) fn time_to_unix(tlv: &Tlv<'_>) -> Result<u64, DerError> {
    let (year, rest) = match tlv.tag {
        tag::UTC_TIME => {
            let (yy, rest) = tlv.value.split_at_checked(2).ok_or(DerError::BadValue)?;
            let yy = digits(yy)?;
            // RFC 5280 §4.1.2.5.1: YY >= 50 is 19YY, otherwise 20YY.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, rest)
        }
        tag::GENERALIZED_TIME => {
            let (yyyy, rest) = tlv.value.split_at_checked(4).ok_or(DerError::BadValue)?;
            (digits(yyyy)?, rest)
        }
        found => {
            return Err(DerError::UnexpectedTag {
                expected: tag::UTC_TIME,
                found,
            });
        }
    };
    let [mo0, mo1, d0, d1, h0, h1, mi0, mi1, s0, s1, b'Z'] = *rest else {
        return Err(DerError::BadValue);
    };
    let (month, day) = (digits(&[mo0, mo1])?, digits(&[d0, d1])?);
    let (hour, minute, second) = (digits(&[h0, h1])?, digits(&[mi0, mi1])?, digits(&[s0, s1])?);
    // Before 1970 cannot be a time in seconds since then.
    if year < 1970
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(DerError::BadValue);
    }
    let seconds_of_day = hour * 3_600 + minute * 60 + second;
    Ok(u64::from(days_from_civil(year, month, day)) * 86_400 + u64::from(seconds_of_day))
}

/// A number written in ASCII decimal digits (at most 4 here).
fn digits(ascii: &[u8]) -> Result<u32, DerError> {
    ascii.iter().try_fold(0u32, |acc, &c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + u32::from(c - b'0'))
        } else {
            Err(DerError::BadValue)
        }
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a Gregorian date from then on (H. Hinnant's
/// algorithm, in 32-bit arithmetic: a 64-bit division costs a 584-byte
/// library routine on a 32-bit core).
fn days_from_civil(year: u32, month: u32, day: u32) -> u32 {
    let y = if month <= 2 { year - 1 } else { year };
    let (era, yoe) = (y / 400, y % 400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    // 719,468: days from 0000-03-01 to 1970-01-01; `year >= 1970` keeps
    // this from going below zero.
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let short = [0x30, 0x02, 0x05, 0x00, 0xFF];
        let mut r = Reader::new(&short);
        let tlv = r.expect(tag::SEQUENCE).unwrap();
        assert_eq!(tlv.value, &[0x05, 0x00]);
        assert_eq!(tlv.encoded, &short[..4]);
        assert_eq!(r.finish(), Err(DerError::TrailingData));

        let mut long = [0u8; 3 + 200];
        long[0] = 0x04;
        long[1] = 0x81;
        long[2] = 200;
        let tlv = Reader::new(&long).expect(0x04).unwrap();
        assert_eq!(tlv.value.len(), 200);
        assert_eq!(tlv.encoded.len(), 203);
    }

    #[test]
    fn rejects_malformed_lengths() {
        for bad in [
            &[0x30][..],                   // no length
            &[0x30, 0x80, 0x00, 0x00][..], // indefinite
            &[0x30, 0x81, 0x05, 0x00][..], // long form for a short length
            &[0x30, 0x82, 0x00, 0x90][..], // leading zero
            &[0x30, 0x85, 1, 1, 1, 1, 1][..],
            &[0x30, 0x03, 0x00][..], // value runs past the end
            &[0x1F, 0x01, 0x00][..], // multi-byte tag
        ] {
            assert!(Reader::new(bad).read().is_err(), "{bad:02X?} accepted");
        }
        assert_eq!(
            Reader::new(&[0x02, 0x00]).expect(tag::SEQUENCE),
            Err(DerError::UnexpectedTag {
                expected: tag::SEQUENCE,
                found: tag::INTEGER
            })
        );
    }

    #[test]
    fn reads_ecdsa_signatures_as_strictly_as_the_der_crate() {
        let mut out = [0u8; 8];
        // r = 1, s = 0x80 (needs its leading zero).
        assert_eq!(
            ecdsa_signature(
                &[0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x02, 0x00, 0x80],
                &mut out
            ),
            Ok(())
        );
        assert_eq!(out, [0, 0, 0, 1, 0, 0, 0, 0x80]);
        // Largest that fits: 4 bytes each, one with a sign-keeping zero.
        assert_eq!(
            ecdsa_signature(
                &[
                    0x30, 0x0D, 0x02, 0x05, 0x00, 0xFF, 0xEE, 0xDD, 0xCC, 0x02, 0x04, 0x7F, 0x01,
                    0x02, 0x03
                ],
                &mut out
            ),
            Ok(())
        );
        assert_eq!(out, [0xFF, 0xEE, 0xDD, 0xCC, 0x7F, 0x01, 0x02, 0x03]);
        for bad in [
            // Negative r.
            &[0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x01][..],
            // Redundant leading zero.
            &[0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01],
            // Empty integer.
            &[0x30, 0x05, 0x02, 0x00, 0x02, 0x01, 0x01],
            // Too large for 4 bytes.
            &[
                0x30, 0x08, 0x02, 0x05, 0x01, 0x02, 0x03, 0x04, 0x05, 0x02, 0x01, 0x01,
            ],
            // One integer only; a third one; bytes after the sequence.
            &[0x30, 0x03, 0x02, 0x01, 0x01],
            &[
                0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01,
            ],
            &[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00],
            // Not a sequence; not integers; truncated.
            &[0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
            &[0x30, 0x06, 0x04, 0x01, 0x01, 0x02, 0x01, 0x01],
            &[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01],
            &[],
        ] {
            assert!(ecdsa_signature(bad, &mut out).is_err(), "{bad:02X?}");
        }
    }

    #[test]
    fn converts_times() {
        let utc = |s: &[u8]| {
            time_to_unix(&Tlv {
                tag: tag::UTC_TIME,
                value: s,
                encoded: s,
            })
        };
        let generalized = |s: &[u8]| {
            time_to_unix(&Tlv {
                tag: tag::GENERALIZED_TIME,
                value: s,
                encoded: s,
            })
        };
        assert_eq!(utc(b"700101000000Z"), Ok(0));
        // GlobalSign Root CA (R1) expiry, 2028-01-28 12:00:00 UTC.
        assert_eq!(utc(b"280128120000Z"), Ok(1_832_673_600));
        assert_eq!(generalized(b"20280128120000Z"), Ok(1_832_673_600));
        assert_eq!(utc(b"000229000000Z"), Ok(951_782_400)); // leap day 2000
        assert_eq!(generalized(b"99991231235959Z"), Ok(253_402_300_799));
        for bad in [
            &b"010229000000Z"[..], // 2001 is not a leap year
            b"701301000000Z",
            b"700101240000Z",
            b"7001010000Z",
            b"700101000000+0100",
            b"7a0101000000Z",
            // Before the epoch (UTCTime 50-69 is 1950-1969).
            b"691231235959Z",
        ] {
            assert_eq!(utc(bad), Err(DerError::BadValue), "{bad:?}");
        }
        assert_eq!(generalized(b"19691231235959Z"), Err(DerError::BadValue));
    }

    /// Walks the calendar day by day from 1970 to the end of 9999: every
    /// valid date is the day after the previous one.
    #[test]
    fn every_day_follows_the_one_before() {
        let mut expected = 0;
        for year in 1970..=9999 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(
                        days_from_civil(year, month, day),
                        expected,
                        "{year}-{month}-{day}"
                    );
                    expected += 1;
                }
            }
        }
        assert_eq!(expected, 2_932_897);
    }
}
