//! What each command does, once its arguments are checked.

use crate::args::{CertificateFormat, Checked, Endpoint, MessageFormat, Publication, Subscription};
use crate::hints::{self, Phase};
use crate::output::{self, write_stdout};
use crate::session::{
    self, CLOSE_TIMEOUT, HANDSHAKE_TIMEOUT, MqttClient, TLS_READ, TLS_WRITE, Tap, Wire,
    show_target, unix_now, with_client,
};
use crate::{Failure, failed, say};
use mqtts::client::Event;
use mqtts::mqtt::{QoS, encode};
use mqtts::tls::{self, TlsOptions};
use mqtts::trust::{CertificateInfo, Trust};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;
use tokio::time::{Instant, sleep_until, timeout};

/// Each wait for the broker after connecting: PUBACK/PUBCOMP, SUBACK, and
/// the PUBREL that completes a QoS 2 delivery.
const ACK_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn run(command: Checked) -> Result<(), Failure> {
    match command {
        Checked::Fingerprint { endpoint, format } => fingerprint(&endpoint, format).await,
        Checked::Pub(publication) => publish(&publication).await,
        Checked::Sub(subscription) => subscribe(&subscription).await,
    }
}

async fn publish(args: &Publication) -> Result<(), Failure> {
    let anchors = args.connection.anchors();
    let mut settings = args.connection.settings(&anchors)?;
    settings.largest_message = encode::publish_len(&args.topic, &args.payload, args.qos);
    let endpoint = settings.endpoint;
    let target = show_target(&endpoint.host, endpoint.port);
    with_client(
        &settings,
        async |client: &mut MqttClient<'_, '_>, _: &Wire| {
            let sent = client.publish(&args.topic, &args.payload, args.qos, args.retain);
            match timeout(ACK_TIMEOUT, sent).await {
                Ok(Ok(())) => {
                    let how = match args.qos {
                        QoS::AtMostOnce => "QoS 0, sent",
                        QoS::AtLeastOnce => "QoS 1, acknowledged by the broker",
                        QoS::ExactlyOnce => "QoS 2, completed with the broker",
                    };
                    let len = args.payload.len();
                    say!(
                        "mqtts: published {len} byte{} to {}{} ({how})",
                        if len == 1 { "" } else { "s" },
                        args.topic,
                        if args.retain { " as retained" } else { "" }
                    );
                    Ok(())
                }
                Ok(Err(e)) => Err(failed(format!(
                    "{target}: publishing to {}: {e}",
                    args.topic
                ))),
                Err(_) => Err(failed(format!(
                    "{target}: publishing to {}: no acknowledgement within {} s",
                    args.topic,
                    ACK_TIMEOUT.as_secs()
                ))),
            }
        },
    )
    .await
}

async fn subscribe(args: &Subscription) -> Result<(), Failure> {
    let anchors = args.connection.anchors();
    let settings = args.connection.settings(&anchors)?;
    let endpoint = settings.endpoint;
    let target = show_target(&endpoint.host, endpoint.port);
    let filters: Vec<(&str, QoS)> = args
        .filters
        .iter()
        .map(|filter| (filter.as_str(), args.qos))
        .collect();
    with_client(
        &settings,
        async |client: &mut MqttClient<'_, '_>, wire: &Wire| {
            let granted = match timeout(ACK_TIMEOUT, client.subscribe(&filters)).await {
                Ok(Ok(granted)) => granted,
                Ok(Err(e)) => return Err(failed(format!("{target}: subscribing: {e}"))),
                Err(_) => {
                    return Err(failed(format!(
                        "{target}: subscribing: no SUBACK within {} s",
                        ACK_TIMEOUT.as_secs()
                    )));
                }
            };
            let mut subscribed = String::new();
            for ((filter, _), qos) in filters.iter().zip(granted.iter()) {
                if !subscribed.is_empty() {
                    subscribed.push_str(", ");
                }
                let _ = write!(subscribed, "{filter} (QoS {})", *qos as u8);
            }
            // Listening for Ctrl-C before saying so: a SIGINT right after
            // the line must not kill the tool without its DISCONNECT.
            let interrupted = interrupt();
            say!("mqtts: subscribed to {subscribed}; waiting for messages");
            receive(client, wire, args, &target, interrupted).await
        },
    )
    .await
}

/// Ctrl-C, caught from this call on. (`tokio::signal::ctrl_c` installs its
/// handler only when first polled: a SIGINT before that killed the tool.)
fn interrupt() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let listener = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        #[cfg(unix)]
        match listener {
            Ok(mut listener) => {
                listener.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Prints messages until `--count`, `--timeout` or Ctrl-C.
async fn receive(
    client: &mut MqttClient<'_, '_>,
    wire: &Wire,
    args: &Subscription,
    target: &str,
    interrupted: impl Future<Output = ()>,
) -> Result<(), Failure> {
    let deadline = args.timeout.map(|wait| Instant::now() + wait);
    let mut received = 0u64;
    // QoS 2 messages delivered: each is complete once its PUBCOMP is sent.
    let mut exactly_once = BTreeSet::new();
    tokio::pin!(interrupted);
    loop {
        if args.count.is_some_and(|count| received >= count) {
            return complete_deliveries(client, wire, &exactly_once, target).await;
        }
        let never = || Instant::now() + Duration::from_secs(86_400 * 365);
        let event = tokio::select! {
            biased;
            // `poll` is cancel-safe while it waits for the broker.
            event = client.poll() => event,
            _ = &mut interrupted => return Err(Failure::Interrupted),
            () = sleep_until(deadline.unwrap_or_else(never)) => {
                return match args.count {
                    None => Ok(()),
                    Some(count) => Err(failed(format!(
                        "timed out after {} s with {received} of {count} messages",
                        args.timeout.unwrap_or_default().as_secs_f64()
                    ))),
                };
            }
        };
        match event {
            Ok(Event::Message(message)) => {
                if message.qos == QoS::ExactlyOnce
                    && let Some(id) = message.packet_id
                {
                    exactly_once.insert(id.get());
                }
                let line = match args.format {
                    MessageFormat::Plain => output::plain_line(&message),
                    MessageFormat::Verbose => output::verbose_line(&message),
                    MessageFormat::Json => output::json_line(&message),
                };
                match write_stdout(&line) {
                    Ok(()) => received += 1,
                    // `mqtts sub ... | head -1`: the reader has enough.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(failed(format!("cannot write to stdout: {e}"))),
                }
            }
            Ok(Event::MessageTooLarge { size, capacity, .. }) => say!(
                "mqtts: skipped a message of {size} bytes (larger than the {capacity}-byte receive buffer)"
            ),
            Ok(_) => {}
            Err(e) => return Err(failed(format!("{target}: {e}"))),
        }
    }
}

/// Waits until every QoS 2 message delivered has its PUBCOMP sent (the
/// broker's PUBREL answered, §4.3.3), so the broker does not keep them
/// unfinished after the DISCONNECT.
async fn complete_deliveries(
    client: &mut MqttClient<'_, '_>,
    wire: &Wire,
    exactly_once: &BTreeSet<u16>,
    target: &str,
) -> Result<(), Failure> {
    let deadline = Instant::now() + ACK_TIMEOUT;
    let complete = || exactly_once.is_subset(&wire.sent.borrow().pubcomp_flushed);
    while !complete() {
        tokio::select! {
            biased;
            event = client.poll() => match event {
                // Past --count: not printed; acknowledged as the protocol wants.
                Ok(_) => {}
                Err(e) => return Err(failed(format!("{target}: completing QoS 2 deliveries: {e}"))),
            },
            () = wire.flushed.notified() => {}
            () = sleep_until(deadline) => {
                return Err(failed(format!(
                    "{target}: no PUBREL within {} s for the QoS 2 messages received",
                    ACK_TIMEOUT.as_secs()
                )));
            }
        }
    }
    Ok(())
}

async fn fingerprint(endpoint: &Endpoint, format: CertificateFormat) -> Result<(), Failure> {
    let target = show_target(&endpoint.host, endpoint.port);
    let server_name = endpoint.server_name.as_str();
    say!(
        "mqtts: connecting to {target} WITHOUT trusting it, to show what it presents \
         (name {server_name:?}); nothing is verified but the handshake signature"
    );
    let options = TlsOptions::new(server_name, Trust::insecure_accept_any_certificate());
    let (socket, received) = Tap::new(session::open_tcp(&endpoint.host, endpoint.port).await?);
    let mut read_buffer = vec![0u8; TLS_READ];
    let mut write_buffer = vec![0u8; TLS_WRITE];
    let mut chain: Vec<Vec<u8>> = Vec::new();
    let mut observe = |certificates: &[&[u8]]| {
        chain = certificates.iter().map(|der| der.to_vec()).collect();
    };
    let connected = timeout(
        HANDSHAKE_TIMEOUT,
        tls::connect_observing(
            socket,
            &mut read_buffer,
            &mut write_buffer,
            &mut rand::rngs::OsRng,
            &options,
            &mut observe,
        ),
    )
    .await;
    let outcome = match connected {
        Ok(Ok(stream)) => {
            let _ = timeout(CLOSE_TIMEOUT, stream.close()).await;
            Ok(())
        }
        Ok(Err(e)) => {
            let settings = session::Settings {
                endpoint,
                tls: options,
                mqtt: mqtts::client::ConnectOptions::new(""),
                largest_message: 0,
            };
            let why = hints::explain(&e, Phase::Handshake, &received.borrow(), &settings);
            Err(failed(format!("{target}: {why}")))
        }
        Err(_) => Err(failed(format!(
            "{target}: no answer within {} s during the TLS handshake (is it a TLS port?)",
            HANDSHAKE_TIMEOUT.as_secs()
        ))),
    };
    if chain.is_empty() {
        return match outcome {
            Ok(()) => Err(failed(format!(
                "{target}: the server presented no certificate"
            ))),
            Err(e) => Err(e),
        };
    }
    let text = match format {
        CertificateFormat::Text => output::report(&target, &chain, unix_now()),
        CertificateFormat::Arduino => {
            output::arduino(&target, &chain, &known_roots(&chain), unix_now())
        }
    };
    if let Err(e) = write_stdout(&text)
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(failed(format!("cannot write to stdout: {e}")));
    }
    // The certificates were seen, but the handshake failed after them.
    outcome
}

/// The roots mqtts ships (flespi's GlobalSign roots) that issued the last
/// certificate of `chain`: servers do not send their root.
fn known_roots(chain: &[Vec<u8>]) -> Vec<&'static [u8]> {
    let Some(top) = chain
        .last()
        .and_then(|der| CertificateInfo::parse(der).ok())
    else {
        return Vec::new();
    };
    if top.issuer() == top.subject() {
        return Vec::new();
    }
    mqtts::flespi::ROOTS
        .iter()
        .copied()
        .filter(|root| {
            CertificateInfo::parse(root).is_ok_and(|root| root.subject() == top.issuer())
        })
        .collect()
}
