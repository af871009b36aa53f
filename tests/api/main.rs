//! The one integration-test binary: the real server on an ephemeral port,
//! called through real tonic clients, on SQLite and (with
//! `TEST_DATABASE_URL`) PostgreSQL.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a test stops at the first broken expectation"
)]

mod access;
mod audit;
mod crash;
mod db;
mod dsr;
mod helpers;
mod hostile;
mod lifecycle;
mod load_configs;
mod modules;
mod outage;
mod overload;
mod pii;
mod platform;
mod processor;
mod retention;
mod routing;
mod security;
mod store;
mod telemetry;
mod tls;
mod watchdog;
