//! A future that runs under one dispatcher both while it is polled and
//! when it is dropped.
//!
//! `tracing`'s `WithDispatch` covers polls only. A future dropped before it
//! finishes (a call its client abandoned, a background loop stopped) drops
//! its spans outside any poll, and the registry hands a closed span's
//! reference to its parent back through the thread's default dispatcher
//! (see `threads.rs`): under another one, the parent would never close.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tracing::Dispatch;

/// See the module documentation. Without a dispatcher it is the bare
/// future.
pub struct Dispatched<F> {
    /// `None` once finished.
    inner: Option<Pin<Box<F>>>,
    dispatch: Option<Dispatch>,
}

impl<F> Dispatched<F> {
    pub(super) fn new(dispatch: Option<Dispatch>, future: F) -> Self {
        Self {
            inner: Some(Box::pin(future)),
            dispatch,
        }
    }
}

impl<F: Future> Future for Dispatched<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let _default = this.dispatch.as_ref().map(tracing::dispatcher::set_default);
        let Some(inner) = this.inner.as_mut() else {
            // Polled after it finished: the caller broke the contract.
            return Poll::Pending;
        };
        let polled = inner.as_mut().poll(cx);
        if polled.is_ready() {
            // Dropped here, still under the dispatcher.
            this.inner = None;
        }
        polled
    }
}

impl<F> Drop for Dispatched<F> {
    fn drop(&mut self) {
        if self.inner.is_some() {
            let _default = self.dispatch.as_ref().map(tracing::dispatcher::set_default);
            self.inner = None;
        }
    }
}
