//! What the tool prints: messages (plain, verbose, JSON lines), the
//! certificate report of `fingerprint` (text, or the Arduino forms), dates.

use mqtts::fingerprint::{Fingerprint, HexColons};
use mqtts::mqtt::{Publish, QoS};
use mqtts::trust::{CertificateInfo, KeyAlgorithm};
use std::fmt::Write as _;

/// Writes to stdout at once (a line of `sub` is seen as it arrives), with
/// an error instead of `println!`'s panic when stdout is closed.
pub fn write_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// Collapses a message to one line.
pub fn one_line(message: &str) -> String {
    message.replace(['\n', '\r'], " ")
}

// ---------------------------------------------------------------------------
// Messages.

/// A payload on one line: UTF-8 (invalid bytes replaced), backslashes,
/// tabs, line breaks and other control characters escaped, so that a
/// payload holding a literal `\n` prints as `\\n`, not as a line break.
pub fn printable(payload: &[u8]) -> String {
    let mut out = String::with_capacity(payload.len());
    for c in String::from_utf8_lossy(payload).chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

fn qos_number(qos: QoS) -> u8 {
    match qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

/// `TOPIC PAYLOAD`.
pub fn plain_line(message: &Publish<'_>) -> String {
    format!("{} {}\n", message.topic, printable(message.payload))
}

/// `[QoS q, retained, dup] TOPIC PAYLOAD` (the flags only when set).
pub fn verbose_line(message: &Publish<'_>) -> String {
    let mut flags = format!("QoS {}", qos_number(message.qos));
    if message.retain {
        flags.push_str(", retained");
    }
    if message.dup {
        flags.push_str(", dup");
    }
    format!(
        "[{flags}] {} {}\n",
        message.topic,
        printable(message.payload)
    )
}

/// One JSON object: `{"topic":..,"qos":..,"retain":..,"dup":..,"payload":..}`,
/// with `payload_hex` instead of `payload` when the payload is not UTF-8.
pub fn json_line(message: &Publish<'_>) -> String {
    let mut out = String::from("{\"topic\":");
    json_string(&mut out, message.topic);
    let _ = write!(
        out,
        ",\"qos\":{},\"retain\":{},\"dup\":{},",
        qos_number(message.qos),
        message.retain,
        message.dup
    );
    match std::str::from_utf8(message.payload) {
        Ok(text) => {
            out.push_str("\"payload\":");
            json_string(&mut out, text);
        }
        Err(_) => {
            out.push_str("\"payload_hex\":\"");
            for byte in message.payload {
                let _ = write!(out, "{byte:02x}");
            }
            out.push('"');
        }
    }
    out.push_str("}\n");
    out
}

/// A JSON string (RFC 8259 §7).
fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------
// Certificates.

/// What `fingerprint` prints for a chain (leaf first).
pub fn report(target: &str, chain: &[Vec<u8>], now: u64) -> String {
    let mut out = String::new();
    let count = chain.len();
    let _ = writeln!(
        out,
        "{target} presented {count} certificate{} (the server's own first):",
        if count == 1 { "" } else { "s" }
    );
    for (index, der) in chain.iter().enumerate() {
        let _ = writeln!(out);
        let parsed = CertificateInfo::parse(der);
        let role = match (index, &parsed) {
            (0, _) => "the server's certificate".to_string(),
            (i, Ok(info)) => {
                let issued = chain
                    .get(i - 1)
                    .and_then(|below| CertificateInfo::parse(below).ok())
                    .is_some_and(|below| below.issuer() == info.subject());
                let mut role = String::from("CA certificate");
                if issued {
                    let _ = write!(role, ", issuer of [{i}]");
                }
                if info.issuer() == info.subject() {
                    role.push_str(", self-signed (a root)");
                }
                role
            }
            (_, Err(_)) => "another certificate".to_string(),
        };
        let _ = writeln!(out, "[{}] {role}", index + 1);
        let Ok(info) = parsed else {
            let _ = writeln!(
                out,
                "    (not a certificate mqtts can parse; {} bytes)",
                der.len()
            );
            let _ = writeln!(out, "    SHA-256:       {}", Fingerprint::sha256_of(der));
            continue;
        };
        let fingerprints = info.fingerprints();
        // CertificateInfo always computes the SHA-1 (it is for showing).
        let sha1 = Fingerprint::sha1_of(der);
        debug_assert_eq!(fingerprints.sha1(), Some(sha1));
        let sha256 = fingerprints.sha256();
        let spki = HexColons(&fingerprints.spki_sha256()).to_string();
        let _ = writeln!(out, "    subject:       {}", info.subject());
        let _ = writeln!(out, "    issuer:        {}", info.issuer());
        let _ = writeln!(out, "    valid from:    {}", utc(info.not_before()));
        let _ = writeln!(
            out,
            "    valid until:   {} ({})",
            utc(info.not_after()),
            validity(info.not_before(), info.not_after(), now)
        );
        let _ = writeln!(
            out,
            "    key:           {}",
            key_line(info.key_algorithm(), index == 0)
        );
        let _ = writeln!(out, "    SHA-1:         {sha1}");
        let _ = writeln!(out, "    SHA-256:       {sha256}");
        let _ = writeln!(out, "    SPKI SHA-256:  {spki}");
        let _ = writeln!(
            out,
            "    firmware pins (the public key survives renewals that keep it; certificate \
             pins change at every renewal):"
        );
        let _ = writeln!(out, "      mqtts::pin_public_key!(\"{spki}\")");
        let _ = writeln!(out, "      mqtts::pin_certificate!(\"{sha256}\")");
        let _ = writeln!(out, "      mqtts::pin_certificate!(\"{sha1}\")");
        let _ = writeln!(out, "    this tool:");
        let _ = writeln!(out, "      --spki {spki}");
        let _ = writeln!(out, "      --sha256 {sha256}");
        let _ = writeln!(out, "      --sha1 {sha1}");
        if index > 0 {
            let _ = writeln!(
                out,
                "    note: pins match only the server's certificate [1]; to trust this CA, \
                 give its certificate to --ca (firmware: Trust::certificate_authorities)"
            );
        }
    }
    out
}

fn key_line(algorithm: KeyAlgorithm, leaf: bool) -> String {
    match algorithm.feature() {
        Some(feature) if leaf => {
            format!("{algorithm} (firmware needs the mqtts feature `{feature}`)")
        }
        Some(feature) => {
            format!("{algorithm} (CA mode needs the mqtts feature `{feature}` to check it)")
        }
        None if algorithm == KeyAlgorithm::Other => {
            format!("{algorithm} (mqtts cannot verify it)")
        }
        None => algorithm.to_string(),
    }
}

/// Where `now` is in a validity period, in days.
fn validity(not_before: u64, not_after: u64, now: u64) -> String {
    const DAY: u64 = 86_400;
    let days = |n: u64| format!("{n} day{}", if n == 1 { "" } else { "s" });
    if now < not_before {
        format!(
            "NOT VALID YET: starts in {}",
            days((not_before - now).div_ceil(DAY))
        )
    } else if now > not_after {
        format!("EXPIRED {} ago", days((now - not_after) / DAY))
    } else {
        format!("valid now, expires in {}", days((not_after - now) / DAY))
    }
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC` (the library's form).
pub fn utc(secs: u64) -> String {
    mqtts::error::UtcTime(secs).to_string()
}

// ---------------------------------------------------------------------------
// The Arduino forms.

/// PEM with `\n` line ends (what a sketch's raw string literal holds).
fn pem_block(tag: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(tag, der.to_vec()), config)
}

/// The SubjectPublicKeyInfo inside a certificate (RFC 5280 §4.1: the
/// seventh field of TBSCertificate when the version is present, the sixth
/// otherwise), as DER.
pub fn spki_der(certificate: &[u8]) -> Option<&[u8]> {
    /// One DER element: (whole element, contents, rest).
    fn element(input: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
        let (&_tag, rest) = input.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let len = rest[..count]
                .iter()
                .fold(0usize, |len, b| len << 8 | usize::from(*b));
            rest = &rest[count..];
            len
        };
        let header = input.len() - rest.len();
        let contents = rest.get(..len)?;
        Some((&input[..header + len], contents, &rest[len..]))
    }
    let (_, certificate, _) = element(certificate)?;
    let (_, tbs, _) = element(certificate)?;
    let mut fields = tbs;
    // version [0] EXPLICIT, optional.
    if fields.first() == Some(&0xA0) {
        fields = element(fields)?.2;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        fields = element(fields)?.2;
    }
    let (spki, _, _) = element(fields)?;
    Some(spki)
}

/// What an Arduino sketch takes from the ESP8266 core's BearSSL
/// `WiFiClientSecure`, for the chain `chain` (leaf first) and `roots` (CA
/// certificates known to have issued it, which servers do not send):
/// `setFingerprint` (SHA-1 of the leaf), `setKnownKey` (the leaf's public
/// key, PEM), `setTrustAnchors` (the CA certificates, PEM).
pub fn arduino(target: &str, chain: &[Vec<u8>], roots: &[&[u8]], now: u64) -> String {
    let mut out = String::new();
    let Some(leaf) = chain.first() else {
        return out;
    };
    let info = CertificateInfo::parse(leaf).ok();
    let _ = writeln!(
        out,
        "// What {target} presented, for the ESP8266 core's BearSSL::WiFiClientSecure."
    );
    if let Some(info) = &info {
        let _ = writeln!(
            out,
            "// Its certificate: {}, valid until {} ({}).",
            info.subject(),
            utc(info.not_after()),
            validity(info.not_before(), info.not_after(), now)
        );
    }
    let _ = writeln!(out, "// Choose one of the three.");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "// 1. setFingerprint: the SHA-1 of the server's certificate. It changes at every\n\
         //    renewal of the certificate: the sketch then fails to connect."
    );
    let _ = writeln!(
        out,
        "const char fingerprint[] PROGMEM = \"{}\";",
        Fingerprint::sha1_of(leaf)
    );
    let _ = writeln!(out, "//    client.setFingerprint(fingerprint);");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "// 2. setKnownKey: the server's public key. It survives renewals that keep the key;\n\
         //    no name or date is checked (no clock needed)."
    );
    if let Some(KeyAlgorithm::Ed25519) = info.as_ref().map(CertificateInfo::key_algorithm) {
        let _ = writeln!(
            out,
            "//    (BearSSL has no Ed25519: this key cannot be used.)"
        );
    }
    match spki_der(leaf) {
        Some(spki) => {
            let _ = write!(
                out,
                "const char serverKey[] PROGMEM = R\"KEY(\n{})KEY\";\n",
                pem_block("PUBLIC KEY", spki)
            );
        }
        None => {
            let _ = writeln!(out, "//    (the certificate's key could not be read)");
        }
    }
    let _ = writeln!(
        out,
        "//    BearSSL::PublicKey serverPublicKey(serverKey);  // global: it must outlive the connection\n\
         //    client.setKnownKey(&serverPublicKey);"
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "// 3. setTrustAnchors: the CA. It survives every renewal by the same CA; the name\n\
         //    and the dates are checked, so set the clock first (configTime, wait for NTP)."
    );
    let presented: Vec<&[u8]> = chain.iter().skip(1).map(Vec::as_slice).collect();
    let anchors: Vec<&[u8]> = roots.iter().copied().chain(presented).collect();
    if anchors.is_empty() {
        let _ = writeln!(
            out,
            "//    (the server sent no CA certificate: take its issuer's from your system's \
             CA store)"
        );
    } else {
        for der in &anchors {
            if let Ok(ca) = CertificateInfo::parse(der) {
                let _ = writeln!(
                    out,
                    "//    {} (until {})",
                    ca.subject(),
                    utc(ca.not_after())
                );
            }
        }
        let _ = writeln!(out, "const char trustAnchors[] PROGMEM = R\"CA(");
        for der in &anchors {
            out.push_str(&pem_block("CERTIFICATE", der));
        }
        let _ = writeln!(out, ")CA\";");
    }
    let _ = writeln!(
        out,
        "//    BearSSL::X509List trustAnchorList(trustAnchors);  // global\n\
         //    client.setTrustAnchors(&trustAnchorList);"
    );
    out
}
