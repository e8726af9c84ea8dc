//! What the MQTT client reads and writes: a byte stream whose reads can
//! stop at a deadline without losing data, so waiting for packets and the
//! keep-alive timer never corrupt the stream.

use crate::error::{ConfigError, Error};
use crate::time::{Millis, Timer};
use crate::tls::TlsStream;
use embedded_io_async::{Read, Write};

/// A byte stream for [`Client`](crate::client::Client).
#[allow(async_fn_in_trait)] // used with concrete types only, never as `dyn`
pub trait Transport {
    /// Reads at least one byte into `buf` (0 means the peer closed), or
    /// returns `Ok(None)` once `deadline` has passed, having taken nothing
    /// from the stream.
    async fn read_before(
        &mut self,
        buf: &mut [u8],
        deadline: Millis,
    ) -> Result<Option<usize>, Error>;

    /// Writes all of `bytes` (possibly buffered until [`Transport::flush`]).
    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error>;

    /// Sends everything written.
    async fn flush(&mut self) -> Result<(), Error>;
}

impl<S, T> Transport for TlsStream<'_, S, T>
where
    S: Read + Write,
    T: Timer,
{
    async fn read_before(
        &mut self,
        buf: &mut [u8],
        deadline: Millis,
    ) -> Result<Option<usize>, Error> {
        // Without a timer the keep-alive could never fire: refuse rather
        // than silently never ping.
        if !self.has_timer() {
            return Err(ConfigError::StreamWithoutTimer.into());
        }
        TlsStream::read_before(self, buf, deadline).await
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        Write::write_all(self, bytes).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        Write::flush(self).await
    }
}

/// A plain (unencrypted) socket as a [`Transport`], for tests and brokers on
/// a trusted network. Its reads must be cancel-safe (embassy-net's and
/// tokio's are): a read is dropped when the deadline comes first.
#[derive(Debug)]
pub struct Plain<S, T> {
    socket: S,
    timer: T,
}

impl<S, T> Plain<S, T> {
    /// Wraps a connected socket.
    pub fn new(socket: S, timer: T) -> Self {
        Self { socket, timer }
    }

    /// The socket back.
    pub fn into_inner(self) -> S {
        self.socket
    }
}

fn io_error<E: embedded_io::Error>(e: E) -> Error {
    Error::Io(e.kind())
}

impl<S: Read + Write, T: Timer> Transport for Plain<S, T> {
    async fn read_before(
        &mut self,
        buf: &mut [u8],
        deadline: Millis,
    ) -> Result<Option<usize>, Error> {
        use embassy_futures::select::{Either, select};
        let mut read = core::pin::pin!(self.socket.read(buf));
        // What is at hand first; a deadline that has passed (0 for "only
        // what is at hand") is decided here, not by the timer.
        let first = core::future::poll_fn(|cx| core::task::Poll::Ready(read.as_mut().poll(cx)));
        if let core::task::Poll::Ready(result) = first.await {
            return result.map(Some).map_err(io_error);
        }
        if deadline <= self.timer.now() {
            return Ok(None);
        }
        match select(read, self.timer.sleep_until(deadline)).await {
            Either::First(result) => result.map(Some).map_err(io_error),
            Either::Second(()) => Ok(None),
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.socket.write_all(bytes).await.map_err(io_error)
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.socket.flush().await.map_err(io_error)
    }
}
