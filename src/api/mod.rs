//! gRPC handlers: authenticate, convert proto to domain, call the domain and
//! the store, convert back, map errors. Nothing more.

pub mod convert;
pub mod dsr;
pub mod error;
pub mod page;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::domain::age::AgePolicy;
use crate::store::Store;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub auth: Authenticator,
    pub clock: Arc<dyn Clock>,
    pub age_policy: AgePolicy,
    pub counters: Arc<Counters>,
}

/// Plain counters, exported by the metrics endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    /// Submissions refused because the subject is under the minimum age.
    /// Only a count is kept: nothing about the subject is stored.
    pub blocked_under_minimum_age: AtomicU64,
}
