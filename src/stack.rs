//! Keeping the stack small across `.await`s.
//!
//! LLVM inlines an awaited future's `poll` into its caller's, so the whole
//! connect path (TLS handshake, certificate checks, CONNECT/CONNACK) ends up
//! as one function whose frame holds the temporaries of every step at once
//! (16 KB on x86_64). [`separate`] polls a future in a function of its own,
//! so its temporaries use the stack only while it runs and the caller's
//! frame stays small: the peak stack of a pinned connect went from 24.3 KB
//! to 19.8 KB (`cargo bench --bench handshake -- --ram`, docs/PERFORMANCE.md).

use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::{Context, Poll};

/// Awaits a pinned `future` (`core::pin::pin!` in the caller, so that it is
/// stored once, in the caller's state), polling it through a function that
/// is never inlined.
pub(crate) fn separate<F: Future>(mut future: Pin<&mut F>) -> impl Future<Output = F::Output> + '_ {
    poll_fn(move |cx| poll_separately(future.as_mut(), cx))
}

#[inline(never)]
fn poll_separately<F: Future>(future: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
    future.poll(cx)
}
