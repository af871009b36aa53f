//! Routing administration: processors and the routes that send a
//! controller's requests to them.

use uuid::Uuid;

use super::{AppState, Listed, ServiceError};
use crate::domain::routing::{Processor, Route};
use crate::store::{Created, Cursor, Deleted, RouteFilter};

impl AppState {
    /// Records a new processor; its id must be free.
    pub async fn create_processor(&self, processor: &Processor) -> Result<(), ServiceError> {
        match self.store.create_processor(processor).await? {
            Created::Created => Ok(()),
            Created::Duplicate | Created::Missing => Err(ServiceError::AlreadyExists {
                reason: "PROCESSOR_EXISTS",
                message: "a processor with this processor_id already exists".to_owned(),
            }),
        }
    }

    /// A page of processors, by id, after `after`.
    pub async fn list_processors(
        &self,
        after: Option<&str>,
        size: u32,
    ) -> Result<Listed<Processor>, ServiceError> {
        let rows = self.store.list_processors(after, size + 1).await?;
        Ok(Listed::of(rows, size))
    }

    /// Deletes a processor that has no open task.
    pub async fn delete_processor(&self, id: &str) -> Result<(), ServiceError> {
        match self.store.delete_processor(id).await? {
            Deleted::Deleted => Ok(()),
            Deleted::NotFound => Err(ServiceError::NotFound("processor")),
            Deleted::HasOpenTasks => Err(ServiceError::FailedPrecondition {
                reason: "PROCESSOR_HAS_OPEN_TASKS",
                message: "the processor still has pending or leased tasks; it can be deleted once they are finished".to_owned(),
            }),
        }
    }

    /// Records a new route from a controller to an existing processor; one
    /// per pair.
    pub async fn create_route(&self, route: &Route) -> Result<(), ServiceError> {
        match self.store.create_route(route).await? {
            Created::Created => Ok(()),
            Created::Duplicate => Err(ServiceError::AlreadyExists {
                reason: "ROUTE_EXISTS",
                message: "this controller already has a route to this processor; delete it first to change it".to_owned(),
            }),
            Created::Missing => Err(ServiceError::FailedPrecondition {
                reason: "PROCESSOR_NOT_FOUND",
                message: "no processor with this processor_id; create it first".to_owned(),
            }),
        }
    }

    /// A page of the routes `filter` selects, after `after`.
    pub async fn list_routes(
        &self,
        filter: &RouteFilter,
        after: Option<&Cursor>,
        size: u32,
    ) -> Result<Listed<Route>, ServiceError> {
        let rows = self.store.list_routes(filter, after, size + 1).await?;
        Ok(Listed::of(rows, size))
    }

    /// Deletes a route.
    pub async fn delete_route(&self, id: Uuid) -> Result<(), ServiceError> {
        match self.store.delete_route(id).await? {
            Deleted::Deleted => Ok(()),
            Deleted::NotFound | Deleted::HasOpenTasks => Err(ServiceError::NotFound("route")),
        }
    }
}
