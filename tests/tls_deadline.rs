//! TLS reads that stop at a deadline lose nothing: the server's records
//! reach the client in 7-byte pieces, so deadlines fire while a record
//! header and while a record body is half read, and the data must still
//! arrive intact and in order.

mod support;

use embedded_io_async::Write as _;
use mqtts::time::Timer as _;
use mqtts::tls::{self, ReadDeadline, TlsOptions};
use mqtts::trust::{Pin, Trust};
use rand::rngs::OsRng;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Forwards `from` to `to` in pieces of at most `chunk` bytes, `pause` apart.
async fn trickle<R, W>(mut from: R, mut to: W, chunk: usize, pause: Duration)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; chunk];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tokio::time::sleep(pause).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// client <-> proxy <-> server: the proxy passes the client's bytes on at
/// once and the server's in pieces of `chunk` bytes, 2 ms apart. Returns the
/// client's end, the server's end and the two proxy tasks.
fn slow_link(
    chunk: usize,
) -> (
    tokio::io::DuplexStream,
    tokio::io::DuplexStream,
    tokio::task::JoinHandle<()>,
    tokio::task::JoinHandle<()>,
) {
    let (client_raw, proxy_client_side) = tokio::io::duplex(DUPLEX_BUFFER);
    let (proxy_server_side, server_end) = tokio::io::duplex(DUPLEX_BUFFER);
    let (pc_read, pc_write) = tokio::io::split(proxy_client_side);
    let (ps_read, ps_write) = tokio::io::split(proxy_server_side);
    let up = tokio::spawn(trickle(pc_read, ps_write, 4096, Duration::ZERO));
    let down = tokio::spawn(trickle(ps_read, pc_write, chunk, Duration::from_millis(2)));
    (client_raw, server_end, up, down)
}

#[tokio::test]
async fn reads_stopped_by_deadlines_mid_record_lose_nothing() {
    let pki = TestPki::new(KeyKind::P256);
    let config = server_config(pki.chain(), pki.leaf.private_key_der());

    let (client_raw, server_end, up, down) = slow_link(7);

    let message: Vec<u8> = (0..6_000u32).map(|i| (i * 7) as u8).collect();
    let expected = message.clone();
    // Server: handshake, send the message, then read "ok".
    let server = tokio::spawn(async move {
        let mut stream = accept(config, server_end).await.expect("server handshake");
        stream.write_all(&message).await.expect("send");
        stream.flush().await.expect("flush");
        let mut ok = [0u8; 2];
        stream.read_exact(&mut ok).await.expect("read ok");
        ok
    });

    let pins = [Pin::PublicKey(pki.leaf.spki_sha256())];
    let options = TlsOptions::new(SERVER_NAME, Trust::pinned(&pins));
    let deadline = ReadDeadline::new();
    let timer = TokioTimer::new();
    let mut read_buffer = vec![0; tls::READ_BUFFER_FOR_FULL_RECORDS];
    let mut write_buffer = vec![0; 1024];
    let socket = embedded_io_adapters::tokio_1::FromTokio::new(client_raw);
    let mut stream = within(
        "handshake",
        tls::connect_with_timer(
            socket,
            &deadline,
            timer,
            &mut read_buffer,
            &mut write_buffer,
            &mut OsRng,
            &options,
        ),
    )
    .await
    .expect("handshake");

    let mut received = Vec::new();
    let mut timeouts = 0;
    let mut chunk = [0u8; 1000];
    within("receiving", async {
        while received.len() < expected.len() {
            // A deadline about 1 ms ahead: shorter than the 2 ms between pieces.
            match stream
                .read_before(&mut chunk, timer.now() + 1)
                .await
                .expect("read")
            {
                Some(0) => panic!("closed early"),
                Some(n) => received.extend_from_slice(&chunk[..n]),
                None => timeouts += 1,
            }
        }
    })
    .await;
    assert_eq!(received.len(), expected.len());
    assert!(received == expected, "data corrupted across deadlines");
    assert!(
        timeouts > 100,
        "deadlines should fire often; fired {timeouts} times"
    );

    stream.write_all(b"ok").await.expect("write");
    stream.flush().await.expect("flush");
    assert_eq!(&join_server(server).await, b"ok");
    drop(stream);
    let _ = (up.await, down.await);
}

#[tokio::test]
async fn a_dropped_read_future_loses_nothing() {
    // Same as above, but the caller cancels plain reads with its own timeout
    // (tokio::time::timeout drops the read future).
    let pki = TestPki::new(KeyKind::P256);
    let config = server_config(pki.chain(), pki.leaf.private_key_der());
    let (client_raw, server_end, up, down) = slow_link(11);
    let message: Vec<u8> = (0..6_000u32).map(|i| (i * 13) as u8).collect();
    let expected = message.clone();
    let server = tokio::spawn(async move {
        let mut stream = accept(config, server_end).await.expect("server handshake");
        stream.write_all(&message).await.expect("send");
        stream.flush().await.expect("flush");
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    });

    let pins = [Pin::PublicKey(pki.leaf.spki_sha256())];
    let options = TlsOptions::new(SERVER_NAME, Trust::pinned(&pins));
    let mut read_buffer = vec![0; tls::READ_BUFFER_FOR_FULL_RECORDS];
    let mut write_buffer = vec![0; 1024];
    let socket = embedded_io_adapters::tokio_1::FromTokio::new(client_raw);
    let mut stream = within(
        "handshake",
        tls::connect(
            socket,
            &mut read_buffer,
            &mut write_buffer,
            &mut OsRng,
            &options,
        ),
    )
    .await
    .expect("handshake");
    let mut received = Vec::new();
    let mut cancelled = 0;
    let mut chunk = [0u8; 700];
    within("receiving", async {
        while received.len() < expected.len() {
            use embedded_io_async::Read as _;
            match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut chunk)).await {
                Ok(Ok(0)) => panic!("closed early"),
                Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => panic!("read failed: {e:?}"),
                Err(_) => cancelled += 1,
            }
        }
    })
    .await;
    assert!(received == expected, "data corrupted by cancelled reads");
    assert!(
        cancelled > 100,
        "reads should have been cancelled often; {cancelled} times"
    );
    drop(stream);
    let _ = (server.await, up.await, down.await);
}

#[tokio::test]
async fn a_server_that_never_answers_times_the_handshake_out() {
    // Accepts the connection, reads the ClientHello, says nothing.
    let (socket, mut server_end) = socket_pair();
    let server = tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = server_end.read_to_end(&mut sink).await;
    });
    let pins = [Pin::PublicKey([0; 32])];
    let options = TlsOptions::new(SERVER_NAME, Trust::pinned(&pins)).with_handshake_timeout_ms(200);
    let deadline = ReadDeadline::new();
    let timer = TokioTimer::new();
    let mut read_buffer = vec![0; 4096];
    let mut write_buffer = vec![0; 1024];
    let started = std::time::Instant::now();
    let result = within(
        "handshake",
        tls::connect_with_timer(
            socket,
            &deadline,
            timer,
            &mut read_buffer,
            &mut write_buffer,
            &mut OsRng,
            &options,
        ),
    )
    .await;
    assert_eq!(
        result.err(),
        Some(mqtts::Error::Tls(mqtts::error::TlsFailure::Timeout))
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let _ = server.await;
}

#[tokio::test]
async fn an_mqtt_client_refuses_a_tls_stream_without_timer() {
    use mqtts::client::{Client, ConnectOptions};
    let pki = TestPki::new(KeyKind::P256);
    let config = server_config(pki.chain(), pki.leaf.private_key_der());
    let (socket, server) = spawn_server(config);
    let pins = [Pin::PublicKey(pki.leaf.spki_sha256())];
    let options = TlsOptions::new(SERVER_NAME, Trust::pinned(&pins));
    let mut read_buffer = vec![0; tls::READ_BUFFER_FOR_FULL_RECORDS];
    let mut write_buffer = vec![0; 1024];
    let stream = tls::connect(
        socket,
        &mut read_buffer,
        &mut write_buffer,
        &mut OsRng,
        &options,
    )
    .await
    .expect("handshake");
    let mut outbox = [0u8; 256];
    let mut session: mqtts::Session<'_, 2> = mqtts::Session::new(&mut outbox);
    let (mut rx, mut tx) = ([0u8; 256], [0u8; 256]);
    let result = within(
        "connect",
        Client::connect(
            stream,
            TokioTimer::new(),
            &mut session,
            &mut rx,
            &mut tx,
            &ConnectOptions::new("x"),
        ),
    )
    .await;
    assert_eq!(
        result.err(),
        Some(mqtts::Error::Config(
            mqtts::error::ConfigError::StreamWithoutTimer
        ))
    );
    drop(server);
}
