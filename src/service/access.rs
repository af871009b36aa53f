//! Revocations: recording one (which this replica enforces at once), the
//! listing, and the loop that adds to each replica's revoked set the ones
//! recorded elsewhere.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;

use super::{AppState, Listed, ServiceError};
use crate::auth::{Caller, Revocations};
use crate::domain::revocation::{NewRevocation, Revocation};
use crate::store::{Store, StoreError};
use crate::telemetry;

/// Revocations read per query when reloading.
const RELOAD_PAGE: u32 = 1000;

impl AppState {
    /// Records `new`, asked for by `caller`; this replica refuses the
    /// target from now on, the others at their next reload.
    pub async fn revoke(
        &self,
        caller: &Caller,
        new: &NewRevocation,
    ) -> Result<Revocation, ServiceError> {
        telemetry::record_attributes(|| [KeyValue::new("gdpr.revocation.kind", new.target.kind())]);
        let stored = self.store.revoke(new).await?;
        self.auth.revocations().add(&stored.target);
        tracing::info!(
            kind = stored.target.kind(),
            revoked_by = %caller.subject,
            seq = stored.seq,
            "access revoked"
        );
        Ok(stored)
    }

    /// A page of revocations, in the order of recording, after number
    /// `after`.
    pub async fn list_revocations(
        &self,
        after: Option<i64>,
        size: u32,
    ) -> Result<Listed<Revocation>, ServiceError> {
        let rows = self.store.list_revocations(after, size + 1).await?;
        Ok(Listed::of(rows, size))
    }
}

/// The revocations recorded since `revocations` last loaded, into it: only
/// rows numbered after its load position are read (none, most times).
pub async fn reload_revocations(
    store: &dyn Store,
    revocations: &Revocations,
) -> Result<(), StoreError> {
    loop {
        let page = store
            .list_revocations(Some(revocations.loaded_through()), RELOAD_PAGE)
            .await?;
        revocations.extend_loaded(&page);
        if page.len() < RELOAD_PAGE as usize {
            return Ok(());
        }
    }
}

/// Loads new revocations every `every` until `stop` resolves. The store
/// numbers revocations in the order they commit, so reading past the last
/// number loaded misses none; a failed read keeps the set as it was, is
/// logged, and is retried at the next tick.
pub async fn refresh_revocations(
    store: Arc<dyn Store>,
    revocations: Revocations,
    every: Duration,
    stop: impl Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => return,
            _ = ticks.tick() => {}
        }
        if let Err(e) = reload_revocations(store.as_ref(), &revocations).await {
            tracing::warn!(error = %e, "cannot load new revocations; keeping the set as it is");
        }
    }
}
