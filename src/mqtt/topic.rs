//! Topic names and topic filters (MQTT 3.1.1 §4.7, §1.5.3).

/// Why a topic name or filter is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TopicError {
    /// Topics are at least one character long (§4.7.3).
    Empty,
    /// Longer than 65,535 bytes of UTF-8 (§1.5.3).
    TooLong,
    /// Not well-formed UTF-8 (§1.5.3).
    InvalidUtf8,
    /// Contains U+0000 (§1.5.3).
    NullCharacter,
    /// A topic name (what is published to) contains `+` or `#` (§4.7.1).
    Wildcard,
    /// In a filter, `#` is not alone as the last level, or `+` is not a whole level (§4.7.1.2, §4.7.1.3).
    MisplacedWildcard,
}

impl core::fmt::Display for TopicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Empty => "the topic is empty",
            Self::TooLong => "the topic is longer than 65,535 bytes",
            Self::InvalidUtf8 => "the topic is not valid UTF-8",
            Self::NullCharacter => "the topic contains a NUL character",
            Self::Wildcard => "a topic name cannot contain the wildcards '+' or '#'",
            Self::MisplacedWildcard => {
                "'#' must be the last level alone and '+' a whole level (e.g. \"a/+/b\", \"a/#\")"
            }
        })
    }
}

impl core::error::Error for TopicError {}

/// The checks every topic name and filter needs: not empty, not longer
/// than a 16-bit length prefix allows.
fn check_length(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        Err(TopicError::Empty)
    } else if topic.len() > usize::from(u16::MAX) {
        Err(TopicError::TooLong)
    } else {
        Ok(())
    }
}

/// Checks a topic name, as published to (§4.7): no wildcards.
pub fn validate_name(topic: &str) -> Result<(), TopicError> {
    check_length(topic)?;
    // One pass over the bytes (this runs for every message published and
    // received): NUL, '+' and '#' are single bytes that never occur inside
    // a multi-byte UTF-8 sequence. NUL is reported before a wildcard.
    let mut wildcard = false;
    for &byte in topic.as_bytes() {
        match byte {
            0 => return Err(TopicError::NullCharacter),
            b'+' | b'#' => wildcard = true,
            _ => {}
        }
    }
    if wildcard {
        Err(TopicError::Wildcard)
    } else {
        Ok(())
    }
}

/// Checks a topic name received as bytes.
pub(crate) fn validate_name_bytes(topic: &[u8]) -> Result<&str, TopicError> {
    let topic = core::str::from_utf8(topic).map_err(|_| TopicError::InvalidUtf8)?;
    validate_name(topic).map(|()| topic)
}

/// Checks a topic filter, as subscribed to (§4.7.1): `+` matches one whole
/// level, `#` the rest and must come last.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    check_length(filter)?;
    // One pass, byte by byte (as `validate_name`, without a separate
    // search for NUL): a wildcard is a whole level when the bytes around
    // it are '/' or the ends of the filter. NUL is reported before a
    // misplaced wildcard, wherever each is.
    let bytes = filter.as_bytes();
    let mut misplaced = false;
    for (i, &byte) in bytes.iter().enumerate() {
        let starts_level = i == 0 || bytes.get(i - 1) == Some(&b'/');
        let next = bytes.get(i + 1);
        let whole_level = starts_level && matches!(next, None | Some(b'/'));
        match byte {
            0 => return Err(TopicError::NullCharacter),
            b'+' if !whole_level => misplaced = true,
            b'#' if !(starts_level && next.is_none()) => misplaced = true,
            _ => {}
        }
    }
    if misplaced {
        Err(TopicError::MisplacedWildcard)
    } else {
        Ok(())
    }
}

/// Whether a topic name matches a filter (§4.7). Topics starting with `$`
/// are not matched by filters starting with a wildcard (§4.7.2).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for filter_level in filter.split('/') {
        match (filter_level, topic_levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(validate_name("a/b/c"), Ok(()));
        assert_eq!(validate_name("/"), Ok(()));
        assert_eq!(validate_name("flespi/state"), Ok(()));
        assert_eq!(validate_name(""), Err(TopicError::Empty));
        assert_eq!(validate_name("a/+"), Err(TopicError::Wildcard));
        assert_eq!(validate_name("a#"), Err(TopicError::Wildcard));
        assert_eq!(validate_name("a\0b"), Err(TopicError::NullCharacter));
        assert_eq!(
            validate_name_bytes(&[0xC3, 0x28]),
            Err(TopicError::InvalidUtf8)
        );
        let long = "x".repeat(65_536);
        assert_eq!(validate_name(&long), Err(TopicError::TooLong));
        assert_eq!(validate_name(&long[1..]), Ok(()));
    }

    #[test]
    fn filters() {
        for ok in [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/+",
            "a//b",
            "sport/tennis/#",
            "$SYS/#",
        ] {
            assert_eq!(validate_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["a/#/b", "a#", "#/", "a+/b", "a/b+", "##", "+a"] {
            assert_eq!(
                validate_filter(bad),
                Err(TopicError::MisplacedWildcard),
                "{bad}"
            );
        }
        assert_eq!(validate_filter(""), Err(TopicError::Empty));
        // NUL wins over a misplaced wildcard, before or after it.
        assert_eq!(validate_filter("a+/\0"), Err(TopicError::NullCharacter));
        assert_eq!(validate_filter("\0/a#"), Err(TopicError::NullCharacter));
        assert_eq!(validate_filter("a/\0/#"), Err(TopicError::NullCharacter));
        assert_eq!(
            validate_filter(&"x".repeat(65_536)),
            Err(TopicError::TooLong)
        );
    }

    #[test]
    fn matching_follows_the_specification_examples() {
        // §4.7.1.2 and §4.7.1.3
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        // §4.7.2
        assert!(!matches("#", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
    }
}
