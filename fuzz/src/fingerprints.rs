//! Target (d): the fingerprint parser, its error positions, and round trips
//! through every form it documents.

use mqtts::fingerprint::{Fingerprint, FingerprintError, HashAlgorithm, HexColons};
use mqtts::trust::Pin;
use std::fmt::Write as _;

/// Parses `data` (as text) every way the API offers and checks that they
/// agree; then round-trips the result, and the first 20 and 32 bytes of
/// `data` taken as digests, through each documented form.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    let parsed = Fingerprint::parse(text);
    let sha256 = Fingerprint::parse_sha256(text);

    assert_eq!(text.parse::<Fingerprint>(), parsed);
    assert_eq!(Pin::certificate(text), parsed.map(Pin::Certificate));
    assert_eq!(Pin::public_key(text), sha256.map(Pin::PublicKey));
    match (parsed, sha256) {
        (Ok(Fingerprint::Sha256(a)), Ok(b)) => assert_eq!(a, b),
        (Ok(Fingerprint::Sha1(_)), Err(FingerprintError::ExpectedSha256 { found: 20 })) => {}
        (Err(FingerprintError::WrongLength { found }), Err(e)) => {
            assert!(found != 20 && found != 32);
            assert_eq!(e, FingerprintError::ExpectedSha256 { found });
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        other => panic!("parse and parse_sha256 disagree: {other:?}"),
    }

    if let Err(e) = sha256 {
        assert!(!e.to_string().is_empty());
    }
    match parsed {
        Ok(fingerprint) => {
            assert_eq!(
                fingerprint.as_bytes().len(),
                fingerprint.algorithm().digest_len()
            );
            round_trip(&fingerprint);
        }
        Err(e) => check_error(text, e),
    }

    // The first 20 or 32 bytes taken as a digest, written in one of the
    // forms (chosen by the byte after them), parse back to it.
    for len in [20, 32] {
        if let Some(bytes) = data.get(..len) {
            let fingerprint = match len {
                20 => Fingerprint::Sha1(bytes.try_into().unwrap()),
                _ => Fingerprint::Sha256(bytes.try_into().unwrap()),
            };
            let choice = data.get(len).copied().unwrap_or(0);
            let form = form(&fingerprint, usize::from(choice) % FORMS);
            assert_eq!(Fingerprint::parse(&form), Ok(fingerprint), "form {form:?}");
        }
    }
}

/// An error names a real place in the text.
fn check_error(text: &str, error: FingerprintError) {
    let bytes = text.as_bytes();
    match error {
        FingerprintError::Empty => {
            // Nothing after the label (up to the first `=`) is a hex digit.
            let after_label = match bytes.iter().position(|&b| b == b'=') {
                Some(eq) => &bytes[eq + 1..],
                None => bytes,
            };
            assert!(!after_label.iter().any(u8::is_ascii_hexdigit), "{text:?}");
        }
        FingerprintError::InvalidCharacter { position, found } => {
            assert_eq!(bytes.get(position), Some(&found), "{error:?} in {text:?}");
        }
        FingerprintError::IncompleteByte { position } => {
            assert!(position < bytes.len(), "{error:?} in {text:?}");
            assert!(bytes[position].is_ascii_hexdigit(), "{error:?} in {text:?}");
        }
        FingerprintError::WrongLength { found } => assert!(found != 20 && found != 32),
        FingerprintError::ExpectedSha256 { .. } => panic!("parse never expects SHA-256"),
        _ => {}
    }
    // Display never fails and always says something.
    let mut message = String::new();
    write!(message, "{error}").unwrap();
    assert!(!message.is_empty());
}

/// How many forms [`form`] writes.
const FORMS: usize = 10;

/// The bytes as hex, each digit pair after `prefix`, joined by `separator`.
fn hex(bytes: &[u8], upper: bool, prefix: &str, separator: &str) -> String {
    let mut out = String::with_capacity(bytes.len() * (2 + prefix.len() + separator.len()));
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 {
            out.push_str(separator);
        }
        out.push_str(prefix);
        if upper {
            write!(out, "{byte:02X}").unwrap();
        } else {
            write!(out, "{byte:02x}").unwrap();
        }
    }
    out
}

/// `fingerprint` in the `index`th of the forms `Fingerprint::parse`
/// documents (built one at a time: this runs on every input).
fn form(fingerprint: &Fingerprint, index: usize) -> String {
    let bytes = fingerprint.as_bytes();
    let label = match fingerprint.algorithm() {
        HashAlgorithm::Sha1 => "SHA1",
        HashAlgorithm::Sha256 => "sha256",
    };
    match index {
        0 => fingerprint.to_string(),
        1 => hex(bytes, false, "", " "),
        2 => hex(bytes, true, "", "-"),
        3 => hex(bytes, false, "", ""),
        4 => format!("{{{}}}", hex(bytes, true, "0x", ", ")),
        5 => format!("[{}];", hex(bytes, false, "0x", ",")),
        6 => hex(bytes, false, "0x", ","),
        7 => format!("{label} Fingerprint={fingerprint}"),
        8 => format!(
            "uint8_t fp[{}] = {{{}}};",
            bytes.len(),
            hex(bytes, true, "0x", ", ")
        ),
        _ => format!("\t{}\r\n", hex(bytes, true, "", ":")),
    }
}

/// Every documented form of a parsed fingerprint parses back to it.
fn round_trip(fingerprint: &Fingerprint) {
    let display = fingerprint.to_string();
    assert_eq!(display, HexColons(fingerprint.as_bytes()).to_string());
    assert_eq!(display.len(), fingerprint.as_bytes().len() * 3 - 1);
    for index in 0..FORMS {
        let form = form(fingerprint, index);
        assert_eq!(Fingerprint::parse(&form), Ok(*fingerprint), "form {form:?}");
    }
    let pin = Pin::Certificate(*fingerprint);
    assert!(pin.to_string().ends_with(&display));
    let _ = format!("{fingerprint:?}");
}
