//! The modem's byte stream, parsed without I/O: feed it the bytes read from
//! the UART, in whatever pieces they came, and get one [`Event`] at a time.
//!
//! The AT firmware mixes three kinds of output on one serial line:
//! - lines ended by `\r\n`: final results (`OK`, `ERROR`, `SEND OK`, ...),
//!   unsolicited reports (`WIFI GOT IP`, `CLOSED`, `+IPD,<len>`) and
//!   command echoes (`AT...`, until `ATE0`);
//! - the `>` prompt of `AT+CIPSEND`, which no line ending follows;
//! - binary socket data after a header that no line ending follows either:
//!   `+CIPRECVDATA:<len>,` (ESP-AT 2.x passive mode), `+CIPRECVDATA,<len>:`
//!   (NONOS AT 1.x) or `+IPD,<len>:` (active mode). The next `<len>` bytes
//!   are data, whatever they are, and are handed over as [`Event::Data`]
//!   borrowed from the input: nothing is copied here.
//!
//! Nothing here allocates, panics or indexes out of bounds: a line longer
//! than [`MAX_LINE`], a control byte inside a line or a malformed length
//! is a [`ParseError`].

/// The longest line kept (results, reports, echoes). ESP-AT's longest
/// replies to the commands mqtts sends are well under it; an echoed
/// `AT+CWJAP="<32-byte SSID>","<64-byte password>"` is 112 bytes.
pub const MAX_LINE: usize = 160;

/// The largest data length a header may announce: `AT+CIPRECVDATA` and
/// `+IPD` carry at most a few KB on an ESP8266; five digits are plenty.
pub const MAX_DATA_LEN: usize = 65_535;

/// Something the modem said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event<'a> {
    /// `OK`: the command succeeded.
    Ok,
    /// `ERROR`: the command failed.
    Error,
    /// `FAIL`: `AT+CWJAP` failed (NONOS AT 1.x; ESP-AT 2.x says `ERROR`).
    Fail,
    /// `SEND OK`: the data of `AT+CIPSEND` went out.
    SendOk,
    /// `SEND FAIL`: it did not.
    SendFail,
    /// `>`: `AT+CIPSEND` waits for the data.
    Prompt,
    /// `busy p...` or `busy s...`: the modem is still processing the
    /// previous command and dropped the new one.
    Busy,
    /// `CONNECT`: the TCP connection is open.
    Connect,
    /// `CLOSED`: the TCP connection is closed (by the peer, by the modem
    /// after a Wi-Fi loss, or because `AT+CIPSTART` failed).
    Closed,
    /// `ALREADY CONNECTED`: `AT+CIPSTART` while a connection is open.
    AlreadyConnected,
    /// `DNS Fail`: `AT+CIPSTART` could not resolve the host name.
    DnsFail,
    /// `WIFI CONNECTED`: associated with the access point.
    WifiConnected,
    /// `WIFI GOT IP`: DHCP done.
    WifiGotIp,
    /// `WIFI DISCONNECT`: the station lost the access point.
    WifiDisconnect,
    /// `+CWJAP:<code>`: why `AT+CWJAP` failed (1 timeout, 2 wrong password,
    /// 3 access point not found, 4 connection failed).
    JoinFailure(u8),
    /// `STATUS:<n>`: the station's state, from `AT+CIPSTATUS`.
    Status(u8),
    /// `+IPD,<len>` (passive mode): the modem holds received data for us.
    DataAvailable(usize),
    /// `+IPD,<len>:` or `+CIPRECVDATA:<len>,`: the next `len` bytes are data.
    DataStart(usize),
    /// Socket data (part of the `len` bytes announced by [`Event::DataStart`]).
    Data(&'a [u8]),
    /// `ready`: the modem (re)started.
    Ready,
    /// A command echoed back (`AT...`), before `ATE0` turns echo off.
    Echo,
    /// Any other line (`Recv 5 bytes`, version strings, ...).
    Other,
}

/// Bytes that are not the AT protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ParseError {
    /// A line longer than [`MAX_LINE`] bytes.
    LineTooLong,
    /// A control byte inside a line (wrong baud rate, noise on the wire, a
    /// modem printing its boot log at 74,880 baud).
    Garbage(u8),
    /// A data length (`+IPD`, `+CIPRECVDATA`) that is not a number or is
    /// larger than [`MAX_DATA_LEN`].
    BadLength,
}

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::LineTooLong => write!(f, "a reply line is longer than {MAX_LINE} bytes"),
            Self::Garbage(byte) => write!(
                f,
                "control byte 0x{byte:02x} in a reply line (wrong baud rate or noise?)"
            ),
            Self::BadLength => f.write_str("a data length is not a number or is too large"),
        }
    }
}

/// The parser's state: the line read so far, or how much data is left.
#[derive(Debug, Clone)]
pub struct Parser {
    line: [u8; MAX_LINE],
    len: usize,
    /// Bytes of socket data still to come after a data header.
    data_left: usize,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    /// A parser at the start of a line.
    pub const fn new() -> Self {
        Self {
            line: [0; MAX_LINE],
            len: 0,
            data_left: 0,
        }
    }

    /// Forgets any partial line or data: after an error, or to resynchronise
    /// with a modem that restarted.
    pub fn reset(&mut self) {
        self.len = 0;
        self.data_left = 0;
    }

    /// Whether the parser is inside socket data (so a byte such as `>` or
    /// `\n` is data, not protocol).
    pub fn in_data(&self) -> bool {
        self.data_left > 0
    }

    /// Parses from the start of `input` up to and including the first
    /// event. Returns how many bytes were consumed (all of them if no event
    /// completed: the partial line is kept for the next call) and the event.
    ///
    /// On an error the partial line is dropped and parsing continues after
    /// the consumed bytes.
    pub fn feed<'a>(&mut self, input: &'a [u8]) -> (usize, Result<Option<Event<'a>>, ParseError>) {
        if self.data_left > 0 {
            let n = self.data_left.min(input.len());
            self.data_left -= n;
            let event = input.get(..n).filter(|d| !d.is_empty()).map(Event::Data);
            return (n, Ok(event));
        }
        for (i, &byte) in input.iter().enumerate() {
            let consumed = i + 1;
            match byte {
                b'\n' => {
                    let event = classify(self.line.get(..self.len).unwrap_or_default());
                    self.len = 0;
                    match event {
                        Ok(None) => continue,
                        other => return (consumed, other),
                    }
                }
                // Lines end with "\r\n"; an echo ends with "\r\r\n".
                b'\r' => {}
                // The prompt starts a line and ends nothing.
                b'>' if self.len == 0 => return (consumed, Ok(Some(Event::Prompt))),
                b'\t' | 0x20..=0x7e | 0x80..=0xff => {
                    let Some(slot) = self.line.get_mut(self.len) else {
                        self.len = 0;
                        return (consumed, Err(ParseError::LineTooLong));
                    };
                    *slot = byte;
                    self.len += 1;
                    match data_header(self.line.get(..self.len).unwrap_or_default()) {
                        Ok(Some(len)) => {
                            self.len = 0;
                            self.data_left = len;
                            return (consumed, Ok(Some(Event::DataStart(len))));
                        }
                        Ok(None) => {}
                        Err(e) => {
                            self.len = 0;
                            return (consumed, Err(e));
                        }
                    }
                }
                _ => {
                    self.len = 0;
                    return (consumed, Err(ParseError::Garbage(byte)));
                }
            }
        }
        (input.len(), Ok(None))
    }
}

/// A decimal number of one to five digits, at most [`MAX_DATA_LEN`].
fn number(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Five digits fit in u32 whatever the width of usize.
    let value = digits
        .iter()
        .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    usize::try_from(value)
        .ok()
        .filter(|value| *value <= MAX_DATA_LEN)
}

/// If `line` (without line ending) is a complete data header, the length
/// it announces. Called after each byte, so only the last byte can end it.
fn data_header(line: &[u8]) -> Result<Option<usize>, ParseError> {
    let Some((&last, head)) = line.split_last() else {
        return Ok(None);
    };
    // Active mode: "+IPD,<len>:".
    if last == b':'
        && let Some(digits) = head.strip_prefix(b"+IPD,")
    {
        return number(digits).map(Some).ok_or(ParseError::BadLength);
    }
    // ESP-AT 2.x "+CIPRECVDATA:<len>," or NONOS 1.x "+CIPRECVDATA,<len>:".
    if (last == b',' || last == b':')
        && let Some(rest) = head.strip_prefix(b"+CIPRECVDATA")
    {
        let digits = match (rest.split_first(), last) {
            (Some((b':', digits)), b',') | (Some((b',', digits)), b':') => digits,
            // The separator right after the name: the digits are to come.
            (Some(_), _) | (None, _) => return Ok(None),
        };
        return number(digits).map(Some).ok_or(ParseError::BadLength);
    }
    Ok(None)
}

/// The event a complete line (without line ending) is; `None` for blank lines.
fn classify(line: &[u8]) -> Result<Option<Event<'static>>, ParseError> {
    let line = line.trim_ascii();
    let event = match line {
        b"" => return Ok(None),
        b"OK" => Event::Ok,
        b"ERROR" => Event::Error,
        b"FAIL" => Event::Fail,
        b"SEND OK" => Event::SendOk,
        b"SEND FAIL" => Event::SendFail,
        b"CONNECT" => Event::Connect,
        b"CLOSED" => Event::Closed,
        b"ALREADY CONNECTED" => Event::AlreadyConnected,
        b"WIFI CONNECTED" => Event::WifiConnected,
        b"WIFI GOT IP" => Event::WifiGotIp,
        b"WIFI DISCONNECT" => Event::WifiDisconnect,
        b"ready" => Event::Ready,
        _ if line.eq_ignore_ascii_case(b"DNS Fail") => Event::DnsFail,
        _ if line.starts_with(b"busy ") => Event::Busy,
        _ => {
            if let Some(digits) = line.strip_prefix(b"+IPD,") {
                // Passive mode: "+IPD,<len>" (the data stays in the modem).
                return number(digits)
                    .map(|len| Some(Event::DataAvailable(len)))
                    .ok_or(ParseError::BadLength);
            }
            if let Some(code) = line.strip_prefix(b"+CWJAP:").and_then(small_number) {
                Event::JoinFailure(code)
            } else if let Some(status) = line.strip_prefix(b"STATUS:").and_then(small_number) {
                Event::Status(status)
            } else if line.starts_with(b"AT") {
                Event::Echo
            } else {
                // `+CWJAP:"ssid",...` (a query), `Recv 5 bytes`, versions...
                Event::Other
            }
        }
    };
    Ok(Some(event))
}

fn small_number(digits: &[u8]) -> Option<u8> {
    number(digits).and_then(|n| u8::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// An event with owned data, to compare whole transcripts.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Event(Event<'static>),
        Data(Vec<u8>),
        Error(ParseError),
    }

    /// Feeds `input` in pieces of `chunk` bytes; joins adjacent data.
    fn parse_in_chunks(input: &[u8], chunk: usize) -> Vec<Owned> {
        let mut parser = Parser::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (n, result) = parser.feed(rest);
                assert!(n > 0 && n <= rest.len(), "progress");
                rest = &rest[n..];
                match result {
                    Ok(None) => {}
                    Ok(Some(Event::Data(d))) => match out.last_mut() {
                        Some(Owned::Data(prev)) => prev.extend_from_slice(d),
                        _ => out.push(Owned::Data(d.to_vec())),
                    },
                    Ok(Some(e)) => out.push(Owned::Event(owned(e))),
                    Err(e) => out.push(Owned::Error(e)),
                }
            }
        }
        out
    }

    fn owned(e: Event<'_>) -> Event<'static> {
        match e {
            Event::Data(_) => unreachable!("data is joined separately"),
            Event::Ok => Event::Ok,
            Event::Error => Event::Error,
            Event::Fail => Event::Fail,
            Event::SendOk => Event::SendOk,
            Event::SendFail => Event::SendFail,
            Event::Prompt => Event::Prompt,
            Event::Busy => Event::Busy,
            Event::Connect => Event::Connect,
            Event::Closed => Event::Closed,
            Event::AlreadyConnected => Event::AlreadyConnected,
            Event::DnsFail => Event::DnsFail,
            Event::WifiConnected => Event::WifiConnected,
            Event::WifiGotIp => Event::WifiGotIp,
            Event::WifiDisconnect => Event::WifiDisconnect,
            Event::JoinFailure(c) => Event::JoinFailure(c),
            Event::Status(s) => Event::Status(s),
            Event::DataAvailable(n) => Event::DataAvailable(n),
            Event::DataStart(n) => Event::DataStart(n),
            Event::Ready => Event::Ready,
            Event::Echo => Event::Echo,
            Event::Other => Event::Other,
        }
    }

    fn every_chunking(input: &[u8], expected: &[Owned]) {
        for chunk in 1..=input.len() {
            assert_eq!(parse_in_chunks(input, chunk), expected, "chunks of {chunk}");
        }
    }

    use Event as E;
    use Owned::{Data as D, Error as X, Event as V};

    #[test]
    fn join_transcript_with_echo_esp_at_2() {
        let input = b"AT+CWJAP=\"net\",\"pw\"\r\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n\r\nOK\r\n";
        every_chunking(
            input,
            &[V(E::Echo), V(E::WifiConnected), V(E::WifiGotIp), V(E::Ok)],
        );
    }

    #[test]
    fn join_failures_carry_their_code() {
        // ESP-AT 2.x ends with ERROR, NONOS AT 1.7 with FAIL.
        every_chunking(
            b"+CWJAP:2\r\n\r\nERROR\r\n+CWJAP:3\r\n\r\nFAIL\r\n",
            &[
                V(E::JoinFailure(2)),
                V(E::Error),
                V(E::JoinFailure(3)),
                V(E::Fail),
            ],
        );
        // A query's answer is not a failure code.
        every_chunking(b"+CWJAP:\"net\",\"aa:bb\",6,-60\r\n", &[V(E::Other)]);
    }

    #[test]
    fn connect_replies() {
        every_chunking(
            b"CONNECT\r\n\r\nOK\r\nDNS Fail\r\n\r\nERROR\r\nALREADY CONNECTED\r\n\r\nERROR\r\nCLOSED\r\n",
            &[
                V(E::Connect),
                V(E::Ok),
                V(E::DnsFail),
                V(E::Error),
                V(E::AlreadyConnected),
                V(E::Error),
                V(E::Closed),
            ],
        );
    }

    #[test]
    fn send_with_prompt_and_data_notification_in_between() {
        // ESP-AT 2.x: OK, then "> " on a line of its own; data that arrived
        // meanwhile is announced between the two.
        every_chunking(
            b"\r\nOK\r\n+IPD,17\r\n> \r\nRecv 5 bytes\r\n\r\nSEND OK\r\n\r\nSEND FAIL\r\n",
            &[
                V(E::Ok),
                V(E::DataAvailable(17)),
                V(E::Prompt),
                V(E::Other),
                V(E::SendOk),
                V(E::SendFail),
            ],
        );
    }

    #[test]
    fn passive_receive_data_is_binary_and_may_contain_protocol_bytes() {
        // Data holding "\r\nOK\r\n>" and a NUL is data, not protocol.
        let mut input = b"+CIPRECVDATA:9,".to_vec();
        input.extend_from_slice(b"\r\nOK\r\n>\0x");
        input.extend_from_slice(b"\r\nOK\r\n");
        every_chunking(
            &input,
            &[V(E::DataStart(9)), D(b"\r\nOK\r\n>\0x".to_vec()), V(E::Ok)],
        );
    }

    #[test]
    fn nonos_and_active_mode_headers() {
        every_chunking(
            b"+CIPRECVDATA,3:abc\r\nOK\r\n+IPD,4:wxyz\r\nCLOSED\r\n",
            &[
                V(E::DataStart(3)),
                D(b"abc".to_vec()),
                V(E::Ok),
                V(E::DataStart(4)),
                D(b"wxyz".to_vec()),
                V(E::Closed),
            ],
        );
    }

    #[test]
    fn zero_length_data_and_status() {
        every_chunking(
            b"+CIPRECVDATA:0,\r\nOK\r\nSTATUS:2\r\nbusy p...\r\nready\r\n",
            &[
                V(E::DataStart(0)),
                V(E::Ok),
                V(E::Status(2)),
                V(E::Busy),
                V(E::Ready),
            ],
        );
    }

    #[test]
    fn unsolicited_reports() {
        every_chunking(
            b"WIFI DISCONNECT\r\nWIFI CONNECTED\r\nWIFI GOT IP\r\n",
            &[V(E::WifiDisconnect), V(E::WifiConnected), V(E::WifiGotIp)],
        );
    }

    #[test]
    fn bad_lengths_are_errors() {
        every_chunking(b"+IPD,x:\r\n", &[X(ParseError::BadLength)]);
        every_chunking(b"+IPD,123456:", &[X(ParseError::BadLength)]);
        every_chunking(b"+IPD,99999\r\n", &[X(ParseError::BadLength)]);
        every_chunking(b"+CIPRECVDATA:,\r\n", &[X(ParseError::BadLength)]);
        every_chunking(b"+IPD,70000:", &[X(ParseError::BadLength)]);
    }

    #[test]
    fn garbage_and_overlong_lines_are_errors_and_parsing_recovers() {
        every_chunking(
            b"O\x00K\r\nOK\r\n",
            &[X(ParseError::Garbage(0)), V(E::Other), V(E::Ok)],
        );
        let mut long = [b'x'; MAX_LINE + 1].to_vec();
        long.extend_from_slice(b"\r\nOK\r\n");
        every_chunking(&long, &[X(ParseError::LineTooLong), V(E::Ok)]);
        // A line of exactly MAX_LINE bytes is fine.
        let mut full = [b'x'; MAX_LINE].to_vec();
        full.extend_from_slice(b"\r\n");
        every_chunking(&full, &[V(E::Other)]);
    }

    #[test]
    fn reset_drops_partial_state() {
        let mut parser = Parser::new();
        assert_eq!(parser.feed(b"+IPD,5:ab"), (7, Ok(Some(E::DataStart(5)))));
        assert!(parser.in_data());
        parser.reset();
        assert!(!parser.in_data());
        assert_eq!(parser.feed(b"OK\r\n"), (4, Ok(Some(E::Ok))));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_always_progress() {
        // A deterministic pseudo-random stream (xorshift) mixing protocol
        // fragments and noise.
        let fragments: [&[u8]; 8] = [
            b"+IPD,",
            b"+CIPRECVDATA:",
            b"12",
            b",",
            b":",
            b"\r\n",
            b">",
            b"OK",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut input = Vec::new();
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match state % 4 {
                0 => input.push((state >> 8) as u8),
                _ => input.extend_from_slice(fragments[(state >> 16) as usize % fragments.len()]),
            }
        }
        let mut parser = Parser::new();
        let mut rest = &input[..];
        let mut data = 0;
        while !rest.is_empty() {
            let (n, result) = parser.feed(rest);
            assert!(n > 0 && n <= rest.len());
            if let Ok(Some(Event::Data(d))) = result {
                assert!(d.len() <= n);
                data += d.len();
            }
            rest = &rest[n..];
        }
        assert!(data > 0, "some headers were complete");
    }
}
