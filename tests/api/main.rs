//! The one integration-test binary: the real server on an ephemeral port,
//! called through real tonic clients, on SQLite and PostgreSQL
//! (`TEST_DATABASE_URL`, or the local server if one answers). Every test
//! that needs PostgreSQL has `postgres` in its path, so that a run without
//! a server can say how many it skipped.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a test stops at the first broken expectation"
)]

/// `on_both_backends!(check, …)`: for each `async fn check(backend:
/// Backend)` of the module, a `sqlite::check` and a `postgres::check` test
/// (the PostgreSQL one returns early when there is no server).
macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(crate::helpers::Backend::Sqlite).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(crate::helpers::Backend::Postgres).await;
                }
            )*
        }
    };
}

mod access;
mod audit;
mod chaos;
mod clock;
mod connections;
mod crash;
mod dashboards;
mod db;
mod dsr;
mod duplicates;
mod evidence;
mod feed;
mod helpers;
mod hostile;
mod keys;
mod lifecycle;
mod load_configs;
mod modules;
mod outage;
mod overload;
mod pii;
mod platform;
mod processor;
mod report;
mod restore;
mod retention;
mod routing;
mod security;
mod store;
mod telemetry;
mod tls;
mod watchdog;
