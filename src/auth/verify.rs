use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::revocation::Revocations;
use tonic::metadata::MetadataMap;

use super::jwks::{self, PinnedKey};
use super::{AuthError, AuthSetupError, Caller, Role};

/// Clock skew tolerated for `exp` and `nbf`. More would keep revoked-by-expiry
/// tokens alive noticeably longer than their issuer intended.
pub const MAX_LEEWAY_SECS: u64 = 60;

// Far above any token our issuers mint; bounds the work an anonymous caller
// can make us do before the signature is checked.
const MAX_TOKEN_LEN: usize = 16 * 1024;

const AUTHORIZATION: &str = "authorization";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    pub issuer: String,
    pub audience: String,
    pub leeway_secs: u64,
}

/// Verifies bearer tokens against a key set, which [`Authenticator::reload`]
/// replaces whole. Cloning shares the keys.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    /// The key set in force, by kid; a reload swaps the whole map.
    keys: RwLock<Arc<Keys>>,
    /// What every key's validation checks besides the signature.
    config: AuthConfig,
    /// Tokens already verified, until they expire. A signature check costs
    /// tens of microseconds; a caller sends the same token on every call.
    /// A std mutex: the critical section is a map lookup, never held across
    /// an await.
    verified: Mutex<HashMap<Box<str>, Caller>>,
    /// Revoked subjects and tokens, checked after every verification,
    /// remembered or not.
    revocations: Revocations,
}

/// Most verified tokens remembered at once; bounds memory (a token is well
/// under 2 KiB) whatever callers send.
const VERIFIED_CACHE_CAPACITY: usize = 10_000;

impl Inner {
    /// The clock skew tolerated, in the unit of `exp` (at most
    /// [`MAX_LEEWAY_SECS`], checked when built).
    fn leeway(&self) -> i64 {
        i64::try_from(self.config.leeway_secs).unwrap_or(0)
    }
}

/// Verification keys by kid.
type Keys = HashMap<String, VerificationKey>;

fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

struct VerificationKey {
    alg: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

/// The header members we act on. Parsed before the library sees the token
/// so that `alg` and `kid` are checked against our pinning first; a
/// duplicated member fails the parse instead of being resolved differently
/// by two parsers.
#[derive(Deserialize)]
struct TokenHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl Authenticator {
    pub fn from_jwks_json(json: &str, config: AuthConfig) -> Result<Self, AuthSetupError> {
        Self::build(json, "inline jwks", config)
    }

    pub fn from_jwks_file(path: &Path, config: AuthConfig) -> Result<Self, AuthSetupError> {
        let json = std::fs::read_to_string(path).map_err(|source| AuthSetupError::ReadJwks {
            path: path.to_owned(),
            source,
        })?;
        Self::build(&json, &format!("jwks file {}", path.display()), config)
    }

    fn build(json: &str, origin: &str, config: AuthConfig) -> Result<Self, AuthSetupError> {
        if config.leeway_secs > MAX_LEEWAY_SECS {
            return Err(AuthSetupError::LeewayTooLarge(config.leeway_secs));
        }
        if config.issuer.is_empty() {
            return Err(AuthSetupError::EmptySetting("issuer"));
        }
        if config.audience.is_empty() {
            return Err(AuthSetupError::EmptySetting("audience"));
        }
        let keys = keys_from(json, origin, &config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                keys: RwLock::new(Arc::new(keys)),
                config,
                verified: Mutex::new(HashMap::new()),
                revocations: Revocations::default(),
            }),
        })
    }

    /// Replaces the key set with the one in `json` (`origin` names it in
    /// errors), checked as at start-up, and forgets every token verified so
    /// far, so that one signed with a key no longer in the set is refused
    /// from now on. A set that does not parse changes nothing. Returns the
    /// number of keys now in force.
    pub fn reload(&self, json: &str, origin: &str) -> Result<usize, AuthSetupError> {
        let keys = keys_from(json, origin, &self.inner.config)?;
        let count = keys.len();
        *self
            .inner
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
        self.inner
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        Ok(count)
    }

    /// The key set in force.
    fn keys(&self) -> Arc<Keys> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The revoked subjects and tokens this authenticator refuses; the
    /// application keeps them in step with the store.
    pub fn revocations(&self) -> &Revocations {
        &self.inner.revocations
    }

    /// Whether a caller let in at the start of a call that lasts (a
    /// stream) may still be served: its token not revoked since, and not
    /// expired (with the leeway verification allows).
    pub fn still_valid(&self, caller: &Caller) -> Result<(), AuthError> {
        if self.inner.revocations.refuses(caller) {
            return Err(AuthError::Revoked);
        }
        if unix_now() >= caller.expires_at.saturating_add(self.inner.leeway()) {
            return Err(AuthError::Expired);
        }
        Ok(())
    }

    /// Verifies the bearer token in the metadata, and refuses it if its
    /// subject or token id is revoked.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, AuthError> {
        let result = bearer_token(metadata)
            .and_then(|token| self.verify_token(token))
            .and_then(|caller| {
                if self.inner.revocations.refuses(&caller) {
                    Err(AuthError::Revoked)
                } else {
                    Ok(caller)
                }
            });
        if let Err(err) = &result {
            tracing::debug!(reason = %err, "rejected call credentials");
        }
        result
    }

    /// authenticate + role check in one step.
    pub fn authorize(&self, metadata: &MetadataMap, allowed: &[Role]) -> Result<Caller, AuthError> {
        let caller = self.authenticate(metadata)?;
        if allowed.contains(&caller.role) {
            Ok(caller)
        } else {
            tracing::debug!(role = %caller.role, subject = %caller.subject, "role not allowed for call");
            Err(AuthError::PermissionDenied {
                role: caller.role,
                allowed: allowed.to_vec(),
            })
        }
    }

    /// Verifies a compact JWT without the metadata wrapping. A token that
    /// verified before is answered from memory until it expires (with the
    /// same leeway the verification allows); failures are never remembered.
    pub fn verify_token(&self, token: &str) -> Result<Caller, AuthError> {
        let now = unix_now();
        if let Some(caller) = self.cached(token, now) {
            return Ok(caller);
        }
        let caller = self.verify_uncached(token)?;
        self.remember(token, &caller, now);
        Ok(caller)
    }

    pub(super) fn cached(&self, token: &str, now: i64) -> Option<Caller> {
        let verified = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        verified
            .get(token)
            .filter(|c| now < c.expires_at.saturating_add(self.inner.leeway()))
            .cloned()
    }

    fn remember(&self, token: &str, caller: &Caller, now: i64) {
        let mut verified = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if verified.len() >= VERIFIED_CACHE_CAPACITY {
            let leeway = self.inner.leeway();
            verified.retain(|_, c| now < c.expires_at.saturating_add(leeway));
            if verified.len() >= VERIFIED_CACHE_CAPACITY {
                // Full of live tokens: start over rather than grow; the cost
                // is one re-verification per token.
                verified.clear();
            }
        }
        verified.insert(token.into(), caller.clone());
    }

    /// Number of tokens remembered (for tests and metrics).
    pub fn cached_tokens(&self) -> usize {
        self.inner
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    fn verify_uncached(&self, token: &str) -> Result<Caller, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::MalformedToken);
        }
        let mut segments = token.split('.');
        let (Some(encoded_header), Some(_), Some(_), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(AuthError::MalformedToken);
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(encoded_header)
            .map_err(|_| AuthError::MalformedToken)?;
        let header: TokenHeader =
            serde_json::from_slice(&header_json).map_err(|_| AuthError::MalformedToken)?;

        // Only asymmetric algorithms are ever accepted: this is what stops
        // `none` and HMAC keyed with a public key before any key is used.
        let alg = match header.alg.as_str() {
            "EdDSA" => Algorithm::EdDSA,
            "ES256" => Algorithm::ES256,
            "RS256" => Algorithm::RS256,
            _ => return Err(AuthError::UnsupportedAlgorithm),
        };
        // RFC 7515 requires refusing a token whose critical extensions we do
        // not implement, and we implement none.
        if header.crit.is_some() {
            return Err(AuthError::UnsupportedCriticalHeader);
        }
        let kid = header.kid.ok_or(AuthError::MissingKeyId)?;
        let keys = self.keys();
        let key = keys.get(&kid).ok_or(AuthError::UnknownKeyId)?;
        if key.alg != alg {
            return Err(AuthError::AlgorithmMismatch);
        }

        let claims = jsonwebtoken::decode::<Value>(token, &key.key, &key.validation)
            .map_err(|err| map_library_error(err.kind()))?
            .claims;
        caller_from_claims(
            claims,
            &self.inner.config.issuer,
            &self.inner.config.audience,
        )
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.keys();
        let mut kids: Vec<_> = keys.keys().collect();
        kids.sort();
        f.debug_struct("Authenticator")
            .field("issuer", &self.inner.config.issuer)
            .field("audience", &self.inner.config.audience)
            .field("kids", &kids)
            .finish()
    }
}

/// The keys of the JWKS `json`, each with its validation.
fn keys_from(json: &str, origin: &str, config: &AuthConfig) -> Result<Keys, AuthSetupError> {
    Ok(jwks::parse_key_set(json, origin)?
        .into_iter()
        .map(|(kid, PinnedKey { alg, key })| {
            let validation = validation_for(alg, config);
            (
                kid,
                VerificationKey {
                    alg,
                    key,
                    validation,
                },
            )
        })
        .collect())
}

fn validation_for(alg: Algorithm, config: &AuthConfig) -> Validation {
    let mut validation = Validation::new(alg);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.set_issuer(&[&config.issuer]);
    validation.set_audience(&[&config.audience]);
    validation.leeway = config.leeway_secs;
    validation.validate_exp = true;
    // `nbf` is optional, but when a token has one it must be honoured.
    validation.validate_nbf = true;
    validation.validate_aud = true;
    validation
}

fn bearer_token(metadata: &MetadataMap) -> Result<&str, AuthError> {
    let mut values = metadata.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::MissingCredentials)?;
    // Two credentials are ambiguous: a proxy and the client could each
    // believe a different one is in force.
    if values.next().is_some() {
        return Err(AuthError::DuplicateCredentials);
    }
    let text = value.to_str().map_err(|_| AuthError::NotBearer)?;
    let (scheme, rest) = match text.split_once(' ') {
        Some(parts) => parts,
        None if text.eq_ignore_ascii_case("bearer") => return Err(AuthError::EmptyToken),
        None => return Err(AuthError::NotBearer),
    };
    // The scheme name is case-insensitive (RFC 7235).
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    let token = rest.trim_matches(' ');
    if token.is_empty() {
        return Err(AuthError::EmptyToken);
    }
    if token.contains(|c: char| c.is_ascii_whitespace()) {
        return Err(AuthError::MalformedToken);
    }
    Ok(token)
}

fn map_library_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => AuthError::MalformedToken,
        ErrorKind::InvalidSignature => AuthError::InvalidSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim_name(claim)),
        ErrorKind::InvalidClaimFormat(claim) => AuthError::InvalidClaim(claim_name(claim)),
        ErrorKind::InvalidAlgorithm => AuthError::AlgorithmMismatch,
        other => {
            // Not reachable with keys checked at start-up; log it, since it
            // points at a key or library problem rather than a bad client.
            tracing::warn!(error = ?other, "unexpected error verifying a bearer token");
            AuthError::Unverifiable
        }
    }
}

// Error variants carry `&'static str` so that nothing token-controlled can
// reach a client message; the library only reports the claims we named.
fn claim_name(claim: &str) -> &'static str {
    match claim {
        "exp" => "exp",
        "nbf" => "nbf",
        "iss" => "iss",
        "aud" => "aud",
        "sub" => "sub",
        _ => "unknown",
    }
}

fn caller_from_claims(claims: Value, issuer: &str, audience: &str) -> Result<Caller, AuthError> {
    // The library validates a JSON array positionally as if it were the
    // claims object; only an object is a claims set.
    let Value::Object(claims) = claims else {
        return Err(AuthError::MalformedToken);
    };
    // The library also accepts `iss` as an array; a JWT issuer is a single
    // string, and anything else is not what our issuer mints.
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(AuthError::WrongIssuer);
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == audience,
        Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(audience)),
        _ => false,
    };
    if !audience_ok {
        return Err(AuthError::WrongAudience);
    }

    let subject = required_string(&claims, "sub")?;
    if subject.is_empty() {
        return Err(AuthError::InvalidClaim("sub"));
    }
    let role = required_string(&claims, "role")?
        .parse::<Role>()
        .map_err(|_| AuthError::UnknownRole)?;
    let tenant = optional_string(&claims, "tenant")?.unwrap_or_default();
    if role.requires_tenant() && tenant.trim().is_empty() {
        return Err(AuthError::MissingTenant(role));
    }
    let token_id = optional_string(&claims, "jti")?;
    if token_id.as_deref() == Some("") {
        return Err(AuthError::InvalidClaim("jti"));
    }
    let expires_at = unix_seconds(claims.get("exp")).ok_or(AuthError::InvalidClaim("exp"))?;

    Ok(Caller {
        subject,
        role,
        tenant,
        token_id,
        expires_at,
    })
}

fn required_string(claims: &Map<String, Value>, name: &'static str) -> Result<String, AuthError> {
    optional_string(claims, name)?.ok_or(AuthError::MissingClaim(name))
}

fn optional_string(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(AuthError::InvalidClaim(name)),
    }
}

// The library accepts `exp` as an unsigned integer or a float; both become
// whole seconds here, saturating rather than wrapping at the extremes.
fn unix_seconds(value: Option<&Value>) -> Option<i64> {
    let number = value?.as_number()?;
    if let Some(seconds) = number.as_i64() {
        return Some(seconds);
    }
    if number.as_u64().is_some() {
        return Some(i64::MAX);
    }
    number.as_f64().map(|seconds| seconds.floor() as i64)
}
