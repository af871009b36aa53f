//! `gdpr.intake.v1.AccessService`: revoking callers and tokens, and the
//! loop that keeps each replica's revoked set in step with the store.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use tonic::{Request, Response, Status};

use super::AppState;
use super::convert::revocation_to_proto;
use super::error::ApiError;
use super::{page, parse};
use crate::auth::{Caller, Revocations, Role};
use crate::proto::v1;
use crate::proto::v1::access_service_server::AccessService;
use crate::store::{Store, StoreError};
use crate::telemetry;

/// Revocations read per query when reloading.
const RELOAD_PAGE: u32 = 1000;

/// The handlers of the access service.
#[derive(Clone)]
pub struct AccessApi {
    state: AppState,
}

impl AccessApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    fn admin<T>(&self, req: &Request<T>) -> Result<Caller, ApiError> {
        Ok(self.state.authorize(req.metadata(), &[Role::Admin])?)
    }
}

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn revoke_access(
        &self,
        request: Request<v1::RevokeAccessRequest>,
    ) -> Result<Response<v1::RevokeAccessResponse>, Status> {
        let caller = self.admin(&request)?;
        let new = parse::new_revocation(request.into_inner(), &caller, self.state.clock.now())?;
        telemetry::record_attributes(|| [KeyValue::new("gdpr.revocation.kind", new.target.kind())]);
        let stored = self
            .state
            .store
            .revoke(&new)
            .await
            .map_err(ApiError::from)?;
        // This replica refuses the target from now on; the others at their
        // next reload.
        self.state.auth.revocations().add(&stored.target);
        tracing::info!(
            kind = stored.target.kind(),
            revoked_by = %caller.subject,
            seq = stored.seq,
            "access revoked"
        );
        Ok(Response::new(v1::RevokeAccessResponse {
            revocation: Some(revocation_to_proto(&stored)),
        }))
    }

    async fn list_revocations(
        &self,
        request: Request<v1::ListRevocationsRequest>,
    ) -> Result<Response<v1::ListRevocationsResponse>, Status> {
        self.admin(&request)?;
        let (size, after) = parse::list_revocations(request.get_ref())?;
        let mut rows = self
            .state
            .store
            .list_revocations(after, size + 1)
            .await
            .map_err(ApiError::from)?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => page::encode_key_token("r1", &last.seq.to_string()),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListRevocationsResponse {
            revocations: rows.iter().map(revocation_to_proto).collect(),
            next_page_token,
        }))
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
