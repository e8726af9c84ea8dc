//! A TCP proxy on loopback that breaks connections on purpose, for fault
//! injection between an mqtts client and a real broker.
//!
//! Everything is TLS 1.3, so the proxy cannot read MQTT. It still sees the
//! record layer in clear: content type and length of every record, in each
//! direction. mqtts flushes one record per packet and mosquitto writes one
//! per packet, and the plaintext length of a record (length - 1 content
//! type byte - 16 bytes of AES-GCM tag, no padding) tells acknowledgements
//! (4 bytes), PINGREQ/PINGRESP (2), a one-filter SUBACK (5) and a SUBSCRIBE
//! of known size from a PUBLISH. From that and the client's [`Role`] the
//! proxy follows the protocol [`Phase`] well enough to cut a connection in a
//! chosen phase (mid-PUBLISH, between PUBREC and PUBREL, during SUBSCRIBE)
//! and to say in which phase every cut fell. The classification is inferred
//! from sizes and order, so it is a statistic, not an assertion.
//!
//! Each accepted connection draws a [`Plan`] from a seeded RNG: cut after a
//! random number of bytes in one direction, at a random offset of the n-th
//! record, on the n-th entry into a phase, or after a random time; every
//! plan also has a time limit, so no connection lives for long while
//! cutting is on. A cut closes both sides, half of the time with a TCP
//! reset (SO_LINGER 0) instead of a FIN.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// TLS record header: type (1), legacy version (2), length (2).
const RECORD_HEADER: usize = 5;
/// Content type byte and AES-128-GCM tag inside an encrypted record.
const RECORD_OVERHEAD: usize = 1 + 16;
/// TLS content type of encrypted records (RFC 8446 §5.1).
const APPLICATION_DATA: u8 = 23;

/// Client to broker, or broker to client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    /// From the client to the broker.
    Up,
    /// From the broker to the client.
    Down,
}

/// What the client on this proxy does, so record sizes can be read as
/// MQTT packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Publishes QoS 1 messages (any number in flight).
    PublisherQos1,
    /// Publishes QoS 2 messages one at a time (`publish()` waits for PUBCOMP).
    PublisherQos2,
    /// Subscribes with one filter; `subscribe_len` is the SUBSCRIBE packet's size.
    Subscriber {
        /// Bytes of the SUBSCRIBE packet (fixed header included).
        subscribe_len: usize,
    },
}

/// Where a connection is in the protocol, as far as the proxy can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// TLS handshake: the client's Finished has not gone through.
    Handshake,
    /// CONNECT sent (and messages resent), CONNACK not through yet.
    Connect,
    /// A SUBSCRIBE is on its way or waits for its SUBACK.
    Subscribe,
    /// A PUBLISH record is cut in the middle (either direction).
    MidPublish,
    /// Publisher: a PUBLISH went through, its PUBACK / PUBREC has not.
    AwaitingAck,
    /// QoS 2 publisher: PUBREC reached the client, its PUBREL has not reached the broker.
    PubrecToPubrel,
    /// QoS 2 publisher: PUBREL went through, PUBCOMP has not.
    PubrelToPubcomp,
    /// None of the above (between messages, acknowledgements of received
    /// messages, keep-alive).
    Other,
}

impl Phase {
    /// Every phase, in report order.
    pub const ALL: [Phase; 8] = [
        Phase::Handshake,
        Phase::Connect,
        Phase::Subscribe,
        Phase::MidPublish,
        Phase::AwaitingAck,
        Phase::PubrecToPubrel,
        Phase::PubrelToPubcomp,
        Phase::Other,
    ];

    /// The phases a plan can aim at for this role.
    fn targets(role: Role) -> &'static [Phase] {
        match role {
            Role::PublisherQos1 => &[Phase::Connect, Phase::MidPublish, Phase::AwaitingAck],
            Role::PublisherQos2 => &[
                Phase::Connect,
                Phase::MidPublish,
                Phase::AwaitingAck,
                Phase::PubrecToPubrel,
                Phase::PubrelToPubcomp,
            ],
            Role::Subscriber { .. } => &[Phase::Connect, Phase::Subscribe, Phase::MidPublish],
        }
    }
}

/// Application records up after which a plan that has not fired cuts
/// anyway (see `Tracker::on_record_start`).
const PLAN_BACKSTOP_RECORDS: u64 = 40;

/// When to cut one connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plan {
    /// After this many bytes went through in this direction (total,
    /// handshake included): mostly mid-handshake or mid-record.
    AfterBytes { dir: Dir, bytes: u64 },
    /// Inside record number `index` (0-based) of this direction, after
    /// `fraction` of its bytes (0.0 = on the boundary before it).
    AtRecord { dir: Dir, index: u64, fraction: f64 },
    /// The `nth` (1-based) time the connection enters `phase` (for
    /// `MidPublish`: inside the PUBLISH record, after `fraction` of it).
    AtPhase {
        phase: Phase,
        nth: u64,
        fraction: f64,
    },
    /// After this long.
    AfterMillis(u64),
    /// Never cut, but flip one bit in the last byte (the AES-GCM tag) of
    /// record number `index` of this direction: the receiver cannot
    /// authenticate it.
    Corrupt { dir: Dir, index: u64 },
}

impl Plan {
    fn draw(rng: &mut StdRng, role: Role) -> Plan {
        let dir = if rng.gen_bool(0.5) {
            Dir::Up
        } else {
            Dir::Down
        };
        match rng.gen_range(0..10) {
            // The handshake is about 300 bytes up and 1,000 down (P-256,
            // one certificate); more bytes reach into the first messages.
            0 | 1 => Plan::AfterBytes {
                dir,
                bytes: rng.gen_range(
                    0..match dir {
                        Dir::Up => 2_000,
                        Dir::Down => 3_000,
                    },
                ),
            },
            2 | 3 => Plan::AtRecord {
                dir,
                index: rng.gen_range(0..30),
                fraction: rng.gen_range(0.0..1.0),
            },
            4 => Plan::AfterMillis(rng.gen_range(0..300)),
            // (`Corrupt` is only scripted.)
            _ => {
                let targets = Phase::targets(role);
                let phase = targets[rng.gen_range(0..targets.len())];
                let nth = match phase {
                    // Once per connection.
                    Phase::Connect | Phase::Subscribe => 1,
                    _ => rng.gen_range(1..=10),
                };
                Plan::AtPhase {
                    phase,
                    nth,
                    fraction: rng.gen_range(0.05..0.95),
                }
            }
        }
    }
}

/// How connections ended, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutStats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections the proxy cut, by the phase they were in.
    pub cuts: BTreeMap<Phase, u64>,
    /// Cuts that fell inside a record (some of its bytes went through).
    pub mid_record: u64,
    /// Cuts with a TCP reset rather than a FIN.
    pub resets: u64,
    /// Cuts by the time limit of a plan that had not fired.
    pub by_time_limit: u64,
}

impl CutStats {
    /// Total cuts.
    pub fn total(&self) -> u64 {
        self.cuts.values().sum()
    }
}

impl fmt::Display for CutStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections, {} cuts ({} inside a record, {} by reset, {} by time limit):",
            self.connections,
            self.total(),
            self.mid_record,
            self.resets,
            self.by_time_limit
        )?;
        for phase in Phase::ALL {
            write!(
                f,
                " {phase:?}={}",
                self.cuts.get(&phase).copied().unwrap_or(0)
            )?;
        }
        Ok(())
    }
}

/// What the proxy shares with its connection tasks.
struct Shared {
    upstream: SocketAddr,
    role: Role,
    cutting: AtomicBool,
    silent: AtomicBool,
    /// Longest life of a connection while cutting is on.
    time_limit: Duration,
    /// Plans for the first connections, in order, instead of random ones.
    script: Mutex<std::collections::VecDeque<Option<Plan>>>,
    rng: Mutex<StdRng>,
    stats: Mutex<CutStats>,
}

/// A running proxy; stops accepting when dropped (open connections are
/// closed when their peers go away).
pub struct FaultProxy {
    /// The loopback port clients dial.
    pub port: u16,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream_port`,
    /// cutting (while [`FaultProxy::set_cutting`] is on, as it is at first)
    /// as plans drawn from `seed` say.
    pub async fn start(upstream_port: u16, role: Role, seed: u64) -> FaultProxy {
        Self::start_with(upstream_port, role, seed, Duration::from_secs(1), true).await
    }

    /// A proxy that forwards faithfully until told otherwise.
    pub async fn transparent(upstream_port: u16) -> FaultProxy {
        Self::start_with(
            upstream_port,
            Role::PublisherQos1,
            0,
            Duration::from_secs(2),
            false,
        )
        .await
    }

    async fn start_with(
        upstream_port: u16,
        role: Role,
        seed: u64,
        time_limit: Duration,
        cutting: bool,
    ) -> FaultProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from((Ipv4Addr::LOCALHOST, upstream_port)),
            role,
            cutting: AtomicBool::new(cutting),
            silent: AtomicBool::new(false),
            time_limit,
            script: Mutex::new(std::collections::VecDeque::new()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            stats: Mutex::new(CutStats::default()),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        FaultProxy {
            port,
            shared,
            accept,
        }
    }

    /// A proxy whose first connections follow `plans` in order (`None`:
    /// not cut); later connections are not cut.
    pub async fn scripted(upstream_port: u16, role: Role, plans: &[Option<Plan>]) -> FaultProxy {
        let proxy = Self::start_with(upstream_port, role, 0, Duration::from_secs(2), false).await;
        proxy
            .shared
            .script
            .lock()
            .expect("script lock")
            .extend(plans.iter().copied());
        proxy
    }

    /// Turns cutting on or off for connections accepted from now on
    /// (connections already open keep their plan).
    pub fn set_cutting(&self, on: bool) {
        self.shared.cutting.store(on, Ordering::SeqCst);
    }

    /// From now on, every connection stays open but nothing more is
    /// forwarded in either direction: a broker that went silent.
    pub fn go_silent(&self) {
        self.set_silent(true);
    }

    /// Silent (see [`FaultProxy::go_silent`]) or forwarding again; what was
    /// swallowed meanwhile stays lost, so only new connections are sound.
    pub fn set_silent(&self, silent: bool) {
        self.shared.silent.store(silent, Ordering::SeqCst);
    }

    /// The cuts so far.
    pub fn stats(&self) -> CutStats {
        self.shared.stats.lock().expect("stats lock").clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let scripted = shared.script.lock().expect("script lock").pop_front();
        let plan = if let Some(plan) = scripted {
            // Scripted cuts close with a FIN.
            plan.map(|plan| (plan, false))
        } else if shared.cutting.load(Ordering::SeqCst) {
            let mut rng = shared.rng.lock().expect("rng lock");
            Some((Plan::draw(&mut rng, shared.role), rng.gen_bool(0.5)))
        } else {
            None
        };
        shared.stats.lock().expect("stats lock").connections += 1;
        tokio::spawn(serve(client, plan, Arc::clone(&shared)));
    }
}

/// Why a connection task stopped.
enum End {
    /// One side closed or failed: close the other.
    Closed,
    /// The plan fired.
    Cut { mid_record: bool },
    /// The plan's time limit passed (or an `AfterMillis` plan fired).
    Timer,
}

async fn serve(mut client: TcpStream, plan: Option<(Plan, bool)>, shared: Arc<Shared>) {
    let Ok(mut server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let tracker = Mutex::new(Tracker::new(shared.role, plan.map(|(p, _)| p)));
    let limit = match plan {
        Some((Plan::AfterMillis(ms), _)) => Duration::from_millis(ms),
        Some(_) => shared.time_limit,
        // Not cutting: as long as the peers want.
        None => Duration::from_secs(24 * 3600),
    };
    let end = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let up = pump(
            &mut client_read,
            &mut server_write,
            Dir::Up,
            &tracker,
            &shared,
        );
        let down = pump(
            &mut server_read,
            &mut client_write,
            Dir::Down,
            &tracker,
            &shared,
        );
        tokio::select! {
            end = up => end,
            end = down => end,
            () = tokio::time::sleep(limit) => End::Timer,
        }
    };
    let cut = match end {
        End::Closed => None,
        End::Cut { mid_record } => Some(mid_record),
        End::Timer => Some(tracker.lock().expect("tracker lock").in_record()),
    };
    if let (Some(mid_record), Some((_, reset))) = (cut, plan) {
        let phase = tracker.lock().expect("tracker lock").phase_now();
        let mut stats = shared.stats.lock().expect("stats lock");
        *stats.cuts.entry(phase).or_insert(0) += 1;
        stats.mid_record += u64::from(mid_record);
        stats.by_time_limit += u64::from(matches!(end, End::Timer));
        if reset {
            stats.resets += 1;
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
        }
    }
    // Dropping both sockets closes them (FIN, or RST with zero linger).
}

/// Forwards one direction until a side closes or the tracker says cut.
async fn pump(
    from: &mut tokio::net::tcp::ReadHalf<'_>,
    to: &mut tokio::net::tcp::WriteHalf<'_>,
    dir: Dir,
    tracker: &Mutex<Tracker>,
    shared: &Shared,
) -> End {
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return End::Closed,
            Ok(n) => n,
        };
        if shared.silent.load(Ordering::SeqCst) {
            // Swallowed: the other end hears nothing more.
            continue;
        }
        let decision = tracker
            .lock()
            .expect("tracker lock")
            .feed(dir, &mut buf[..n]);
        if to.write_all(&buf[..decision.forward]).await.is_err() {
            return End::Closed;
        }
        if decision.cut {
            return End::Cut {
                mid_record: decision.mid_record,
            };
        }
    }
}

/// What to do with a chunk: forward its first `forward` bytes, then cut?
struct Decision {
    forward: usize,
    cut: bool,
    mid_record: bool,
}

/// The record layer of one direction.
#[derive(Default)]
struct RecordReader {
    header: [u8; RECORD_HEADER],
    header_len: usize,
    /// Body bytes of the current record still to come.
    body_left: usize,
    /// Bytes of the current record seen so far (header included).
    seen: usize,
    /// The current record (once its header is complete).
    current: Option<Record>,
    /// Records begun so far.
    records: u64,
    bytes: u64,
}

impl RecordReader {
    fn in_record(&self) -> bool {
        self.seen > 0
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    content_type: u8,
    /// Total size, header included.
    len: usize,
    /// Plaintext bytes, for encrypted records.
    plaintext: usize,
    index: u64,
}

/// What a record is, read from its size and place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Before the client's Finished went through.
    Handshake,
    /// The client's Finished.
    ClientFinished,
    /// The first record after the client's Finished: CONNECT.
    Connect,
    /// A 4-byte packet: CONNACK or an acknowledgement.
    Ack,
    /// PINGREQ / PINGRESP / DISCONNECT.
    Tiny,
    Subscribe,
    Suback,
    Publish,
    /// Anything else (NewSessionTicket, several packets in one record).
    Other,
}

/// Follows one connection and applies its plan.
struct Tracker {
    role: Role,
    plan: Option<Plan>,
    up: RecordReader,
    down: RecordReader,
    client_finished: bool,
    /// Index of the client's Finished record.
    finished_index: Option<u64>,
    connack: bool,
    subscribing: bool,
    /// QoS 1 publisher: PUBLISH records through minus acknowledgements.
    outstanding: u64,
    /// QoS 2 publisher: where the message in flight is.
    qos2: Phase,
    /// How many times each phase was entered.
    entered: BTreeMap<Phase, u64>,
    /// A `MidPublish` plan matched this record: cut at this offset in it.
    cut_in_record: Option<(Dir, u64, usize)>,
}

impl Tracker {
    fn new(role: Role, plan: Option<Plan>) -> Self {
        Tracker {
            role,
            plan,
            up: RecordReader::default(),
            down: RecordReader::default(),
            client_finished: false,
            finished_index: None,
            connack: false,
            subscribing: false,
            outstanding: 0,
            qos2: Phase::Other,
            entered: BTreeMap::new(),
            cut_in_record: None,
        }
    }

    fn reader(&mut self, dir: Dir) -> &mut RecordReader {
        match dir {
            Dir::Up => &mut self.up,
            Dir::Down => &mut self.down,
        }
    }

    fn in_record(&self) -> bool {
        self.up.in_record() || self.down.in_record()
    }

    /// The phase now (at a cut).
    fn phase_now(&self) -> Phase {
        if !self.client_finished {
            return Phase::Handshake;
        }
        for (dir, reader) in [(Dir::Up, &self.up), (Dir::Down, &self.down)] {
            if let (true, Some(record)) = (reader.in_record(), reader.current) {
                match self.kind(dir, record) {
                    Kind::Publish => return Phase::MidPublish,
                    Kind::Subscribe => return Phase::Subscribe,
                    _ => {}
                }
            }
        }
        if !self.connack {
            return Phase::Connect;
        }
        if self.subscribing {
            return Phase::Subscribe;
        }
        match self.role {
            Role::PublisherQos1 if self.outstanding > 0 => Phase::AwaitingAck,
            Role::PublisherQos2 => self.qos2,
            _ => Phase::Other,
        }
    }

    fn kind(&self, dir: Dir, record: Record) -> Kind {
        if !self.client_finished {
            return if dir == Dir::Up && record.content_type == APPLICATION_DATA {
                Kind::ClientFinished
            } else {
                Kind::Handshake
            };
        }
        if record.content_type != APPLICATION_DATA {
            return Kind::Other;
        }
        if dir == Dir::Up && record.index == self.first_app_record_up() {
            return Kind::Connect;
        }
        match (self.role, dir, record.plaintext) {
            (_, _, 4) => Kind::Ack,
            (_, _, 2) => Kind::Tiny,
            (Role::Subscriber { .. }, Dir::Down, 5) => Kind::Suback,
            (Role::Subscriber { subscribe_len }, Dir::Up, len) if len == subscribe_len => {
                Kind::Subscribe
            }
            (Role::Subscriber { .. }, Dir::Down, len) if len > 5 && self.connack => Kind::Publish,
            (Role::PublisherQos1 | Role::PublisherQos2, Dir::Up, len) if len > 5 => Kind::Publish,
            _ => Kind::Other,
        }
    }

    /// Index of the first Up record after the client's Finished.
    fn first_app_record_up(&self) -> u64 {
        self.finished_index.map_or(u64::MAX, |i| i + 1)
    }

    /// Feeds bytes that arrived in `dir`; says how many to forward and
    /// whether to cut after them.
    fn feed(&mut self, dir: Dir, data: &mut [u8]) -> Decision {
        let mut at = 0;
        while at < data.len() {
            // A cut planned at this position?
            if let Some(mid_record) = self.cut_here(dir) {
                return Decision {
                    forward: at,
                    cut: true,
                    mid_record,
                };
            }
            let reader = self.reader(dir);
            if reader.header_len < RECORD_HEADER {
                if reader.header_len == 0 {
                    reader.records += 1;
                }
                reader.header[reader.header_len] = data[at];
                reader.header_len += 1;
                reader.seen += 1;
                reader.bytes += 1;
                at += 1;
                if reader.header_len == RECORD_HEADER {
                    let len = usize::from(u16::from_be_bytes([reader.header[3], reader.header[4]]));
                    let record = Record {
                        content_type: reader.header[0],
                        len: RECORD_HEADER + len,
                        plaintext: len.saturating_sub(RECORD_OVERHEAD),
                        index: reader.records - 1,
                    };
                    reader.body_left = len;
                    reader.current = Some(record);
                    self.on_record_start(dir, record);
                    if len == 0 {
                        self.on_record_end(dir);
                    }
                }
                continue;
            }
            // Body bytes, up to the end of the record or a planned cut.
            let mut take = reader.body_left.min(data.len() - at);
            if let Some((cut_dir, index, offset)) = self.cut_in_record
                && cut_dir == dir
                && self.reader(dir).records - 1 == index
            {
                let seen = self.reader(dir).seen;
                take = take.min(offset.saturating_sub(seen));
            }
            let current = self.reader(dir).records - 1;
            let corrupt = matches!(self.plan, Some(Plan::Corrupt { dir: d, index })
                if d == dir && current == index);
            let reader = self.reader(dir);
            reader.body_left -= take;
            reader.seen += take;
            reader.bytes += take as u64;
            at += take;
            if corrupt && reader.body_left == 0 && take > 0 {
                data[at - 1] ^= 0x01;
            }
            if reader.body_left == 0 {
                self.on_record_end(dir);
            }
        }
        match self.cut_here(dir) {
            Some(mid_record) => Decision {
                forward: at,
                cut: true,
                mid_record,
            },
            None => Decision {
                forward: at,
                cut: false,
                mid_record: false,
            },
        }
    }

    /// Whether the plan says cut at the current position of `dir`
    /// (`Some(mid_record)`).
    fn cut_here(&mut self, dir: Dir) -> Option<bool> {
        let reader = match dir {
            Dir::Up => &self.up,
            Dir::Down => &self.down,
        };
        let mid = reader.in_record();
        match self.plan? {
            Plan::AfterBytes { dir: d, bytes } if d == dir && reader.bytes >= bytes => Some(mid),
            _ => {
                let (cut_dir, index, offset) = self.cut_in_record?;
                (cut_dir == dir
                    && reader.current.is_some_and(|r| r.index == index)
                    && reader.seen >= offset
                    && reader.in_record())
                .then_some(true)
                .or_else(|| {
                    // A boundary cut: `offset` 0 at the record's start.
                    (cut_dir == dir && reader.records == index && !reader.in_record())
                        .then_some(false)
                })
            }
        }
    }

    fn on_record_start(&mut self, dir: Dir, record: Record) {
        let plan = self.plan;
        // A plan that has not fired within `PLAN_BACKSTOP_RECORDS`
        // application records up cuts in the middle of the next one, so
        // that every connection while cutting is on is cut: phases are
        // told apart by record sizes, and packets the client sends
        // together in one record (a PUBREL with the next PUBLISH) can hide
        // one for a whole connection; a fast client can send all its
        // messages before an `AfterMillis` plan's time.
        if matches!(
            plan,
            Some(Plan::AtPhase { .. } | Plan::AfterMillis(_) | Plan::AtRecord { .. })
        ) && dir == Dir::Up
            && self.cut_in_record.is_none()
            && record.index
                >= self
                    .first_app_record_up()
                    .saturating_add(PLAN_BACKSTOP_RECORDS)
        {
            self.cut_in_record = Some((dir, record.index, (record.len / 2).max(RECORD_HEADER)));
            return;
        }
        match plan {
            Some(Plan::AtRecord {
                dir: d,
                index,
                fraction,
            }) if d == dir && index == record.index => {
                let offset = (record.len as f64 * fraction) as usize;
                self.cut_in_record = Some((dir, index, offset.max(RECORD_HEADER)));
            }
            Some(Plan::AtPhase {
                phase: Phase::MidPublish,
                nth,
                fraction,
            }) if self.kind(dir, record) == Kind::Publish
                // Counts the entry; cuts at the nth.
                && self.enter(Phase::MidPublish) == nth =>
            {
                let offset = (record.len as f64 * fraction) as usize;
                let offset = offset.clamp(RECORD_HEADER, record.len - 1);
                self.cut_in_record = Some((dir, record.index, offset));
            }
            Some(Plan::AtPhase {
                phase: Phase::Subscribe,
                nth,
                fraction,
            }) if self.kind(dir, record) == Kind::Subscribe
                && self.enter(Phase::Subscribe) == nth =>
            {
                // Inside the SUBSCRIBE, or just after it (before SUBACK).
                let offset =
                    ((record.len as f64 * fraction) as usize).clamp(RECORD_HEADER, record.len);
                self.cut_in_record = if offset >= record.len {
                    Some((dir, record.index + 1, 0))
                } else {
                    Some((dir, record.index, offset))
                };
            }
            _ => {}
        }
    }

    /// Counts an entry into `phase`; returns how many so far.
    fn enter(&mut self, phase: Phase) -> u64 {
        let count = self.entered.entry(phase).or_insert(0);
        *count += 1;
        *count
    }

    fn on_record_end(&mut self, dir: Dir) {
        let reader = self.reader(dir);
        let Some(record) = reader.current.take() else {
            return;
        };
        reader.header_len = 0;
        reader.seen = 0;
        let kind = self.kind(dir, record);
        let mut entered = None;
        match (kind, dir) {
            (Kind::ClientFinished, _) => {
                self.client_finished = true;
                self.finished_index = Some(record.index);
            }
            (Kind::Connect, _) => entered = Some(Phase::Connect),
            (Kind::Ack, Dir::Down) if !self.connack => self.connack = true,
            (Kind::Suback, Dir::Down) => self.subscribing = false,
            (Kind::Subscribe, Dir::Up) => self.subscribing = true,
            (Kind::Publish, Dir::Up) => {
                self.outstanding += 1;
                self.qos2 = Phase::AwaitingAck;
                entered = Some(Phase::AwaitingAck);
            }
            (Kind::Ack, Dir::Down) => {
                self.outstanding = self.outstanding.saturating_sub(1);
                self.qos2 = match self.qos2 {
                    Phase::AwaitingAck => {
                        entered = Some(Phase::PubrecToPubrel);
                        Phase::PubrecToPubrel
                    }
                    _ => Phase::Other,
                };
            }
            (Kind::Ack, Dir::Up) if self.role == Role::PublisherQos2 => {
                self.qos2 = Phase::PubrelToPubcomp;
                entered = Some(Phase::PubrelToPubcomp);
            }
            _ => {}
        }
        // Plans that cut right after the record that entered their phase.
        if let (
            Some(phase),
            Some(Plan::AtPhase {
                phase: target, nth, ..
            }),
        ) = (entered, self.plan)
            && phase == target
            && self.enter(phase) == nth
        {
            let next = self.reader(dir).records;
            self.cut_in_record = Some((dir, next, 0));
        }
    }
}
