//! `gdpr.intake.v1.RoutingService`: processors and routes.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::AppState;
use super::convert::{self, processor_to_proto, route_to_proto};
use super::error::ApiError;
use super::page;
use crate::auth::{Caller, Role};
use crate::domain::input::Violations;
use crate::domain::routing::{
    self, DEFAULT_TASK_SLA_WORKING_HOURS, MAX_TASK_SLA_WORKING_HOURS, Processor, ROUTE_PREFIX,
    Route,
};
use crate::proto::v1;
use crate::proto::v1::routing_service_server::RoutingService;
use crate::store::{Created, Cursor, Deleted, RouteFilter};

/// Longest controller id accepted in a route.
const MAX_TENANT_LEN: usize = 128;

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
        Ok(self.state.auth.authorize(req.metadata(), &[Role::Admin])?)
    }
}

fn valid_tenant(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_TENANT_LEN
        && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

const PROCESSOR_ID_RULE: &str = "must be 1 to 64 characters of a-z, 0-9, - and _";

#[tonic::async_trait]
impl RoutingService for RoutingApi {
    async fn create_processor(
        &self,
        request: Request<v1::CreateProcessorRequest>,
    ) -> Result<Response<v1::CreateProcessorResponse>, Status> {
        self.admin(&request)?;
        let m = request.into_inner();
        let mut bad = Violations::default();
        if !routing::valid_processor_id(&m.processor_id) {
            bad.add("processor_id", PROCESSOR_ID_RULE);
        }
        if m.display_name.trim().is_empty() || m.display_name.chars().count() > 200 {
            bad.add("display_name", "is required, at most 200 characters");
        }
        if m.contact.chars().count() > 254 || m.contact.chars().any(char::is_control) {
            bad.add(
                "contact",
                "must be at most 254 characters without control characters",
            );
        }
        if !bad.is_empty() {
            return Err(ApiError::InvalidArgument(bad.into_vec()).into());
        }
        let processor = Processor {
            id: m.processor_id,
            display_name: m.display_name,
            contact: (!m.contact.is_empty()).then_some(m.contact),
            create_time: self.state.clock.now(),
        };
        match self
            .state
            .store
            .create_processor(&processor)
            .await
            .map_err(ApiError::from)?
        {
            Created::Created => Ok(Response::new(v1::CreateProcessorResponse {
                processor: Some(processor_to_proto(&processor)),
            })),
            Created::Duplicate | Created::Missing => Err(ApiError::AlreadyExists {
                reason: "PROCESSOR_EXISTS",
                message: "a processor with this processor_id already exists".to_owned(),
            }
            .into()),
        }
    }

    async fn list_processors(
        &self,
        request: Request<v1::ListProcessorsRequest>,
    ) -> Result<Response<v1::ListProcessorsResponse>, Status> {
        self.state
            .auth
            .authorize(request.metadata(), &[Role::Admin, Role::Auditor])
            .map_err(ApiError::from)?;
        let m = request.into_inner();
        let size = page::page_size(m.page_size, "page_size")?;
        let after = page::decode_key_token("p1", &m.page_token)?;
        let mut rows = self
            .state
            .store
            .list_processors(after.as_deref(), size + 1)
            .await
            .map_err(ApiError::from)?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => page::encode_key_token("p1", &last.id),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListProcessorsResponse {
            processors: rows.iter().map(processor_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn delete_processor(
        &self,
        request: Request<v1::DeleteProcessorRequest>,
    ) -> Result<Response<v1::DeleteProcessorResponse>, Status> {
        self.admin(&request)?;
        let id = request.into_inner().processor_id;
        if !routing::valid_processor_id(&id) {
            return Err(ApiError::invalid("processor_id", PROCESSOR_ID_RULE).into());
        }
        match self
            .state
            .store
            .delete_processor(&id)
            .await
            .map_err(ApiError::from)?
        {
            Deleted::Deleted => Ok(Response::new(v1::DeleteProcessorResponse {})),
            Deleted::NotFound => Err(ApiError::NotFound("processor").into()),
            Deleted::HasOpenTasks => Err(ApiError::FailedPrecondition {
                reason: "PROCESSOR_HAS_OPEN_TASKS",
                message: "the processor still has pending or leased tasks; it can be deleted once they are finished".to_owned(),
            }
            .into()),
        }
    }

    async fn create_route(
        &self,
        request: Request<v1::CreateRouteRequest>,
    ) -> Result<Response<v1::CreateRouteResponse>, Status> {
        self.admin(&request)?;
        let m = request.into_inner();
        let mut bad = Violations::default();
        if !valid_tenant(&m.controller_id) {
            bad.add(
                "controller_id",
                "is required: the controller's tenant id, at most 128 characters without spaces",
            );
        }
        if !routing::valid_processor_id(&m.processor_id) {
            bad.add("processor_id", PROCESSOR_ID_RULE);
        }
        let mut request_types = Vec::new();
        for t in &m.request_types {
            match convert::request_type_from_proto(*t) {
                Some(t) if !request_types.contains(&t) => request_types.push(t),
                Some(_) => {}
                None => {
                    bad.add(
                        "request_types",
                        "must hold REQUEST_TYPE_ values other than UNSPECIFIED (empty means all)",
                    );
                    break;
                }
            }
        }
        let sla = match m.task_sla_working_hours {
            0 => DEFAULT_TASK_SLA_WORKING_HOURS,
            h => match u32::try_from(h) {
                Ok(h) if h <= MAX_TASK_SLA_WORKING_HOURS => h,
                _ => {
                    bad.add(
                        "task_sla_working_hours",
                        format!("must be between 1 and {MAX_TASK_SLA_WORKING_HOURS} (0 means {DEFAULT_TASK_SLA_WORKING_HOURS})"),
                    );
                    0
                }
            },
        };
        if !bad.is_empty() {
            return Err(ApiError::InvalidArgument(bad.into_vec()).into());
        }
        let route = Route {
            id: Uuid::now_v7(),
            controller_id: m.controller_id,
            processor_id: m.processor_id,
            request_types,
            task_sla_working_hours: sla,
            create_time: self.state.clock.now(),
        };
        match self
            .state
            .store
            .create_route(&route)
            .await
            .map_err(ApiError::from)?
        {
            Created::Created => Ok(Response::new(v1::CreateRouteResponse {
                route: Some(route_to_proto(&route)),
            })),
            Created::Duplicate => Err(ApiError::AlreadyExists {
                reason: "ROUTE_EXISTS",
                message: "this controller already has a route to this processor; delete it first to change it".to_owned(),
            }
            .into()),
            Created::Missing => Err(ApiError::FailedPrecondition {
                reason: "PROCESSOR_NOT_FOUND",
                message: "no processor with this processor_id; create it first".to_owned(),
            }
            .into()),
        }
    }

    async fn list_routes(
        &self,
        request: Request<v1::ListRoutesRequest>,
    ) -> Result<Response<v1::ListRoutesResponse>, Status> {
        let caller = self
            .state
            .auth
            .authorize(
                request.metadata(),
                &[Role::Admin, Role::Controller, Role::Auditor],
            )
            .map_err(ApiError::from)?;
        let m = request.into_inner();
        let size = page::page_size(m.page_size, "page_size")?;
        let mut filter = RouteFilter {
            controller_id: (!m.controller_id.is_empty()).then_some(m.controller_id),
            processor_id: (!m.processor_id.is_empty()).then_some(m.processor_id),
        };
        if caller.role != Role::Admin {
            // A controller (or its auditor) sees its own routes only; asking
            // for another controller's is answered as if it had none.
            if filter
                .controller_id
                .as_ref()
                .is_some_and(|c| *c != caller.tenant)
            {
                return Ok(Response::new(v1::ListRoutesResponse::default()));
            }
            filter.controller_id = Some(caller.tenant.clone());
        }
        let key = format!(
            "{}|{}",
            filter.controller_id.as_deref().unwrap_or(""),
            filter.processor_id.as_deref().unwrap_or("")
        );
        let after = page::decode_cursor("o1", &m.page_token, &key)?;
        let mut rows = self
            .state
            .store
            .list_routes(&filter, after.as_ref(), size + 1)
            .await
            .map_err(ApiError::from)?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next_page_token = match rows.last() {
            Some(last) if more => page::encode_cursor(
                "o1",
                &Cursor {
                    create_time: last.create_time,
                    id: last.id,
                },
                &key,
            ),
            _ => String::new(),
        };
        Ok(Response::new(v1::ListRoutesResponse {
            routes: rows.iter().map(route_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn delete_route(
        &self,
        request: Request<v1::DeleteRouteRequest>,
    ) -> Result<Response<v1::DeleteRouteResponse>, Status> {
        self.admin(&request)?;
        let name = request.into_inner().name;
        let id = name
            .strip_prefix(ROUTE_PREFIX)
            .and_then(|id| Uuid::try_parse(id).ok())
            .ok_or_else(|| {
                ApiError::invalid(
                    "name",
                    "must be a route name such as routes/0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10",
                )
            })?;
        match self
            .state
            .store
            .delete_route(id)
            .await
            .map_err(ApiError::from)?
        {
            Deleted::Deleted => Ok(Response::new(v1::DeleteRouteResponse {})),
            Deleted::NotFound | Deleted::HasOpenTasks => Err(ApiError::NotFound("route").into()),
        }
    }
}
