//! gRPC handlers: authenticate, convert proto to domain, call the domain and
//! the store, convert back, map errors. Nothing more.

pub mod convert;
pub mod dsr;
pub mod error;
pub mod page;

use std::sync::Arc;

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
    /// The service's instruments (submitted, blocked, open requests).
    pub metrics: crate::telemetry::Metrics,
}
