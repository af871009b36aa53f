//! What every error a client sees has in common, below every layer that
//! answers one: the `ErrorInfo.domain`. The api maps service errors to
//! gRPC, auth its refusals, and transport its answers before any handler
//! runs; all three name the same domain, and none imports another for it.

/// `ErrorInfo.domain` of every error this service reports.
pub const ERROR_DOMAIN: &str = "gdpr-intake";
