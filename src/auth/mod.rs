//! Caller identity: verifies the bearer JWT that every gRPC call carries,
//! turns its claims into a [`Caller`] and checks the caller's [`Role`].
//!
//! Keys come from a JWKS whose keys each pin one algorithm (EdDSA for
//! Ed25519, ES256 for P-256, RS256 for RSA), selected by the token's `kid`.
//! [`dev`] creates a local key pair for the quickstart.

pub mod dev;
mod error;
mod jwks;
pub mod reload;
pub mod revocation;
mod verify;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use jsonwebtoken::Header;
use jsonwebtoken::errors::ErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use error::{AuthError, AuthSetupError};
pub use revocation::Revocations;
// Re-exported so that callers and tests sign and name algorithms with the
// exact jsonwebtoken version this module verifies with.
pub use jsonwebtoken::{Algorithm, EncodingKey};
pub use verify::{AuthConfig, Authenticator, MAX_LEEWAY_SECS};

/// What a caller may do; carried in the token's `role` claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Controller,
    Processor,
    Admin,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Controller,
        Role::Processor,
        Role::Admin,
        Role::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Controller => "controller",
            Role::Processor => "processor",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    /// Every role except admin acts for exactly one controller or processor,
    /// so its token must name that tenant.
    pub fn requires_tenant(self) -> bool {
        !matches!(self, Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string is not one of the four role names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown role: expected controller, processor, admin or auditor")]
pub struct ParseRoleError;

impl FromStr for Role {
    type Err = ParseRoleError;

    // Exact, case-sensitive names: a token saying "Admin" is not what any
    // issuer we configure produces, so accepting it would only widen what
    // a forged or misconfigured token can claim.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or(ParseRoleError)
    }
}

/// The verified identity behind a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub role: Role,
    /// The controller's or processor's id; may be empty for admins.
    pub tenant: String,
    pub token_id: Option<String>,
    /// The token's `exp`, in unix seconds.
    pub expires_at: i64,
}

/// Claims for a token to be minted, e.g. by [`dev::mint_token`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    pub issuer: String,
    pub audience: String,
    pub subject: String,
    pub role: Role,
    pub tenant: String,
    pub ttl_secs: u64,
    pub token_id: Option<String>,
}

impl TokenClaims {
    /// The JWT claims set, issued at `issued_at` (unix seconds) and expiring
    /// `ttl_secs` later. No `nbf` is set: a minting host whose clock runs
    /// ahead of the server would otherwise produce tokens that are refused.
    pub fn to_json(&self, issued_at: i64) -> Result<Value, AuthSetupError> {
        let expires_at = i64::try_from(self.ttl_secs)
            .ok()
            .and_then(|ttl| issued_at.checked_add(ttl))
            .ok_or_else(|| AuthSetupError::InvalidTokenClaims("ttl_secs is too large".into()))?;
        let mut claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": self.subject,
            "role": self.role.as_str(),
            "tenant": self.tenant,
            "iat": issued_at,
            "exp": expires_at,
        });
        if let (Some(id), Some(object)) = (&self.token_id, claims.as_object_mut()) {
            object.insert("jti".into(), Value::String(id.clone()));
        }
        Ok(claims)
    }
}

/// Signs `claims` as a compact JWT with `encoding_key`, putting `alg` and,
/// when given, `kid` in the header. Performs no claim checks, so tests can
/// build deliberately wrong tokens with it.
pub fn sign_token(
    encoding_key: &EncodingKey,
    alg: Algorithm,
    kid: Option<&str>,
    claims: &Value,
) -> Result<String, AuthSetupError> {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, encoding_key).map_err(|err| {
        // The library names its error kinds in CamelCase; the common one,
        // a key of another family than `alg`, gets a readable message.
        let reason = match err.kind() {
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
                format!("the key cannot sign {alg:?} tokens")
            }
            _ => err.to_string(),
        };
        AuthSetupError::Sign(reason)
    })
}
