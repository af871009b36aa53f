//! What keeps a per-application dispatcher correct when it is not the
//! process-wide default (tests run several applications in one process):
//! helper threads that enter its spans get it as their default, and a
//! second, inert dispatcher stays registered.
//!
//! **Helper threads.**
//! `tracing-subscriber`'s registry keeps each span's parent open until the
//! span closes, then hands the parent's reference back through the
//! *thread's default dispatcher* (`DataInner::clear`, tokio-rs/tracing#1656),
//! not through the dispatcher the span belongs to. sqlx's SQLite driver
//! sends `Span::current()` (our `gdpr.store.*` span) with every command to
//! the connection's worker thread, which enters it and drops it after it
//! has answered: when that drop is the last one, the store span closes on
//! the worker thread. If that thread's default is not our dispatcher (no
//! global subscriber, as in tests, or another application's), the parent's
//! reference goes nowhere, and the spans above it (a watchdog sweep's, a
//! claimed task's) never close and are never exported.
//!
//! A worker thread is dedicated to one connection of one pool of one
//! application, so the first time such a thread (one outside any tokio
//! runtime) enters one of our spans, this layer makes our dispatcher its
//! default for the rest of its life. Runtime threads are left alone: they
//! may serve several applications, and a call's futures run (and are
//! dropped) under the application's dispatcher there anyway (`grpc.rs`,
//! `dispatched.rs`).
//!
//! **The inert dispatcher.** While exactly one dispatcher is registered,
//! tracing-core works out a new callsite's interest from the *thread's*
//! default dispatcher instead of the registered one (its `JustOne`
//! shortcut, made for a single global subscriber). With the application's
//! dispatcher scoped rather than global, a callsite first reached on
//! another thread (a second, untraced application's watchdog) was cached
//! as never interesting, and the application lost those spans for good.
//! A second registered dispatcher, interested in nothing, keeps
//! tracing-core on its general path, which asks every registered one.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tracing::dispatcher::{DefaultGuard, WeakDispatch};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber, span};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

thread_local! {
    /// The default this thread was given, kept until the thread exits.
    static ADOPTED: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
}

/// See the module documentation.
pub(super) struct AdoptHelperThreads {
    adoption: Arc<Adoption>,
}

/// What [`AdoptHelperThreads`] hands helper threads, shared with the
/// application's handle.
#[derive(Default)]
pub(super) struct Adoption {
    /// The application's dispatcher, set once it exists; weak, so that the
    /// dispatcher does not keep itself alive.
    dispatch: OnceLock<WeakDispatch>,
    /// Set once the dispatcher is the process-wide default: every thread
    /// has it then, and none needs to be given it.
    global: AtomicBool,
}

impl Adoption {
    /// Sets the dispatcher to hand out; once only.
    pub(super) fn set(&self, dispatch: WeakDispatch) {
        let _ = self.dispatch.set(dispatch);
    }

    /// Stops handing it out: it is the global default now.
    pub(super) fn made_global(&self) {
        self.global.store(true, Ordering::Relaxed);
    }
}

impl AdoptHelperThreads {
    /// The layer, and what to give it the dispatcher through once it is
    /// built.
    pub(super) fn new() -> (Self, Arc<Adoption>) {
        let adoption = Arc::new(Adoption::default());
        (
            Self {
                adoption: adoption.clone(),
            },
            adoption,
        )
    }
}

impl<S: Subscriber> Layer<S> for AdoptHelperThreads {
    fn on_enter(&self, _id: &span::Id, _ctx: Context<'_, S>) {
        if self.adoption.global.load(Ordering::Relaxed)
            || tokio::runtime::Handle::try_current().is_ok()
        {
            return;
        }
        let Some(dispatch) = self.adoption.dispatch.get().and_then(WeakDispatch::upgrade) else {
            return;
        };
        // Fails only while the thread is exiting, when nothing is left to
        // close on it.
        let _ = ADOPTED.try_with(|adopted| {
            let mut adopted = adopted.borrow_mut();
            if adopted.is_none() {
                *adopted = Some(tracing::dispatcher::set_default(&dispatch));
            }
        });
    }
}

/// Registers the inert dispatcher once per process (see the module
/// documentation).
pub(super) fn register_inert_dispatcher() {
    static INERT: OnceLock<Dispatch> = OnceLock::new();
    INERT.get_or_init(|| Dispatch::new(Inert));
}

/// Interested in nothing, at no level: it changes no interest but "never"
/// into "sometimes", and leaves the global maximum level alone.
struct Inert;

impl Subscriber for Inert {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::never()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::OFF)
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        // Never called: nothing is enabled.
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}
