//! gRPC handlers: authorize the caller, check and convert the message
//! (proto to domain), call the service, convert back, map errors. Nothing
//! more: the use cases are [`crate::service`]'s.

pub mod access;
pub mod codec;
pub mod convert;
pub mod dsr;
pub mod error;
pub mod page;
pub mod parse;
pub mod reporting;
pub mod routing;
pub mod tasks;
