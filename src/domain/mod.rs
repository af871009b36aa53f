//! Domain logic: plain types and functions, no I/O. Everything here is
//! unit-tested in place; time is always an argument.

pub mod age;
pub mod backlog;
pub mod deadline;
pub mod duplicate;
pub mod holidays;
pub mod input;
pub mod jurisdiction;
pub mod pause;
pub mod pii;
pub mod request;
pub mod retention;
pub mod revocation;
pub mod routing;
pub mod sla;
