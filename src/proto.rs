//! Types generated from `proto/` and the few hand-written impls they need.
//!
//! Generated types stay at the API edge: handlers convert them into domain
//! types (see `api::convert`) before any logic runs.

#![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]

use std::fmt;

/// `google.type` common types.
pub mod google {
    pub mod r#type {
        tonic::include_proto!("google.r#type");
    }
}

/// `gdpr.intake.v1`: the API of this service.
pub mod gdpr {
    pub mod intake {
        pub mod v1 {
            tonic::include_proto!("gdpr.intake.v1");
        }
    }

    /// `gdpr.bench.v1`: the echo service the load generator measures the
    /// gRPC ceiling with; not served by gdpr-intake.
    pub mod bench {
        pub mod v1 {
            tonic::include_proto!("gdpr.bench.v1");
        }
    }
}

pub use gdpr::intake::v1;

/// The encoded descriptor set of every file in `proto/` that gdpr-intake
/// serves (all but `gdpr.bench`), for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/gdpr_intake_descriptor.bin"));

impl fmt::Debug for v1::Subject {
    // Only the controller's own identifier is shown: email, date of birth and
    // subdivision are personal data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subject")
            .field("external_id", &self.external_id)
            .field("email", &"<redacted>")
            .field("date_of_birth", &"<redacted>")
            .field("country", &self.country)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for v1::Guardian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guardian")
            .field("relationship", &self.relationship)
            .finish_non_exhaustive()
    }
}
