//! `gdpr.intake.v1.AccessService`: revoking callers and tokens. The loop
//! that keeps each replica's revoked set in step with the store is the
//! service's ([`crate::service::access`]).

use tonic::{Request, Response, Status};

use super::convert::revocation_to_proto;
use super::error::ApiError;
use super::{page, parse};
use crate::auth::{Caller, Role};
use crate::proto::v1;
use crate::proto::v1::access_service_server::AccessService;
use crate::service::AppState;

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
        let stored = self.state.revoke(&caller, &new).await?;
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
        let listed = self.state.list_revocations(after, size).await?;
        let next_page_token = match listed.next_after() {
            Some(last) => page::encode_key_token("r1", &last.seq.to_string()),
            None => String::new(),
        };
        Ok(Response::new(v1::ListRevocationsResponse {
            revocations: listed.rows.iter().map(revocation_to_proto).collect(),
            next_page_token,
        }))
    }
}
