//! `gdpr.intake.v1.RoutingService`: processors and routes.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::{processor_to_proto, route_to_proto};
use super::error::ApiError;
use super::{page, parse};
use crate::auth::{Caller, Role};
use crate::proto::v1;
use crate::proto::v1::routing_service_server::RoutingService;
use crate::service::{AppState, Cursor};

/// The handlers of the administration service.
#[derive(Clone)]
pub struct RoutingApi {
    state: AppState,
}

impl RoutingApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    fn admin<T>(&self, req: &Request<T>) -> Result<Caller, ApiError> {
        Ok(self.state.authorize(req.metadata(), &[Role::Admin])?)
    }
}

#[tonic::async_trait]
impl RoutingService for RoutingApi {
    async fn create_processor(
        &self,
        request: Request<v1::CreateProcessorRequest>,
    ) -> Result<Response<v1::CreateProcessorResponse>, Status> {
        self.admin(&request)?;
        let processor = parse::new_processor(request.into_inner(), self.state.clock.now())?;
        self.state.create_processor(&processor).await?;
        Ok(Response::new(v1::CreateProcessorResponse {
            processor: Some(processor_to_proto(&processor)),
        }))
    }

    async fn list_processors(
        &self,
        request: Request<v1::ListProcessorsRequest>,
    ) -> Result<Response<v1::ListProcessorsResponse>, Status> {
        self.state
            .authorize(request.metadata(), &[Role::Admin, Role::Auditor])
            .map_err(ApiError::from)?;
        let (size, after) = parse::list_processors(request.get_ref())?;
        let listed = self.state.list_processors(after.as_deref(), size).await?;
        let next_page_token = match listed.next_after() {
            Some(last) => page::encode_key_token("p1", &last.id),
            None => String::new(),
        };
        Ok(Response::new(v1::ListProcessorsResponse {
            processors: listed.rows.iter().map(processor_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn delete_processor(
        &self,
        request: Request<v1::DeleteProcessorRequest>,
    ) -> Result<Response<v1::DeleteProcessorResponse>, Status> {
        self.admin(&request)?;
        let id = parse::processor_id(request.into_inner().processor_id)?;
        self.state.delete_processor(&id).await?;
        Ok(Response::new(v1::DeleteProcessorResponse {}))
    }

    async fn create_route(
        &self,
        request: Request<v1::CreateRouteRequest>,
    ) -> Result<Response<v1::CreateRouteResponse>, Status> {
        self.admin(&request)?;
        let route = parse::new_route(request.into_inner(), Uuid::now_v7(), self.state.clock.now())?;
        self.state.create_route(&route).await?;
        Ok(Response::new(v1::CreateRouteResponse {
            route: Some(route_to_proto(&route)),
        }))
    }

    async fn list_routes(
        &self,
        request: Request<v1::ListRoutesRequest>,
    ) -> Result<Response<v1::ListRoutesResponse>, Status> {
        let caller = self
            .state
            .authorize(
                request.metadata(),
                &[Role::Admin, Role::Controller, Role::Auditor],
            )
            .map_err(ApiError::from)?;
        // A controller (or its auditor) sees its own routes only; asking for
        // another controller's is answered as if it had none.
        let Some(parse::RoutesPage {
            filter,
            key,
            size,
            after,
        }) = parse::list_routes(request.into_inner(), &caller)?
        else {
            return Ok(Response::new(v1::ListRoutesResponse::default()));
        };
        let listed = self
            .state
            .list_routes(&filter, after.as_ref(), size)
            .await?;
        let next_page_token = match listed.next_after() {
            Some(last) => page::encode_cursor(
                "o1",
                &Cursor {
                    create_time: last.create_time,
                    id: last.id,
                },
                &key,
            ),
            None => String::new(),
        };
        Ok(Response::new(v1::ListRoutesResponse {
            routes: listed.rows.iter().map(route_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn delete_route(
        &self,
        request: Request<v1::DeleteRouteRequest>,
    ) -> Result<Response<v1::DeleteRouteResponse>, Status> {
        self.admin(&request)?;
        let id = parse::route_name(&request.get_ref().name)?;
        self.state.delete_route(id).await?;
        Ok(Response::new(v1::DeleteRouteResponse {}))
    }
}
