//! Publishes per second over TLS 1.3 on loopback to a default-configured
//! mosquitto (issue 6, item 6): mqtts on tokio against rumqttc 0.25 (rustls
//! 0.23 with ring, its default in-flight limit of 100), same broker, same
//! 64-byte payloads, runs alternating between the clients.
//!
//! ```sh
//! nice -n 19 cargo bench --bench throughput                 # 5 rounds, medians
//! cargo bench --bench throughput -- --rounds 3 --messages 20000
//! cargo bench --bench throughput -- --only mqtts-qos0       # one client (for callgrind)
//! cargo bench --bench throughput -- --write-buffer 16512    # mqtts records of 16 KiB
//! cargo bench --bench throughput -- --broker-nodelay        # mosquitto without Nagle
//! ```
//!
//! Per run: connect (not measured), then the measured part: `messages`
//! publishes, and for QoS 0 one final QoS 1 publish whose PUBACK proves the
//! broker has read everything before it (mosquitto handles a connection's
//! packets in order). Reported per client: messages per second, client CPU
//! time per message (`/proc/thread-self/schedstat`: the whole client runs
//! on this thread, a current-thread tokio runtime; mosquitto is another
//! process), the broker's CPU time per message and the share of the run it
//! was busy (`/proc/<pid>/schedstat`; close to 100 %: the broker sets the
//! rate), and `write` system calls and bytes written per message
//! (`/proc/thread-self/io`), which show how many messages share a TLS
//! record. Instructions per message: run one client under
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured*'`
//! (scripts/perf-runtime.sh), which counts only the measured publishing.
//!
//! Clients:
//! - `mqtts-qos0`: `Client::publish` at QoS 0 (each message flushed alone).
//! - `mqtts-qos0-queued`: `Client::start_publish` at QoS 0 (messages share
//!   TLS records; they leave when the write buffer is full or at the next
//!   call that waits for the broker).
//! - `mqtts-qos1-wait`: `Client::publish` at QoS 1 (waits for each PUBACK:
//!   one round trip per message; fewer messages, see `WAIT_DIVISOR`).
//! - `mqtts-qos1-window`: `Client::start_publish` up to 100 in flight (the
//!   in-flight limit rumqttc uses by default), and `Client::poll` for one
//!   completion whenever the window is full.
//! - `mqtts-qos1-batch`: the same window refilled 25 at a time (poll for 25
//!   completions, then queue 25: they share records).
//! - `rumqttc-qos0`, `rumqttc-qos1`: `AsyncClient::publish` in one future,
//!   `EventLoop::poll` in another, joined (in-flight 100, channel 100).

#[path = "../tests/support/mod.rs"]
mod support;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin as StdPin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use embedded_io_adapters::tokio_1::FromTokio;
use mqtts::client::{Buffers, Client, ConnectOptions, Event};
use mqtts::mqtt::QoS;
use mqtts::session::Session;
use mqtts::tls::{MaxFragmentLength, TlsOptions, TlsStream};
use mqtts::trust::{Pin, Trust};
use rand::rngs::OsRng;
use rcgen::SanType;
use support::*;

const TOPIC: &str = "bench/t";
const PAYLOAD: [u8; 64] = [0x5a; 64];
/// The in-flight window of the mqtts QoS 1 clients: rumqttc's default
/// in-flight limit, so both clients may have as many messages unacknowledged.
const WINDOW: usize = 100;
/// `mqtts-qos1-wait` sends `messages / WAIT_DIVISOR` (one round trip each).
const WAIT_DIVISOR: usize = 20;
/// Bound on one run.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Every poll of the measured publishing goes through here (the callgrind
/// toggle).
#[inline(never)]
fn measured<F: Future>(future: StdPin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
    future.poll(cx)
}

/// This thread's CPU time (`/proc/thread-self/schedstat`, nanoseconds on
/// the CPU).
fn thread_cpu() -> Duration {
    schedstat("/proc/thread-self/schedstat")
}

/// The broker's process id, for [`broker_cpu`].
static BROKER_PID: AtomicU64 = AtomicU64::new(0);

/// mosquitto's CPU time (user and kernel: its system calls, TLS and TCP
/// work count here). mosquitto is single-threaded, so its main thread's
/// `schedstat` is the whole broker. Busy close to 100 % of the run means
/// the broker, not the client, sets the rate.
fn broker_cpu() -> Duration {
    let pid = BROKER_PID.load(Ordering::Relaxed);
    schedstat(&format!("/proc/{pid}/schedstat"))
}

/// The first field of a `schedstat` file: nanoseconds on the CPU.
fn schedstat(path: &str) -> Duration {
    let stat = std::fs::read_to_string(path).expect("schedstat");
    let ns: u64 = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("schedstat field");
    Duration::from_nanos(ns)
}

/// (write system calls, bytes written) by this thread so far, plus what
/// mqtts's socket counted.
fn thread_writes() -> (u64, u64) {
    let io = std::fs::read_to_string("/proc/thread-self/io").expect("io");
    let field = |name: &str| -> u64 {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .expect("io field")
    };
    (
        field("syscw:") + WRITES.load(Ordering::Relaxed),
        field("wchar:") + WRITTEN.load(Ordering::Relaxed),
    )
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    messages: usize,
    elapsed: Duration,
    cpu: Duration,
    broker_cpu: Duration,
    writes: u64,
    bytes: u64,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.messages as f64
    }

    fn broker_cpu_us(&self) -> f64 {
        self.broker_cpu.as_secs_f64() * 1e6 / self.messages as f64
    }

    /// The share of the run the broker was on a CPU.
    fn broker_busy(&self) -> f64 {
        self.broker_cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }
}

async fn measure<F: Future>(messages: usize, future: F) -> (F::Output, Sample) {
    let (cpu, broker, writes, start) =
        (thread_cpu(), broker_cpu(), thread_writes(), Instant::now());
    let mut future = std::pin::pin!(future);
    let output = std::future::poll_fn(|cx| measured(future.as_mut(), cx)).await;
    let elapsed = start.elapsed();
    let after = thread_writes();
    let sample = Sample {
        messages,
        elapsed,
        cpu: thread_cpu() - cpu,
        broker_cpu: broker_cpu() - broker,
        writes: after.0 - writes.0,
        bytes: after.1 - writes.1,
    };
    (output, sample)
}

fn leak(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

/// `write` calls and bytes mqtts hands the socket. std's `TcpStream`
/// writes with `send(2)`, which `/proc/thread-self/io` does not count
/// (rumqttc's tokio-rustls uses `writev(2)`, which it does), so mqtts's
/// socket counts its own: one call is one system call (tokio writes once
/// per call unless the socket is full, then waits for readiness).
static WRITES: AtomicU64 = AtomicU64::new(0);
static WRITTEN: AtomicU64 = AtomicU64::new(0);

struct CountingSocket(FromTokio<tokio::net::TcpStream>);

impl embedded_io_async::ErrorType for CountingSocket {
    type Error = std::io::Error;
}

impl embedded_io_async::Read for CountingSocket {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.0.read(buf).await
    }
}

impl embedded_io_async::Write for CountingSocket {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let n = self.0.write(buf).await?;
        WRITES.fetch_add(1, Ordering::Relaxed);
        WRITTEN.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.0.flush().await
    }
}

type Tcp = CountingSocket;
type MqttsClient =
    Client<'static, 'static, TlsStream<'static, Tcp, TokioTimer>, TokioTimer, WINDOW>;

struct Setup {
    /// mqtts's TLS write buffer: records carry up to this much minus 128.
    write_buffer: usize,
    port: u16,
    pins: &'static [Pin],
    rustls: Arc<rustls::ClientConfig>,
}

async fn mqtts_connect(setup: &Setup, id: &str) -> MqttsClient {
    let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, setup.port))
        .await
        .expect("TCP connect");
    let tls: &'static TlsOptions<'static> = Box::leak(Box::new(TlsOptions::new(
        SERVER_NAME,
        Trust::pinned(setup.pins),
    )));
    let session: &'static mut Session<'static, WINDOW> =
        Box::leak(Box::new(Session::new(leak(WINDOW * 80))));
    let buffers = Buffers {
        tls_read: leak(mqtts::tls::READ_BUFFER_FOR_FULL_RECORDS),
        tls_write: leak(setup.write_buffer),
        rx: leak(1024),
        tx: leak(256),
    };
    let options = ConnectOptions::new(id);
    let (client, _) = Client::connect_tls(
        CountingSocket(FromTokio::new(tcp)),
        &mut OsRng,
        tls,
        TokioTimer::new(),
        session,
        buffers,
        &options,
    )
    .await
    .expect("mqtts connect");
    client
}

async fn mqtts_close(client: MqttsClient) {
    let stream = client.disconnect().await.expect("disconnect");
    let _ = stream.close().await;
}

async fn run_mqtts_qos0(setup: &Setup, messages: usize) -> Sample {
    let mut client = mqtts_connect(setup, "mqtts-qos0").await;
    let (result, sample) = measure(messages, async {
        for _ in 0..messages {
            client
                .publish(TOPIC, &PAYLOAD, QoS::AtMostOnce, false)
                .await?;
        }
        client
            .publish(TOPIC, &PAYLOAD, QoS::AtLeastOnce, false)
            .await
    })
    .await;
    result.expect("mqtts QoS 0");
    mqtts_close(client).await;
    sample
}

/// QoS 0 with `start_publish`: messages queue in the TLS write buffer and
/// leave when it is full (1,024 bytes of plaintext: 13 messages a record)
/// or at the final `publish`, which waits for the broker.
async fn run_mqtts_qos0_queued(setup: &Setup, messages: usize) -> Sample {
    let mut client = mqtts_connect(setup, "mqtts-qos0-queued").await;
    let (result, sample) = measure(messages, async {
        for _ in 0..messages {
            client
                .start_publish(TOPIC, &PAYLOAD, QoS::AtMostOnce, false)
                .await?;
        }
        client
            .publish(TOPIC, &PAYLOAD, QoS::AtLeastOnce, false)
            .await
    })
    .await;
    result.expect("mqtts QoS 0 queued");
    mqtts_close(client).await;
    sample
}

async fn run_mqtts_qos1_wait(setup: &Setup, messages: usize) -> Sample {
    let mut client = mqtts_connect(setup, "mqtts-qos1-wait").await;
    let (result, sample) = measure(messages, async {
        for _ in 0..messages {
            client
                .publish(TOPIC, &PAYLOAD, QoS::AtLeastOnce, false)
                .await?;
        }
        Ok::<(), mqtts::Error>(())
    })
    .await;
    result.expect("mqtts QoS 1 wait");
    mqtts_close(client).await;
    sample
}

async fn run_mqtts_qos1_window(setup: &Setup, messages: usize) -> Sample {
    let mut client = mqtts_connect(setup, "mqtts-qos1-window").await;
    let (result, sample) = measure(messages, async {
        let (mut sent, mut done) = (0, 0);
        while done < messages {
            if sent < messages {
                match client
                    .start_publish(TOPIC, &PAYLOAD, QoS::AtLeastOnce, false)
                    .await
                {
                    Ok(_) => {
                        sent += 1;
                        continue;
                    }
                    Err(mqtts::Error::InFlightFull { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if let Event::Published(_) = client.poll().await? {
                done += 1;
            }
        }
        Ok(())
    })
    .await;
    result.expect("mqtts QoS 1 window");
    mqtts_close(client).await;
    sample
}

/// QoS 1 with a window of `WINDOW`: wait for one completion, take every other
/// completion already received without waiting, then refill every free
/// slot at once (the new messages share records and leave at the next
/// `poll`).
async fn run_mqtts_qos1_drain(setup: &Setup, messages: usize) -> Sample {
    let mut client = mqtts_connect(setup, "mqtts-qos1-drain").await;
    let (result, sample) = measure(messages, async {
        let (mut sent, mut done) = (0, 0);
        while done < messages {
            while sent < messages {
                match client
                    .start_publish(TOPIC, &PAYLOAD, QoS::AtLeastOnce, false)
                    .await
                {
                    Ok(_) => sent += 1,
                    Err(mqtts::Error::InFlightFull { .. }) => break,
                    Err(e) => return Err(e),
                }
            }
            if let Event::Published(_) = client.poll().await? {
                done += 1;
            }
            loop {
                let polled = embassy_futures::poll_once(client.poll());
                match polled {
                    Poll::Ready(Ok(Event::Published(_))) => done += 1,
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => break,
                }
            }
        }
        Ok(())
    })
    .await;
    result.expect("mqtts QoS 1 drain");
    mqtts_close(client).await;
    sample
}

/// QoS 1 with a window of `WINDOW` refilled in batches: once the window is full,
/// `poll` until `BATCH` completions, then queue `BATCH` messages (they leave
/// together at the next `poll`).
async fn run_mqtts_qos1_batch(setup: &Setup, messages: usize) -> Sample {
    const BATCH: usize = WINDOW / 4;
    let mut client = mqtts_connect(setup, "mqtts-qos1-batch").await;
    let (result, sample) = measure(messages, async {
        let (mut sent, mut done, mut free) = (0, 0, WINDOW);
        while done < messages {
            if free >= BATCH || free == WINDOW {
                // Refill every free slot at once: the messages share records.
                while free > 0 && sent < messages {
                    client
                        .start_publish(TOPIC, &PAYLOAD, QoS::AtLeastOnce, false)
                        .await?;
                    sent += 1;
                    free -= 1;
                }
            }
            if let Event::Published(_) = client.poll().await? {
                done += 1;
                free += 1;
            }
        }
        Ok::<(), mqtts::Error>(())
    })
    .await;
    result.expect("mqtts QoS 1 batch");
    mqtts_close(client).await;
    sample
}

async fn run_rumqttc(setup: &Setup, messages: usize, qos: rumqttc::QoS, id: &str) -> Sample {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, TlsConfiguration, Transport};
    let mut options = MqttOptions::new(id, "127.0.0.1", setup.port);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::clone(&setup.rustls),
    )));
    options.set_keep_alive(Duration::from_secs(60));
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    loop {
        match eventloop.poll().await.expect("rumqttc connect") {
            Event::Incoming(Packet::ConnAck(_)) => break,
            _ => continue,
        }
    }
    let acks_wanted = if qos == rumqttc::QoS::AtMostOnce {
        1
    } else {
        messages
    };
    let ((), sample) = measure(messages, async {
        let publisher = async {
            for _ in 0..messages {
                client
                    .publish(TOPIC, qos, false, PAYLOAD.to_vec())
                    .await
                    .expect("rumqttc publish");
            }
            if qos == rumqttc::QoS::AtMostOnce {
                client
                    .publish(TOPIC, rumqttc::QoS::AtLeastOnce, false, PAYLOAD.to_vec())
                    .await
                    .expect("rumqttc publish");
            }
        };
        let driver = async {
            let mut acks = 0;
            while acks < acks_wanted {
                if let Event::Incoming(Packet::PubAck(_)) =
                    eventloop.poll().await.expect("rumqttc event loop")
                {
                    acks += 1;
                }
            }
        };
        tokio::join!(publisher, driver);
    })
    .await;
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
    sample
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    MqttsQos0,
    MqttsQos0Queued,
    RumqttcQos0,
    MqttsQos1Wait,
    MqttsQos1Window,
    MqttsQos1Batch,
    MqttsQos1Drain,
    RumqttcQos1,
}

const KINDS: [(&str, Kind); 8] = [
    ("mqtts-qos0", Kind::MqttsQos0),
    ("mqtts-qos0-queued", Kind::MqttsQos0Queued),
    ("rumqttc-qos0", Kind::RumqttcQos0),
    ("mqtts-qos1-wait", Kind::MqttsQos1Wait),
    ("mqtts-qos1-window", Kind::MqttsQos1Window),
    ("mqtts-qos1-batch", Kind::MqttsQos1Batch),
    ("mqtts-qos1-drain", Kind::MqttsQos1Drain),
    ("rumqttc-qos1", Kind::RumqttcQos1),
];

async fn run(setup: &Setup, kind: Kind, messages: usize) -> Sample {
    let run = async {
        match kind {
            Kind::MqttsQos0 => run_mqtts_qos0(setup, messages).await,
            Kind::MqttsQos0Queued => run_mqtts_qos0_queued(setup, messages).await,
            Kind::RumqttcQos0 => {
                run_rumqttc(setup, messages, rumqttc::QoS::AtMostOnce, "rumqttc-qos0").await
            }
            Kind::MqttsQos1Wait => run_mqtts_qos1_wait(setup, messages / WAIT_DIVISOR).await,
            Kind::MqttsQos1Window => run_mqtts_qos1_window(setup, messages).await,
            Kind::MqttsQos1Batch => run_mqtts_qos1_batch(setup, messages).await,
            Kind::MqttsQos1Drain => run_mqtts_qos1_drain(setup, messages).await,
            Kind::RumqttcQos1 => {
                run_rumqttc(setup, messages, rumqttc::QoS::AtLeastOnce, "rumqttc-qos1").await
            }
        }
    };
    tokio::time::timeout(RUN_LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("{kind:?} took longer than {RUN_LIMIT:?}"))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let rounds: usize = value("--rounds").map_or(5, |n| n.parse().expect("--rounds N"));
    let messages: usize = value("--messages").map_or(20_000, |n| n.parse().expect("--messages N"));
    let only = value("--only");
    let kinds: Vec<(&str, Kind)> = KINDS
        .iter()
        .copied()
        .filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name))
        .collect();
    assert!(
        !kinds.is_empty(),
        "--only: one of {:?}",
        KINDS.map(|(n, _)| n)
    );

    // The leaf also names 127.0.0.1: rumqttc checks the address it dials.
    let root = CertSpec::root("bench root").self_signed();
    let leaf = CertSpec::leaf(&[SERVER_NAME])
        .add_san(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)))
        .signed_by(&root);
    // A default mosquitto apart from the TLS listener broker.rs configures.
    // `--broker-nodelay`: mosquitto with Nagle off on its sockets
    // (`set_tcp_nodelay true`), to see what its default costs; the report's
    // figures use the default.
    let broker_config = if args.iter().any(|a| a == "--broker-nodelay") {
        "set_tcp_nodelay true\n"
    } else {
        ""
    };
    let mosquitto = Mosquitto::start(&[&leaf], broker_config);
    BROKER_PID.store(u64::from(mosquitto.pid()), Ordering::Relaxed);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.der()).expect("root");
    let rustls = Arc::new(
        rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let write_buffer = value("--write-buffer")
        .map_or(MaxFragmentLength::Bytes1024.plaintext_len() + 128, |n| {
            n.parse().expect("--write-buffer BYTES")
        });
    let setup = Setup {
        write_buffer,
        port: mosquitto.port,
        pins: Box::leak(Box::new([Pin::PublicKey(leaf.spki_sha256())])),
        rustls,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); kinds.len()];
    for round in 0..rounds {
        // Alternate the order so no client always runs first.
        for i in 0..kinds.len() {
            let index = (i + round) % kinds.len();
            let sample = runtime.block_on(run(&setup, kinds[index].1, messages));
            samples[index].push(sample);
        }
    }

    println!(
        "{messages} messages per run (mqtts-qos1-wait: {}), 64-byte payload, {rounds} rounds, \
         medians; mqtts TLS write buffer {write_buffer} bytes\n",
        messages / WAIT_DIVISOR
    );
    println!(
        "| client | msg/s | client CPU us/msg | broker CPU us/msg | broker busy | write calls/msg | bytes written/msg |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut rates = Vec::new();
    for ((name, _), runs) in kinds.iter().zip(&samples) {
        let rate = median(&mut runs.iter().map(Sample::rate).collect::<Vec<_>>());
        let cpu = median(&mut runs.iter().map(Sample::cpu_us).collect::<Vec<_>>());
        let per = |f: fn(&Sample) -> u64| {
            median(
                &mut runs
                    .iter()
                    .map(|s| f(s) as f64 / s.messages as f64)
                    .collect::<Vec<_>>(),
            )
        };
        let writes = per(|s| s.writes);
        let bytes = per(|s| s.bytes);
        let broker = median(&mut runs.iter().map(Sample::broker_cpu_us).collect::<Vec<_>>());
        let busy = median(&mut runs.iter().map(Sample::broker_busy).collect::<Vec<_>>());
        println!(
            "| {name} | {rate:.0} | {cpu:.2} | {broker:.2} | {:.0} % | {writes:.2} | {bytes:.1} |",
            busy * 100.0
        );
        rates.push((*name, rate, cpu));
    }
    let find = |name: &str| rates.iter().find(|(n, _, _)| *n == name).copied();
    for (ours, theirs) in [
        ("mqtts-qos0", "rumqttc-qos0"),
        ("mqtts-qos0-queued", "rumqttc-qos0"),
        ("mqtts-qos1-window", "rumqttc-qos1"),
        ("mqtts-qos1-batch", "rumqttc-qos1"),
        ("mqtts-qos1-drain", "rumqttc-qos1"),
        ("mqtts-qos1-wait", "rumqttc-qos1"),
    ] {
        if let (Some(a), Some(b)) = (find(ours), find(theirs)) {
            println!(
                "\n{ours} / {theirs}: {:.2}x the rate, {:.2}x the client CPU per message",
                a.1 / b.1,
                a.2 / b.2
            );
        }
    }
    drop(mosquitto);
}
