//! gdpr-intake: takes in GDPR data-subject requests over gRPC, applies the
//! age rule, tracks statutory deadlines and stores every change durably.
//!
//! See `ARCHITECTURE.md` for the map of modules and the path of a request.

pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod domain;
pub mod errors;
pub mod evidence;
mod keyfile;
pub mod proto;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod transport;
pub mod watchdog;
