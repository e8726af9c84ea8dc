//! Certificate fingerprints for pinning the broker's certificate.
//!
//! A fingerprint is the SHA-1 (20 bytes) or SHA-256 (32 bytes) hash of the
//! certificate's DER encoding. [`Fingerprint::parse`] accepts the forms people
//! copy from browsers, `openssl x509 -fingerprint` and old Arduino sketches:
//!
//! | Form | Example |
//! |------|---------|
//! | colon separated | `3B:BC:95:...` |
//! | space separated | `3B BC 95 ...` |
//! | hyphen separated | `3B-BC-95-...` |
//! | plain hex, any case | `3bbc95...` |
//! | C or Rust array | `{0x3B, 0xBC, 0x95, ...}`, `[0x3B, ...]`, `0x3B,0xBC,...` |
//! | `openssl` output line | `sha256 Fingerprint=3B:BC:95:...` |
//!
//! Parsing is a `const fn`, so the [`fingerprint!`](crate::fingerprint!) and
//! [`sha256_fingerprint!`](crate::sha256_fingerprint!) macros turn a mistyped
//! literal into a compile error instead of a pinning failure on the device.
//!
//! ```
//! use mqtts::fingerprint::{Fingerprint, HashAlgorithm};
//!
//! const PIN: Fingerprint = mqtts::fingerprint!(
//!     "A9:99:3E:36:47:06:81:6A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9D"
//! );
//! assert_eq!(PIN.algorithm(), HashAlgorithm::Sha1);
//! // The same value, pasted from an Arduino sketch:
//! let pasted = Fingerprint::parse(
//!     "{0xA9, 0x99, 0x3E, 0x36, 0x47, 0x06, 0x81, 0x6A, 0xBA, 0x3E, \
//!       0x25, 0x71, 0x78, 0x50, 0xC2, 0x6C, 0x9C, 0xD0, 0xD8, 0x9D}",
//! );
//! assert_eq!(pasted, Ok(PIN));
//! // What the broker presented, e.g. when pinning fails:
//! assert_eq!(Fingerprint::sha1_of(b"abc"), PIN);
//! ```

use core::fmt;

/// Length in bytes of a SHA-1 fingerprint.
const SHA1_LEN: usize = 20;
/// Length in bytes of a SHA-256 fingerprint.
const SHA256_LEN: usize = 32;

/// Hash algorithm of a fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-1, 20-byte digest.
    Sha1,
    /// SHA-256, 32-byte digest.
    Sha256,
}

impl HashAlgorithm {
    /// Length of the digest in bytes: 20 for SHA-1, 32 for SHA-256.
    pub const fn digest_len(self) -> usize {
        match self {
            HashAlgorithm::Sha1 => SHA1_LEN,
            HashAlgorithm::Sha256 => SHA256_LEN,
        }
    }

    const fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha1 => "SHA-1",
            HashAlgorithm::Sha256 => "SHA-256",
        }
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for HashAlgorithm {
    fn format(&self, f: defmt::Formatter<'_>) {
        // Derive would print the variant name ("Sha1"); logs should use the
        // same spelling as Display.
        match self {
            HashAlgorithm::Sha1 => defmt::write!(f, "SHA-1"),
            HashAlgorithm::Sha256 => defmt::write!(f, "SHA-256"),
        }
    }
}

/// A certificate fingerprint: the hash of a certificate's DER encoding.
///
/// Displays as uppercase hex bytes separated by colons (`3B:BC:95:...`), the
/// form browsers and `openssl` print, and [`Fingerprint::parse`] reads back.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fingerprint {
    /// SHA-1 fingerprint (20 bytes).
    Sha1([u8; SHA1_LEN]),
    /// SHA-256 fingerprint (32 bytes).
    Sha256([u8; SHA256_LEN]),
}

impl Fingerprint {
    /// Parses a fingerprint written as hex; the number of bytes decides the
    /// algorithm (20 bytes: SHA-1, 32 bytes: SHA-256).
    ///
    /// Each byte is exactly two hex digits, in any case, optionally prefixed
    /// with `0x`. Bytes may be separated by any mix of whitespace, `:`, `-`
    /// and `,`, or not separated at all. The whole list may be wrapped in
    /// `{...}` or `[...]` (optionally followed by `;`), and everything up to
    /// and including the first `=` is ignored, so the line `openssl` prints
    /// and a C declaration can be pasted unchanged. Error positions are byte
    /// offsets into `text`.
    ///
    /// ```
    /// use mqtts::fingerprint::{Fingerprint, FingerprintError, HashAlgorithm};
    ///
    /// let colons = Fingerprint::parse(
    ///     "SHA1 Fingerprint=A9:99:3E:36:47:06:81:6A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9D",
    /// )?;
    /// let spaces = Fingerprint::parse(
    ///     "a9 99 3e 36 47 06 81 6a ba 3e 25 71 78 50 c2 6c 9c d0 d8 9d",
    /// )?;
    /// assert_eq!(colons, spaces);
    /// assert_eq!(colons.algorithm(), HashAlgorithm::Sha1);
    ///
    /// assert_eq!(
    ///     Fingerprint::parse("A9:99:3G"),
    ///     Err(FingerprintError::InvalidCharacter { position: 7, found: b'G' }),
    /// );
    /// # Ok::<(), FingerprintError>(())
    /// ```
    pub const fn parse(text: &str) -> Result<Fingerprint, FingerprintError> {
        let parsed = match parse_bytes(text) {
            Ok(parsed) => parsed,
            Err(e) => return Err(e),
        };
        match parsed.count {
            SHA1_LEN => {
                let mut out = [0u8; SHA1_LEN];
                let mut i = 0;
                while i < SHA1_LEN {
                    out[i] = parsed.bytes[i];
                    i += 1;
                }
                Ok(Fingerprint::Sha1(out))
            }
            SHA256_LEN => Ok(Fingerprint::Sha256(parsed.bytes)),
            found => Err(FingerprintError::WrongLength { found }),
        }
    }

    /// Parses a SHA-256 fingerprint: same syntax as [`Fingerprint::parse`],
    /// but the value must be 32 bytes.
    ///
    /// ```
    /// use mqtts::fingerprint::{Fingerprint, FingerprintError};
    ///
    /// let sha1 = "A9:99:3E:36:47:06:81:6A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9D";
    /// assert_eq!(
    ///     Fingerprint::parse_sha256(sha1),
    ///     Err(FingerprintError::ExpectedSha256 { found: 20 }),
    /// );
    /// ```
    pub const fn parse_sha256(text: &str) -> Result<[u8; SHA256_LEN], FingerprintError> {
        match parse_bytes(text) {
            Ok(parsed) if parsed.count == SHA256_LEN => Ok(parsed.bytes),
            Ok(parsed) => Err(FingerprintError::ExpectedSha256 {
                found: parsed.count,
            }),
            Err(e) => Err(e),
        }
    }

    /// The hash algorithm, implied by the length.
    pub const fn algorithm(&self) -> HashAlgorithm {
        match self {
            Fingerprint::Sha1(_) => HashAlgorithm::Sha1,
            Fingerprint::Sha256(_) => HashAlgorithm::Sha256,
        }
    }

    /// The digest bytes (20 or 32 of them).
    pub const fn as_bytes(&self) -> &[u8] {
        match self {
            Fingerprint::Sha1(bytes) => bytes,
            Fingerprint::Sha256(bytes) => bytes,
        }
    }

    /// SHA-1 fingerprint of `data`, typically a DER-encoded certificate.
    pub fn sha1_of(data: &[u8]) -> Fingerprint {
        use sha1::Digest as _;
        Fingerprint::Sha1(sha1::Sha1::digest(data).into())
    }

    /// SHA-256 fingerprint of `data`, typically a DER-encoded certificate.
    pub fn sha256_of(data: &[u8]) -> Fingerprint {
        use sha2::Digest as _;
        Fingerprint::Sha256(sha2::Sha256::digest(data).into())
    }
}

impl core::str::FromStr for Fingerprint {
    type Err = FingerprintError;

    /// Same as [`Fingerprint::parse`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Fingerprint::parse(text)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        HexColons(self.as_bytes()).fmt(f)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Derive would print a decimal byte array nobody can compare with
        // what the browser shows.
        let name = match self {
            Fingerprint::Sha1(_) => "Sha1",
            Fingerprint::Sha256(_) => "Sha256",
        };
        write!(f, "{name}({})", HexColons(self.as_bytes()))
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Fingerprint {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Fingerprint::Sha1(_) => defmt::write!(f, "Sha1("),
            Fingerprint::Sha256(_) => defmt::write!(f, "Sha256("),
        }
        defmt::Format::format(&HexColons(self.as_bytes()), f);
        defmt::write!(f, ")");
    }
}

/// Formats bytes as uppercase hex separated by colons: `AA:BB:CC`.
///
/// ```
/// use mqtts::fingerprint::HexColons;
///
/// struct Buf([u8; 16], usize);
/// impl core::fmt::Write for Buf {
///     fn write_str(&mut self, s: &str) -> core::fmt::Result {
///         let end = self.1 + s.len();
///         self.0.get_mut(self.1..end).ok_or(core::fmt::Error)?.copy_from_slice(s.as_bytes());
///         self.1 = end;
///         Ok(())
///     }
/// }
/// let mut buf = Buf([0; 16], 0);
/// core::fmt::write(&mut buf, format_args!("{}", HexColons(&[0x0a, 0xff, 0x3b]))).unwrap();
/// assert_eq!(&buf.0[..buf.1], b"0A:FF:3B");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HexColons<'a>(pub &'a [u8]);

impl fmt::Display for HexColons<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for byte in self.0 {
            if !first {
                f.write_str(":")?;
            }
            first = false;
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for HexColons<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        // defmt's slice hints print `[0x3b, 0xbc]`; users compare against the
        // colon form browsers show.
        let mut first = true;
        for byte in self.0 {
            if !first {
                defmt::write!(f, ":");
            }
            first = false;
            defmt::write!(f, "{=u8:02X}", *byte);
        }
    }
}

/// Why a fingerprint could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FingerprintError {
    /// The text contains no hex bytes (only whitespace, separators or a label).
    Empty,
    /// A character that is neither a hex digit nor an accepted separator.
    InvalidCharacter {
        /// Byte offset of the character in the input text.
        position: usize,
        /// The offending byte (the first byte of a multi-byte UTF-8 character).
        found: u8,
    },
    /// A byte written with a single hex digit, e.g. the `B` in `3B B C5`.
    IncompleteByte {
        /// Byte offset of the lone digit (or of the `0x` with no digits after it).
        position: usize,
    },
    /// The value is neither 20 bytes (SHA-1) nor 32 bytes (SHA-256).
    WrongLength {
        /// Number of bytes found.
        found: usize,
    },
    /// A SHA-256 fingerprint was required but the value is not 32 bytes.
    ExpectedSha256 {
        /// Number of bytes found.
        found: usize,
    },
}

impl FingerprintError {
    /// Panics with a fixed message describing the error.
    ///
    /// Used by [`fingerprint!`](crate::fingerprint!) and
    /// [`sha256_fingerprint!`](crate::sha256_fingerprint!): const evaluation
    /// cannot format values, so the message names only the kind of mistake;
    /// the compiler points at the literal.
    #[doc(hidden)]
    #[track_caller]
    pub const fn const_panic(self) -> ! {
        match self {
            FingerprintError::Empty => {
                panic!("fingerprint: empty (expected 20 or 32 bytes written as hex digits)")
            }
            FingerprintError::InvalidCharacter { .. } => panic!(
                "fingerprint: invalid character (expected hex digits separated by spaces or colons)"
            ),
            FingerprintError::IncompleteByte { .. } => panic!(
                "fingerprint: incomplete byte (each byte must be exactly two hex digits, e.g. 0B not B)"
            ),
            FingerprintError::WrongLength { .. } => {
                panic!("fingerprint: wrong length: expected 20 bytes (SHA-1) or 32 bytes (SHA-256)")
            }
            FingerprintError::ExpectedSha256 { found: SHA1_LEN } => panic!(
                "fingerprint: wrong length: this is a 20-byte SHA-1 fingerprint, expected 32 bytes (SHA-256)"
            ),
            FingerprintError::ExpectedSha256 { .. } => {
                panic!("fingerprint: wrong length: expected 32 bytes (SHA-256)")
            }
        }
    }
}

/// Writes `byte` the way a developer would recognise it in the source text.
struct ShownByte(u8);

impl fmt::Display for ShownByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            b'\'' => f.write_str("'\\''"),
            b'\\' => f.write_str("'\\\\'"),
            printable @ 0x20..=0x7e => write!(f, "'{}'", char::from(printable)),
            other => write!(f, "'\\x{other:02X}'"),
        }
    }
}

/// "1 byte" / "N bytes".
struct ByteCount(usize);

impl fmt::Display for ByteCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => f.write_str("1 byte"),
            n => write!(f, "{n} bytes"),
        }
    }
}

impl fmt::Display for FingerprintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FingerprintError::Empty => f.write_str(
                "the fingerprint contains no hex bytes; expected 20 bytes (SHA-1) or \
                 32 bytes (SHA-256) written as hex, e.g. \"3B:BC:95:...\"",
            ),
            FingerprintError::InvalidCharacter { position, found } => write!(
                f,
                "invalid character {} at byte offset {position} of the fingerprint; \
                 expected a hex digit (0-9, A-F) or a separator (space, ':', '-' or ',')",
                ShownByte(found),
            ),
            FingerprintError::IncompleteByte { position } => write!(
                f,
                "incomplete byte at byte offset {position} of the fingerprint; each byte \
                 must be exactly two hex digits (write \"0B\", not \"B\")",
            ),
            FingerprintError::WrongLength { found } => write!(
                f,
                "wrong fingerprint length: found {}; a fingerprint is 20 bytes (SHA-1) \
                 or 32 bytes (SHA-256)",
                ByteCount(found),
            ),
            FingerprintError::ExpectedSha256 { found } => {
                write!(
                    f,
                    "wrong fingerprint length: found {}; a SHA-256 fingerprint is 32 bytes",
                    ByteCount(found),
                )?;
                if found == SHA1_LEN {
                    f.write_str(
                        " (a 20-byte fingerprint is SHA-1; use the certificate's \
                         SHA-256 fingerprint instead)",
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl core::error::Error for FingerprintError {}

#[cfg(feature = "defmt")]
impl defmt::Format for FingerprintError {
    fn format(&self, f: defmt::Formatter<'_>) {
        match *self {
            FingerprintError::Empty => defmt::write!(
                f,
                "the fingerprint contains no hex bytes; expected 20 bytes (SHA-1) or 32 bytes (SHA-256)"
            ),
            FingerprintError::InvalidCharacter { position, found } => defmt::write!(
                f,
                "invalid character 0x{=u8:02X} at byte offset {=usize} of the fingerprint; expected a hex digit or a separator (space, ':', '-' or ',')",
                found,
                position
            ),
            FingerprintError::IncompleteByte { position } => defmt::write!(
                f,
                "incomplete byte at byte offset {=usize} of the fingerprint; each byte must be exactly two hex digits",
                position
            ),
            FingerprintError::WrongLength { found } => defmt::write!(
                f,
                "wrong fingerprint length: found {=usize} bytes; a fingerprint is 20 bytes (SHA-1) or 32 bytes (SHA-256)",
                found
            ),
            FingerprintError::ExpectedSha256 { found } => {
                defmt::write!(
                    f,
                    "wrong fingerprint length: found {=usize} bytes; a SHA-256 fingerprint is 32 bytes",
                    found
                );
                if found == SHA1_LEN {
                    defmt::write!(f, " (a 20-byte fingerprint is SHA-1)");
                }
            }
        }
    }
}

/// Parses a fingerprint literal at compile time into a [`Fingerprint`].
///
/// The argument must be a constant `&str` in any syntax [`Fingerprint::parse`]
/// accepts; the length decides between SHA-1 and SHA-256.
///
/// [`Fingerprint`]: crate::fingerprint::Fingerprint
/// [`Fingerprint::parse`]: crate::fingerprint::Fingerprint::parse
///
/// ```
/// use mqtts::fingerprint::Fingerprint;
///
/// const BROKER: Fingerprint = mqtts::fingerprint!(
///     "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
/// );
/// assert_eq!(BROKER, Fingerprint::sha256_of(b"abc"));
/// ```
///
/// A mistyped literal is a compile error (here a byte lost a digit):
///
/// ```compile_fail,E0080
/// let fp = mqtts::fingerprint!("A9:99:3E:36:47:06:81:6A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9");
/// ```
#[macro_export]
macro_rules! fingerprint {
    ($text:expr $(,)?) => {
        const {
            match $crate::fingerprint::Fingerprint::parse($text) {
                ::core::result::Result::Ok(fingerprint) => fingerprint,
                ::core::result::Result::Err(error) => error.const_panic(),
            }
        }
    };
}

/// Parses a SHA-256 fingerprint literal at compile time into a `[u8; 32]`.
///
/// Accepts the same syntax as
/// [`Fingerprint::parse`](crate::fingerprint::Fingerprint::parse); anything
/// other than 32 bytes, including a 20-byte SHA-1 value, is a compile error.
///
/// ```
/// use mqtts::fingerprint::Fingerprint;
///
/// const PIN: [u8; 32] = mqtts::sha256_fingerprint!(
///     "sha256 Fingerprint=BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
/// );
/// assert_eq!(Fingerprint::Sha256(PIN), Fingerprint::sha256_of(b"abc"));
/// ```
///
/// ```compile_fail,E0080
/// // A SHA-1 fingerprint where SHA-256 is required.
/// let pin = mqtts::sha256_fingerprint!("A9:99:3E:36:47:06:81:6A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9D");
/// ```
#[macro_export]
macro_rules! sha256_fingerprint {
    ($text:expr $(,)?) => {
        const {
            match $crate::fingerprint::Fingerprint::parse_sha256($text) {
                ::core::result::Result::Ok(bytes) => bytes,
                ::core::result::Result::Err(error) => error.const_panic(),
            }
        }
    };
}

/// Bytes read from a fingerprint text.
struct Parsed {
    /// The first 32 bytes; anything longer is an error, so the rest are only
    /// counted.
    bytes: [u8; SHA256_LEN],
    /// How many bytes the text holds, which may exceed 32.
    count: usize,
}

/// What a character can be where a hex digit is expected.
enum Expected {
    Digit(u8),
    /// End of text, a separator or the closing bracket: the byte stops short.
    Missing,
    Invalid(u8),
}

const fn at(text: &[u8], index: usize) -> Option<u8> {
    if index < text.len() {
        Some(text[index])
    } else {
        None
    }
}

const fn is_separator(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b':' | b'-' | b',')
}

const fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

const fn classify(text: &[u8], index: usize, closer: Option<u8>) -> Expected {
    let Some(c) = at(text, index) else {
        return Expected::Missing;
    };
    if let Some(value) = hex_value(c) {
        return Expected::Digit(value);
    }
    let is_closer = match closer {
        Some(closer) => c == closer,
        None => false,
    };
    if is_separator(c) || is_closer {
        Expected::Missing
    } else {
        Expected::Invalid(c)
    }
}

/// Reads every byte in `text`, checking syntax but not length.
const fn parse_bytes(text: &str) -> Result<Parsed, FingerprintError> {
    let text = text.as_bytes();
    let mut parsed = Parsed {
        bytes: [0; SHA256_LEN],
        count: 0,
    };

    // `openssl x509 -fingerprint` prints "sha256 Fingerprint=AB:CD:...", and a
    // C declaration reads "uint8_t fp[20] = {...};": the label is noise.
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'=' {
            break;
        }
        i += 1;
    }
    i = if i < text.len() { i + 1 } else { 0 };

    // The bracket that closes an opening `{` or `[`, while it is still open.
    let mut closer: Option<u8> = None;
    let mut closed = false;
    let mut semicolon = false;

    while i < text.len() {
        let c = text[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if closed {
            // After the closing bracket only the `;` of a pasted C or Rust
            // statement may follow.
            if c == b';' && !semicolon {
                semicolon = true;
                i += 1;
                continue;
            }
            return Err(FingerprintError::InvalidCharacter {
                position: i,
                found: c,
            });
        }
        if is_separator(c) {
            i += 1;
            continue;
        }
        if (c == b'{' || c == b'[') && closer.is_none() && parsed.count == 0 {
            closer = Some(if c == b'{' { b'}' } else { b']' });
            i += 1;
            continue;
        }
        if let Some(expected) = closer
            && c == expected
        {
            closed = true;
            i += 1;
            continue;
        }

        let start = i;
        if c == b'0' && matches!(at(text, i + 1), Some(b'x' | b'X')) {
            i += 2;
        }
        let high = match classify(text, i, closer) {
            Expected::Digit(value) => value,
            // Only reachable after "0x": the prefix carries no digits.
            Expected::Missing => return Err(FingerprintError::IncompleteByte { position: start }),
            Expected::Invalid(found) => {
                return Err(FingerprintError::InvalidCharacter { position: i, found });
            }
        };
        let low = match classify(text, i + 1, closer) {
            Expected::Digit(value) => value,
            Expected::Missing => return Err(FingerprintError::IncompleteByte { position: i }),
            Expected::Invalid(found) => {
                return Err(FingerprintError::InvalidCharacter {
                    position: i + 1,
                    found,
                });
            }
        };
        i += 2;

        if parsed.count < SHA256_LEN {
            parsed.bytes[parsed.count] = (high << 4) | low;
        }
        // Saturating so that absurdly long input still reports a length
        // instead of overflowing; it cannot exceed `text.len()` anyway.
        parsed.count = parsed.count.saturating_add(1);
    }

    if parsed.count == 0 {
        Err(FingerprintError::Empty)
    } else {
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write as _;

    const ABC_SHA1: [u8; 20] = [
        0xA9, 0x99, 0x3E, 0x36, 0x47, 0x06, 0x81, 0x6A, 0xBA, 0x3E, 0x25, 0x71, 0x78, 0x50, 0xC2,
        0x6C, 0x9C, 0xD0, 0xD8, 0x9D,
    ];
    const ABC_SHA256: [u8; 32] = [
        0xBA, 0x78, 0x16, 0xBF, 0x8F, 0x01, 0xCF, 0xEA, 0x41, 0x41, 0x40, 0xDE, 0x5D, 0xAE, 0x22,
        0x23, 0xB0, 0x03, 0x61, 0xA3, 0x96, 0x17, 0x7A, 0x9C, 0xB4, 0x10, 0xFF, 0x61, 0xF2, 0x00,
        0x15, 0xAD,
    ];
    const ABC_SHA1_TEXT: &str = "A9:99:3E:36:47:06:81:6A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9D";
    const ABC_SHA256_TEXT: &str = "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
                                   B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD";

    const FP: Fingerprint = crate::fingerprint!(
        "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
    );
    const FP_SHA1: Fingerprint = crate::fingerprint!(ABC_SHA1_TEXT);
    const PIN: [u8; 32] = crate::sha256_fingerprint!(
        "{0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad}"
    );
    const PARSED_IN_CONST: Result<Fingerprint, FingerprintError> = Fingerprint::parse("3B:BC:9Z");

    /// Fixed-size `fmt::Write` sink, since the crate has no `alloc`.
    struct Buf {
        data: [u8; 512],
        len: usize,
    }

    impl Buf {
        fn new() -> Self {
            Buf {
                data: [0; 512],
                len: 0,
            }
        }

        fn as_str(&self) -> &str {
            core::str::from_utf8(self.data.get(..self.len).unwrap_or_default()).unwrap_or("<utf8>")
        }
    }

    impl fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.len + s.len();
            let dest = self.data.get_mut(self.len..end).ok_or(fmt::Error)?;
            dest.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }

    fn show(value: impl fmt::Display) -> Buf {
        let mut buf = Buf::new();
        assert!(write!(buf, "{value}").is_ok(), "buffer too small");
        buf
    }

    fn show_debug(value: impl fmt::Debug) -> Buf {
        let mut buf = Buf::new();
        assert!(write!(buf, "{value:?}").is_ok(), "buffer too small");
        buf
    }

    /// `count` bytes 00, 01, 02, ... as hex, each followed by `sep`.
    fn hex_text(count: usize, sep: &str) -> Buf {
        let mut buf = Buf::new();
        for i in 0..count {
            assert!(
                write!(buf, "{:02x}{sep}", i % 256).is_ok(),
                "buffer too small"
            );
        }
        buf
    }

    #[test]
    fn hashes_match_known_test_vectors() {
        assert_eq!(Fingerprint::sha1_of(b"abc"), Fingerprint::Sha1(ABC_SHA1));
        assert_eq!(
            Fingerprint::sha256_of(b"abc"),
            Fingerprint::Sha256(ABC_SHA256)
        );
    }

    #[test]
    fn every_sha1_form_parses_to_the_same_value() {
        let forms = [
            ABC_SHA1_TEXT,
            "a9:99:3e:36:47:06:81:6a:ba:3e:25:71:78:50:c2:6c:9c:d0:d8:9d",
            "A9 99 3E 36 47 06 81 6A BA 3E 25 71 78 50 C2 6C 9C D0 D8 9D",
            "  A9  99\t3E 36 47 06 81 6A BA 3E\n25 71 78 50 C2 6C 9C D0 D8 9D \r\n",
            "a9993e364706816aba3e25717850c26c9cd0d89d",
            "A9993E364706816ABA3E25717850C26C9CD0D89D",
            "A9-99-3E-36-47-06-81-6A-BA-3E-25-71-78-50-C2-6C-9C-D0-D8-9D",
            "{0xA9, 0x99, 0x3E, 0x36, 0x47, 0x06, 0x81, 0x6A, 0xBA, 0x3E, \
             0x25, 0x71, 0x78, 0x50, 0xC2, 0x6C, 0x9C, 0xD0, 0xD8, 0x9D}",
            "{ 0xa9,0x99,0x3e,0x36,0x47,0x06,0x81,0x6a,0xba,0x3e,\
             0x25,0x71,0x78,0x50,0xc2,0x6c,0x9c,0xd0,0xd8,0x9d, }",
            "0XA9,0X99,0X3E,0X36,0X47,0X06,0X81,0X6A,0XBA,0X3E,\
             0X25,0X71,0X78,0X50,0XC2,0X6C,0X9C,0XD0,0XD8,0X9D",
            "0xa9993e364706816aba3e25717850c26c9cd0d89d",
            "SHA1 Fingerprint=A9:99:3E:36:47:06:81:6A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9D",
            "sha1 Fingerprint=A9:99:3E:36:47:06:81:6A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9D\n",
            "const uint8_t fingerprint[20] = {0xA9, 0x99, 0x3E, 0x36, 0x47, 0x06, 0x81, \
             0x6A, 0xBA, 0x3E, 0x25, 0x71, 0x78, 0x50, 0xC2, 0x6C, 0x9C, 0xD0, 0xD8, 0x9D};",
            "const FP: [u8; 20] = [0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, \
             0x3e, 0x25, 0x71, 0x78, 0x50, 0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d];",
            "A9:99 3e-36,47 06816A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9D",
        ];
        for form in forms {
            assert_eq!(
                Fingerprint::parse(form),
                Ok(Fingerprint::Sha1(ABC_SHA1)),
                "{form}"
            );
        }
    }

    #[test]
    fn every_sha256_form_parses_to_the_same_value() {
        let forms = [
            ABC_SHA256_TEXT,
            "sha256 Fingerprint=BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "BA 78 16 BF 8F 01 CF EA 41 41 40 DE 5D AE 22 23 \
             B0 03 61 A3 96 17 7A 9C B4 10 FF 61 F2 00 15 AD",
            "ba-78-16-bf-8f-01-cf-ea-41-41-40-de-5d-ae-22-23-\
             b0-03-61-a3-96-17-7a-9c-b4-10-ff-61-f2-00-15-ad",
            "{0xBA,0x78,0x16,0xBF,0x8F,0x01,0xCF,0xEA,0x41,0x41,0x40,0xDE,0x5D,0xAE,0x22,0x23,\
             0xB0,0x03,0x61,0xA3,0x96,0x17,0x7A,0x9C,0xB4,0x10,0xFF,0x61,0xF2,0x00,0x15,0xAD}",
        ];
        for form in forms {
            assert_eq!(
                Fingerprint::parse(form),
                Ok(Fingerprint::Sha256(ABC_SHA256)),
                "{form}"
            );
            assert_eq!(Fingerprint::parse_sha256(form), Ok(ABC_SHA256), "{form}");
        }
    }

    #[test]
    fn macros_evaluate_at_compile_time() {
        assert_eq!(FP, Fingerprint::sha256_of(b"abc"));
        assert_eq!(FP_SHA1, Fingerprint::sha1_of(b"abc"));
        assert_eq!(PIN, ABC_SHA256);
        assert_eq!(
            PARSED_IN_CONST,
            Err(FingerprintError::InvalidCharacter {
                position: 7,
                found: b'Z'
            })
        );
    }

    #[test]
    fn display_is_uppercase_colon_hex_and_round_trips() {
        let sha1 = Fingerprint::sha1_of(b"abc");
        let sha256 = Fingerprint::sha256_of(b"abc");
        assert_eq!(show(sha1).as_str(), ABC_SHA1_TEXT);
        assert_eq!(
            show(sha256).as_str(),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
        assert_eq!(Fingerprint::parse(show(sha1).as_str()), Ok(sha1));
        assert_eq!(Fingerprint::parse(show(sha256).as_str()), Ok(sha256));
        assert_eq!(
            show_debug(sha1).as_str(),
            "Sha1(A9:99:3E:36:47:06:81:6A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9D)"
        );
        assert!(show_debug(sha256).as_str().starts_with("Sha256(BA:78:16:"));
        assert!(show_debug(sha256).as_str().ends_with(":15:AD)"));
    }

    #[test]
    fn hex_colons_formats_any_slice() {
        assert_eq!(show(HexColons(&[])).as_str(), "");
        assert_eq!(show(HexColons(&[0x0a])).as_str(), "0A");
        assert_eq!(show(HexColons(&[0x00, 0xff, 0x3b])).as_str(), "00:FF:3B");
    }

    #[test]
    fn accessors() {
        let sha1 = Fingerprint::Sha1(ABC_SHA1);
        let sha256 = Fingerprint::Sha256(ABC_SHA256);
        assert_eq!(sha1.algorithm(), HashAlgorithm::Sha1);
        assert_eq!(sha256.algorithm(), HashAlgorithm::Sha256);
        assert_eq!(sha1.as_bytes(), &ABC_SHA1[..]);
        assert_eq!(sha256.as_bytes(), &ABC_SHA256[..]);
        assert_eq!(HashAlgorithm::Sha1.digest_len(), 20);
        assert_eq!(HashAlgorithm::Sha256.digest_len(), 32);
        assert_eq!(show(HashAlgorithm::Sha1).as_str(), "SHA-1");
        assert_eq!(show(HashAlgorithm::Sha256).as_str(), "SHA-256");
        assert_eq!(ABC_SHA1_TEXT.parse::<Fingerprint>(), Ok(sha1));
    }

    #[test]
    fn empty_inputs() {
        for text in [
            "",
            "   ",
            " \n\t ",
            ":::",
            "- , :",
            "SHA1 Fingerprint=",
            "{}",
            "[ ];",
            "x = { };",
        ] {
            assert_eq!(
                Fingerprint::parse(text),
                Err(FingerprintError::Empty),
                "{text:?}"
            );
            assert_eq!(
                Fingerprint::parse_sha256(text),
                Err(FingerprintError::Empty),
                "{text:?}"
            );
        }
    }

    #[test]
    fn invalid_characters_report_offset_and_byte() {
        let cases: [(&str, usize, u8); 14] = [
            ("3B:BC:G5", 6, b'G'),
            ("3B:BC:5G", 7, b'G'),
            ("3B;BC", 2, b';'),
            ("3B é", 3, 0xC3),
            ("3B\0BC", 2, 0),
            ("SHA1 Fingerprint=3B:ZZ", 20, b'Z'),
            ("a=3B=BC", 4, b'='),
            ("3B BC}", 5, b'}'),
            ("3B {BC}", 3, b'{'),
            ("{3B BC]", 6, b']'),
            ("{3B BC} 12", 8, b'1'),
            ("{3B BC};;", 8, b';'),
            ("0xZZ", 2, b'Z'),
            ("0x0x3B", 3, b'x'),
        ];
        for (text, position, found) in cases {
            assert_eq!(
                Fingerprint::parse(text),
                Err(FingerprintError::InvalidCharacter { position, found }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn incomplete_bytes_report_the_lone_digit() {
        let cases: [(&str, usize); 9] = [
            ("3B B C5", 3),
            ("3B:B", 3),
            ("B", 0),
            ("3:B", 0),
            ("0x3", 2),
            ("0x3B, 0xC, 0x95", 8),
            ("{0x3B, 0xC}", 9),
            ("0x", 0),
            ("3B, 0x, 95", 4),
        ];
        for (text, position) in cases {
            assert_eq!(
                Fingerprint::parse(text),
                Err(FingerprintError::IncompleteByte { position }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn wrong_lengths_are_counted() {
        for count in [1, 19, 21, 31, 33, 64, 100] {
            for sep in ["", ":", " "] {
                let text = hex_text(count, sep);
                assert_eq!(
                    Fingerprint::parse(text.as_str()),
                    Err(FingerprintError::WrongLength { found: count }),
                    "{count} bytes, separator {sep:?}"
                );
                assert_eq!(
                    Fingerprint::parse_sha256(text.as_str()),
                    Err(FingerprintError::ExpectedSha256 { found: count }),
                );
            }
        }
        assert_eq!(
            Fingerprint::parse(hex_text(20, "").as_str()).map(|f| f.algorithm()),
            Ok(HashAlgorithm::Sha1)
        );
        assert_eq!(
            Fingerprint::parse(hex_text(32, "").as_str()).map(|f| f.algorithm()),
            Ok(HashAlgorithm::Sha256)
        );
        assert_eq!(
            Fingerprint::parse_sha256(ABC_SHA1_TEXT),
            Err(FingerprintError::ExpectedSha256 { found: 20 })
        );
    }

    #[test]
    fn errors_after_32_bytes_keep_their_position() {
        let mut text = hex_text(40, ":");
        assert!(text.write_str("3B:X").is_ok());
        assert_eq!(
            Fingerprint::parse(text.as_str()),
            Err(FingerprintError::InvalidCharacter {
                position: 123,
                found: b'X'
            })
        );
    }

    #[test]
    fn error_messages_name_what_was_found() {
        let invalid = show(FingerprintError::InvalidCharacter {
            position: 17,
            found: b'G',
        });
        assert!(invalid.as_str().contains("'G'"), "{}", invalid.as_str());
        assert!(invalid.as_str().contains("17"), "{}", invalid.as_str());
        assert!(
            invalid.as_str().contains("hex digit"),
            "{}",
            invalid.as_str()
        );

        let unprintable = show(FingerprintError::InvalidCharacter {
            position: 3,
            found: 0xC3,
        });
        assert!(
            unprintable.as_str().contains("'\\xC3'"),
            "{}",
            unprintable.as_str()
        );

        let incomplete = show(FingerprintError::IncompleteByte { position: 42 });
        assert!(
            incomplete.as_str().contains("42"),
            "{}",
            incomplete.as_str()
        );
        assert!(
            incomplete.as_str().contains("two hex digits"),
            "{}",
            incomplete.as_str()
        );

        let wrong = show(FingerprintError::WrongLength { found: 19 });
        assert!(
            wrong.as_str().contains("found 19 bytes"),
            "{}",
            wrong.as_str()
        );
        assert!(
            wrong.as_str().contains("20 bytes (SHA-1)"),
            "{}",
            wrong.as_str()
        );
        assert!(
            wrong.as_str().contains("32 bytes (SHA-256)"),
            "{}",
            wrong.as_str()
        );
        let one = show(FingerprintError::WrongLength { found: 1 });
        assert!(one.as_str().contains("found 1 byte;"), "{}", one.as_str());

        let not_sha256 = show(FingerprintError::ExpectedSha256 { found: 31 });
        assert!(
            not_sha256.as_str().contains("found 31 bytes"),
            "{}",
            not_sha256.as_str()
        );
        assert!(
            not_sha256.as_str().contains("SHA-256"),
            "{}",
            not_sha256.as_str()
        );
        assert!(
            !not_sha256.as_str().contains("SHA-1"),
            "{}",
            not_sha256.as_str()
        );
        let sha1 = show(FingerprintError::ExpectedSha256 { found: 20 });
        assert!(
            sha1.as_str().contains("found 20 bytes"),
            "{}",
            sha1.as_str()
        );
        assert!(sha1.as_str().contains("SHA-1"), "{}", sha1.as_str());

        let empty = show(FingerprintError::Empty);
        assert!(
            empty.as_str().contains("no hex bytes"),
            "{}",
            empty.as_str()
        );
    }

    #[test]
    #[should_panic(expected = "fingerprint: invalid character")]
    fn const_panic_names_invalid_character() {
        FingerprintError::InvalidCharacter {
            position: 0,
            found: b'G',
        }
        .const_panic();
    }

    #[test]
    #[should_panic(expected = "fingerprint: wrong length: this is a 20-byte SHA-1 fingerprint")]
    fn const_panic_names_sha1_where_sha256_is_required() {
        FingerprintError::ExpectedSha256 { found: 20 }.const_panic();
    }
}
