// Panicking on a broken fixture is the clearest failure a test can give.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::domain::revocation::RevocationTarget;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{EncodePrivateKey, KeypairBytes};
use jsonwebtoken::Header;
use jsonwebtoken::jwk::Jwk;
use serde_json::{Value, json};
use tonic::metadata::{MetadataMap, MetadataValue};

use super::dev::{self, DEV_ISSUER};
use super::*;

const ISSUER: &str = "https://idp.example.test";
const AUDIENCE: &str = "gdpr-intake";
// RSA key generation takes seconds in debug builds, so a fixed test-only
// key is checked in instead.
const RSA_TEST_KEY: &str = include_str!("../../tests/fixtures/auth/rsa-2048-test-key.pem");

struct Fixture {
    ed: EncodingKey,
    ed_public: [u8; 32],
    es: EncodingKey,
    rs: EncodingKey,
    /// ed-1 (EdDSA), es-1 (ES256) and rs-1 (RS256, without an `alg` member
    /// so that its algorithm has to be derived from kty).
    jwks: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (ed, ed_signing) = ed25519_key();
        let es = es256_key();
        let rs = EncodingKey::from_rsa_pem(RSA_TEST_KEY.as_bytes()).unwrap();
        let mut rs_jwk = public_jwk(&rs, Algorithm::RS256, "rs-1");
        rs_jwk.as_object_mut().unwrap().remove("alg");
        let jwks = json!({
            "keys": [
                public_jwk(&ed, Algorithm::EdDSA, "ed-1"),
                public_jwk(&es, Algorithm::ES256, "es-1"),
                rs_jwk,
            ]
        });
        Fixture {
            ed,
            ed_public: ed_signing.verifying_key().to_bytes(),
            es,
            rs,
            jwks: jwks.to_string(),
        }
    })
}

fn ed25519_key() -> (EncodingKey, SigningKey) {
    let signing_key = SigningKey::generate(&mut rand_core::OsRng);
    let der = KeypairBytes {
        secret_key: signing_key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_der()
    .unwrap();
    (EncodingKey::from_ed_der(der.as_bytes()), signing_key)
}

fn es256_key() -> EncodingKey {
    let signing_key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    EncodingKey::from_ec_der(signing_key.to_pkcs8_der().unwrap().as_bytes())
}

fn public_jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).unwrap()
}

fn config(leeway_secs: u64) -> AuthConfig {
    AuthConfig {
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        leeway_secs,
    }
}

fn authenticator() -> Authenticator {
    Authenticator::from_jwks_json(&fixture().jwks, config(30)).unwrap()
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn claims(role: &str, tenant: &str) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "role": role,
        "tenant": tenant,
        "exp": now() + 300,
        "jti": "token-7",
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims
        .as_object_mut()
        .unwrap()
        .insert(name.to_owned(), value);
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn ed_token(claims: &Value) -> String {
    sign_token(&fixture().ed, Algorithm::EdDSA, Some("ed-1"), claims).unwrap()
}

fn metadata(authorization: &str) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    metadata.insert("authorization", authorization.parse().unwrap());
    metadata
}

fn verify(token: &str) -> Result<Caller, AuthError> {
    authenticator().authenticate(&metadata(&format!("Bearer {token}")))
}

fn verify_with_leeway(token: &str, leeway_secs: u64) -> Result<Caller, AuthError> {
    Authenticator::from_jwks_json(&fixture().jwks, config(leeway_secs))
        .unwrap()
        .authenticate(&metadata(&format!("Bearer {token}")))
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn assert_rejected(result: Result<Caller, AuthError>, expected: AuthError) {
    let err = result.expect_err("token should have been rejected");
    assert_eq!(err, expected);
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("gdpr-auth-test-{}", uuid::Uuid::new_v4()));
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn valid_eddsa_token_yields_the_caller() {
    let payload = claims("controller", "acme");
    let caller = verify(&ed_token(&payload)).unwrap();
    assert_eq!(
        caller,
        Caller {
            subject: "user-42".to_owned(),
            role: Role::Controller,
            tenant: "acme".to_owned(),
            token_id: Some("token-7".to_owned()),
            expires_at: payload["exp"].as_i64().unwrap(),
        }
    );
}

#[test]
fn es256_and_rs256_tokens_are_verified_with_the_key_their_kid_selects() {
    let fx = fixture();
    let payload = claims("processor", "proc-9");
    for (key, alg, kid) in [
        (&fx.es, Algorithm::ES256, "es-1"),
        (&fx.rs, Algorithm::RS256, "rs-1"),
        (&fx.ed, Algorithm::EdDSA, "ed-1"),
    ] {
        let token = sign_token(key, alg, Some(kid), &payload).unwrap();
        let caller = verify(&token).unwrap_or_else(|err| panic!("{kid}: {err}"));
        assert_eq!(caller.role, Role::Processor);
        assert_eq!(caller.tenant, "proc-9");
    }
}

#[test]
fn missing_authorization_metadata_is_rejected() {
    assert_rejected(
        authenticator().authenticate(&MetadataMap::new()),
        AuthError::MissingCredentials,
    );
}

#[test]
fn authorization_without_the_bearer_scheme_is_rejected() {
    let auth = authenticator();
    let token = ed_token(&claims("admin", ""));
    assert_rejected(
        auth.authenticate(&metadata("Basic dXNlcjpwYXNz")),
        AuthError::NotBearer,
    );
    assert_rejected(auth.authenticate(&metadata(&token)), AuthError::NotBearer);
    assert_rejected(
        auth.authenticate(&metadata("Bearer")),
        AuthError::EmptyToken,
    );
    assert_rejected(
        auth.authenticate(&metadata("Bearer   ")),
        AuthError::EmptyToken,
    );
    // The scheme is case-insensitive.
    assert!(
        auth.authenticate(&metadata(&format!("bearer {token}")))
            .is_ok()
    );
}

#[test]
fn repeated_authorization_metadata_is_rejected() {
    let token = ed_token(&claims("admin", ""));
    let mut metadata = metadata(&format!("Bearer {token}"));
    metadata.append(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    assert_rejected(
        authenticator().authenticate(&metadata),
        AuthError::DuplicateCredentials,
    );
}

#[test]
fn malformed_tokens_are_rejected() {
    let header = b64_json(&json!({"alg": "EdDSA", "kid": "ed-1"}));
    for token in [
        "not-a-jwt".to_owned(),
        "a.b".to_owned(),
        "a.b.c.d".to_owned(),
        "!!!.e30.sig".to_owned(),
        format!("{}.e30.sig", URL_SAFE_NO_PAD.encode("not json")),
        // The payload is only parsed once the signature verifies, so a bad
        // signature encoding is what makes this one malformed.
        format!("{header}.e30.!!!"),
        "x".repeat(20_000),
    ] {
        assert_rejected(verify(&token), AuthError::MalformedToken);
    }
}

#[test]
fn alg_none_is_rejected() {
    let payload = b64_json(&claims("admin", ""));
    for header in [
        json!({"alg": "none"}),
        json!({"alg": "none", "kid": "ed-1"}),
    ] {
        let token = format!("{}.{payload}.", b64_json(&header));
        assert_rejected(verify(&token), AuthError::UnsupportedAlgorithm);
    }
}

#[test]
fn hs256_keyed_with_the_public_key_is_rejected() {
    let fx = fixture();
    let payload = claims("admin", "");
    let x = URL_SAFE_NO_PAD.encode(fx.ed_public);
    for secret in [fx.ed_public.as_slice(), x.as_bytes(), fx.jwks.as_bytes()] {
        let token = sign_token(
            &EncodingKey::from_secret(secret),
            Algorithm::HS256,
            Some("ed-1"),
            &payload,
        )
        .unwrap();
        assert_rejected(verify(&token), AuthError::UnsupportedAlgorithm);
    }
}

#[test]
fn algorithm_other_than_the_keys_pinned_one_is_rejected() {
    let fx = fixture();
    let payload = claims("admin", "");
    for (key, alg, kid) in [
        (&fx.es, Algorithm::ES256, "ed-1"),
        (&fx.rs, Algorithm::RS256, "es-1"),
        (&fx.ed, Algorithm::EdDSA, "rs-1"),
    ] {
        let token = sign_token(key, alg, Some(kid), &payload).unwrap();
        assert_rejected(verify(&token), AuthError::AlgorithmMismatch);
    }
}

#[test]
fn unknown_or_missing_kid_is_rejected() {
    let payload = claims("admin", "");
    let unknown = sign_token(&fixture().ed, Algorithm::EdDSA, Some("ed-2"), &payload).unwrap();
    assert_rejected(verify(&unknown), AuthError::UnknownKeyId);

    // Even with a single key in the set the token must name it.
    let single = json!({"keys": [public_jwk(&fixture().ed, Algorithm::EdDSA, "ed-1")]});
    let auth = Authenticator::from_jwks_json(&single.to_string(), config(0)).unwrap();
    let no_kid = sign_token(&fixture().ed, Algorithm::EdDSA, None, &payload).unwrap();
    assert_rejected(
        auth.authenticate(&metadata(&format!("Bearer {no_kid}"))),
        AuthError::MissingKeyId,
    );
}

#[test]
fn token_signed_by_another_key_under_a_known_kid_is_rejected() {
    let (attacker, _) = ed25519_key();
    let token = sign_token(
        &attacker,
        Algorithm::EdDSA,
        Some("ed-1"),
        &claims("admin", ""),
    )
    .unwrap();
    assert_rejected(verify(&token), AuthError::InvalidSignature);

    let other_es = es256_key();
    let token = sign_token(
        &other_es,
        Algorithm::ES256,
        Some("es-1"),
        &claims("admin", ""),
    )
    .unwrap();
    assert_rejected(verify(&token), AuthError::InvalidSignature);
}

#[test]
fn wrong_issuer_is_rejected() {
    let base = claims("admin", "");
    for iss in [json!("https://evil.example.test"), json!([ISSUER, "other"])] {
        let token = ed_token(&with(base.clone(), "iss", iss));
        assert_rejected(verify(&token), AuthError::WrongIssuer);
    }
}

#[test]
fn wrong_audience_is_rejected_and_an_audience_list_including_ours_is_accepted() {
    let base = claims("admin", "");
    for aud in [json!("other-service"), json!(["other-service"])] {
        let token = ed_token(&with(base.clone(), "aud", aud));
        assert_rejected(verify(&token), AuthError::WrongAudience);
    }
    let token = ed_token(&with(base, "aud", json!(["other-service", AUDIENCE])));
    assert!(verify(&token).is_ok());
}

#[test]
fn expiry_is_enforced_beyond_the_leeway_only() {
    let base = claims("admin", "");
    let just_expired = ed_token(&with(base.clone(), "exp", json!(now() - 10)));
    assert!(verify_with_leeway(&just_expired, 30).is_ok());
    assert_rejected(verify_with_leeway(&just_expired, 0), AuthError::Expired);

    let long_expired = ed_token(&with(base, "exp", json!(now() - 120)));
    assert_rejected(verify_with_leeway(&long_expired, 60), AuthError::Expired);
}

#[test]
fn nbf_in_the_future_is_rejected() {
    let base = claims("admin", "");
    let future = ed_token(&with(base.clone(), "nbf", json!(now() + 600)));
    assert_rejected(verify_with_leeway(&future, 60), AuthError::NotYetValid);

    let skewed = ed_token(&with(base.clone(), "nbf", json!(now() + 10)));
    assert!(verify_with_leeway(&skewed, 30).is_ok());
    assert_rejected(verify_with_leeway(&skewed, 0), AuthError::NotYetValid);

    let past = ed_token(&with(base, "nbf", json!(now() - 10)));
    assert!(verify_with_leeway(&past, 0).is_ok());
}

#[test]
fn tampered_payload_is_rejected() {
    let token = ed_token(&claims("auditor", "acme"));
    let segments: Vec<&str> = token.split('.').collect();
    let forged = b64_json(&claims("admin", ""));
    let tampered = format!("{}.{forged}.{}", segments[0], segments[2]);
    assert_rejected(verify(&tampered), AuthError::InvalidSignature);

    let mut signature = URL_SAFE_NO_PAD.decode(segments[2]).unwrap();
    signature[0] ^= 1;
    let bad_signature = format!(
        "{}.{}.{}",
        segments[0],
        segments[1],
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert_rejected(verify(&bad_signature), AuthError::InvalidSignature);
}

#[test]
fn missing_required_claims_are_rejected() {
    let base = claims("admin", "");
    for claim in ["exp", "iss", "aud", "sub", "role"] {
        let token = ed_token(&without(base.clone(), claim));
        assert_rejected(verify(&token), AuthError::MissingClaim(claim));
    }
}

#[test]
fn unknown_role_is_rejected() {
    let base = claims("admin", "acme");
    for role in ["superuser", "Admin", ""] {
        let token = ed_token(&with(base.clone(), "role", json!(role)));
        assert_rejected(verify(&token), AuthError::UnknownRole);
    }
    let token = ed_token(&with(base, "role", json!(["admin"])));
    assert_rejected(verify(&token), AuthError::InvalidClaim("role"));
}

#[test]
fn tenant_is_required_for_every_role_but_admin() {
    for role in [Role::Controller, Role::Processor, Role::Auditor] {
        let base = claims(role.as_str(), "acme");
        for payload in [
            without(base.clone(), "tenant"),
            with(base.clone(), "tenant", json!("")),
            with(base.clone(), "tenant", json!("  ")),
        ] {
            assert_rejected(verify(&ed_token(&payload)), AuthError::MissingTenant(role));
        }
    }
    let admin = verify(&ed_token(&without(claims("admin", ""), "tenant"))).unwrap();
    assert_eq!(admin.role, Role::Admin);
    assert_eq!(admin.tenant, "");
}

#[test]
fn critical_header_extensions_are_rejected() {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("ed-1".to_owned());
    header.crit = Some(vec!["exp".to_owned()]);
    let token = jsonwebtoken::encode(&header, &claims("admin", ""), &fixture().ed).unwrap();
    assert_rejected(verify(&token), AuthError::UnsupportedCriticalHeader);
}

#[test]
fn wrong_role_is_permission_denied() {
    let auth = authenticator();
    let token = ed_token(&claims("auditor", "acme"));
    let metadata = metadata(&format!("Bearer {token}"));

    let err = auth
        .authorize(&metadata, &[Role::Controller, Role::Admin])
        .unwrap_err();
    assert_eq!(
        err,
        AuthError::PermissionDenied {
            role: Role::Auditor,
            allowed: vec![Role::Controller, Role::Admin],
        }
    );
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(status.message().contains("auditor"));

    let caller = auth.authorize(&metadata, &[Role::Auditor]).unwrap();
    assert_eq!(caller.role, Role::Auditor);
}

#[test]
fn unauthenticated_status_carries_its_reason_and_nothing_of_the_token() {
    use tonic_types::StatusExt as _;
    let token = ed_token(&with(claims("admin", ""), "exp", json!(now() - 3600)));
    let err = verify(&token).unwrap_err();
    let message = err.to_string();
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), message);
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("ErrorInfo");
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("TOKEN_EXPIRED", "gdpr-intake")
    );
    assert!(info.metadata.is_empty());
    assert!(status.metadata().is_empty());
    let details = String::from_utf8_lossy(status.details()).into_owned();
    for segment in token.split('.') {
        assert!(!status.message().contains(segment));
        assert!(!details.contains(segment));
    }
}

#[test]
fn leeway_above_sixty_seconds_is_refused_at_construction() {
    let jwks = &fixture().jwks;
    let err = Authenticator::from_jwks_json(jwks, config(61)).unwrap_err();
    assert!(matches!(err, AuthSetupError::LeewayTooLarge(61)), "{err}");
    assert!(err.to_string().contains("leeway_secs"));
    assert!(Authenticator::from_jwks_json(jwks, config(MAX_LEEWAY_SECS)).is_ok());
}

#[test]
fn empty_issuer_or_audience_is_refused() {
    let jwks = &fixture().jwks;
    let mut cfg = config(0);
    cfg.issuer.clear();
    assert!(Authenticator::from_jwks_json(jwks, cfg).is_err());
    let mut cfg = config(0);
    cfg.audience.clear();
    assert!(Authenticator::from_jwks_json(jwks, cfg).is_err());
}

#[test]
fn jwks_key_without_kid_is_a_setup_error() {
    let mut jwk = public_jwk(&fixture().ed, Algorithm::EdDSA, "ed-1");
    jwk.as_object_mut().unwrap().remove("kid");
    let jwks = json!({"keys": [jwk]}).to_string();
    let err = Authenticator::from_jwks_json(&jwks, config(0)).unwrap_err();
    assert!(
        matches!(err, AuthSetupError::InvalidKey { index: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no kid"), "{err}");

    // From a file, the message names the file.
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.path()).unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, &jwks).unwrap();
    let err = Authenticator::from_jwks_file(&path, config(0)).unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn unusable_jwks_is_a_setup_error() {
    let fx = fixture();
    let ed = public_jwk(&fx.ed, Algorithm::EdDSA, "ed-1");
    let one = |name: &str, value: Value| json!({"keys": [with(ed.clone(), name, value)]});
    let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    // Each case names the fragment its error must contain, so that a case
    // refused for some unrelated reason does not pass unnoticed.
    let cases = [
        ("{".to_owned(), "EOF while parsing"),
        (json!({"keys": []}).to_string(), "it has no keys"),
        (
            one("alg", json!("RS256")).to_string(),
            "alg RS256 does not fit kty OKP",
        ),
        (
            one("alg", json!("HS256")).to_string(),
            "alg HS256 does not fit",
        ),
        (one("use", json!("enc")).to_string(), "use is not sig"),
        (one("d", json!(x)).to_string(), "private key material"),
        (
            json!({"keys": [ed.clone(), ed.clone()]}).to_string(),
            "used by an earlier key",
        ),
        (
            one("kid", json!("")).to_string(),
            "kid must be a non-empty string",
        ),
        (
            one("x", json!(URL_SAFE_NO_PAD.encode(identity_point))).to_string(),
            "weak Ed25519",
        ),
        (
            one("x", json!(URL_SAFE_NO_PAD.encode([9u8; 16]))).to_string(),
            "x must be 32 bytes",
        ),
        (
            json!({"keys": [{"kty": "oct", "kid": "h", "k": x, "alg": "HS256"}]}).to_string(),
            "symmetric (oct) keys",
        ),
        (
            json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "e", "x": x, "y": x}]})
                .to_string(),
            "not a usable ES256 public key",
        ),
        (
            json!({"keys": [{"kty": "EC", "crv": "P-384", "kid": "e", "x": x, "y": x}]})
                .to_string(),
            "EC keys must use crv P-256",
        ),
        (
            json!({"keys": [{
                "kty": "RSA", "kid": "r", "e": "AQAB",
                "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]),
            }]})
            .to_string(),
            "has 1024 bits",
        ),
    ];
    for (jwks, expected) in cases {
        let message = Authenticator::from_jwks_json(&jwks, config(0))
            .map(|_| format!("accepted {jwks}"))
            .unwrap_or_else(|err| err.to_string());
        assert!(
            message.contains(expected),
            "{expected:?} not in {message:?}"
        );
    }
}

#[test]
fn role_names_round_trip() {
    for role in Role::ALL {
        assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        assert_eq!(role.to_string(), role.as_str());
    }
    assert_eq!(
        ["controller", "processor", "admin", "auditor"],
        Role::ALL.map(Role::as_str)
    );
    assert!("ADMIN".parse::<Role>().is_err());
}

#[test]
fn authenticator_is_shareable_across_tasks() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<Authenticator>();
}

#[test]
fn sign_token_refuses_a_key_of_another_family() {
    let err = sign_token(
        &fixture().ed,
        Algorithm::RS256,
        Some("ed-1"),
        &claims("admin", ""),
    )
    .unwrap_err();
    assert!(matches!(err, AuthSetupError::Sign(_)), "{err}");
}

#[test]
fn dev_keys_are_created_once_and_reused() {
    let dir = TempDir::new();
    let data_dir = dir.path().join("nested").join("data");
    let jwks_path = dev::ensure_dev_keys(&data_dir).unwrap();
    assert_eq!(jwks_path, data_dir.join(dev::DEV_JWKS_FILE));
    let key_path = data_dir.join(dev::DEV_KEY_FILE);
    let key_before = std::fs::read(&key_path).unwrap();
    let jwks_before = std::fs::read(&jwks_path).unwrap();
    assert!(String::from_utf8_lossy(&key_before).starts_with("-----BEGIN PRIVATE KEY-----"));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let jwks: Value = serde_json::from_slice(&jwks_before).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kid"], "dev-1");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");

    assert_eq!(dev::ensure_dev_keys(&data_dir).unwrap(), jwks_path);
    assert_eq!(std::fs::read(&key_path).unwrap(), key_before);
    assert_eq!(std::fs::read(&jwks_path).unwrap(), jwks_before);
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(&data_dir).unwrap().count(), 2);
}

#[test]
fn minted_dev_token_round_trips_through_the_dev_jwks() {
    let dir = TempDir::new();
    let jwks_path = dev::ensure_dev_keys(dir.path()).unwrap();
    let claims = TokenClaims {
        issuer: DEV_ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        subject: "dev-user".to_owned(),
        role: Role::Processor,
        tenant: "proc-1".to_owned(),
        ttl_secs: 600,
        token_id: Some("jti-1".to_owned()),
    };
    let token = dev::mint_token(dir.path(), &claims).unwrap();
    let auth = Authenticator::from_jwks_file(
        &jwks_path,
        AuthConfig {
            issuer: DEV_ISSUER.to_owned(),
            audience: AUDIENCE.to_owned(),
            leeway_secs: 0,
        },
    )
    .unwrap();
    let caller = auth
        .authenticate(&metadata(&format!("Bearer {token}")))
        .unwrap();
    assert_eq!(caller.subject, "dev-user");
    assert_eq!(caller.role, Role::Processor);
    assert_eq!(caller.tenant, "proc-1");
    assert_eq!(caller.token_id.as_deref(), Some("jti-1"));
    assert!((caller.expires_at - now() - 600).abs() <= 5);

    // The dev key is only trusted under the dev JWKS, not under another set.
    assert_rejected(verify(&token), AuthError::UnknownKeyId);
    // And a token from another key under kid dev-1 is refused.
    let (attacker, _) = ed25519_key();
    let forged = sign_token(
        &attacker,
        Algorithm::EdDSA,
        Some(dev::DEV_KEY_ID),
        &claims.to_json(now()).unwrap(),
    )
    .unwrap();
    assert_rejected(
        auth.authenticate(&metadata(&format!("Bearer {forged}"))),
        AuthError::InvalidSignature,
    );
}

#[test]
fn minting_without_a_dev_key_asks_to_start_the_server() {
    let dir = TempDir::new();
    let claims = TokenClaims {
        issuer: DEV_ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        subject: "dev-user".to_owned(),
        role: Role::Admin,
        tenant: String::new(),
        ttl_secs: 60,
        token_id: None,
    };
    let err = dev::mint_token(dir.path(), &claims).unwrap_err();
    assert!(matches!(err, AuthSetupError::NoDevKey(_)), "{err}");
    assert!(
        err.to_string()
            .contains("start `gdpr-intake serve` once first"),
        "{err}"
    );
    assert!(!dir.path().exists());
}

#[test]
fn dev_jwks_without_the_dev_public_key_is_reported() {
    let dir = TempDir::new();
    let jwks_path = dev::ensure_dev_keys(dir.path()).unwrap();
    let other = json!({"keys": [public_jwk(&fixture().ed, Algorithm::EdDSA, "dev-1")]});
    std::fs::write(&jwks_path, other.to_string()).unwrap();
    let err = dev::ensure_dev_keys(dir.path()).unwrap_err();
    assert!(
        matches!(err, AuthSetupError::DevKeyMismatch { .. }),
        "{err}"
    );
}

#[test]
fn a_verified_token_is_remembered_until_it_expires() {
    let auth = authenticator();
    let token = ed_token(&claims("controller", "acme"));
    assert_eq!(auth.cached_tokens(), 0);
    let first = auth.verify_token(&token).unwrap();
    assert_eq!(auth.cached_tokens(), 1);
    let second = auth.verify_token(&token).unwrap();
    assert_eq!(first, second);
    assert_eq!(
        auth.cached_tokens(),
        1,
        "the second call was served from memory"
    );
    assert!(auth.cached(&token, now()).is_some());
    assert!(
        auth.cached(&token, first.expires_at + 3600).is_none(),
        "an expired entry is never served"
    );
}

#[test]
fn a_rejected_token_is_never_remembered() {
    let auth = authenticator();
    let expired = ed_token(&with(
        claims("controller", "acme"),
        "exp",
        json!(now() - 3600),
    ));
    assert!(auth.verify_token(&expired).is_err());
    assert!(auth.verify_token(&expired).is_err());
    assert_eq!(auth.cached_tokens(), 0);
    let mut tampered = ed_token(&claims("controller", "acme"));
    tampered.push('x');
    assert!(auth.verify_token(&tampered).is_err());
    assert_eq!(auth.cached_tokens(), 0);
}

#[test]
fn a_revoked_subject_or_token_id_is_refused_even_when_remembered() {
    let auth = authenticator();
    let token = ed_token(&claims("controller", "acme"));
    let other = ed_token(&with(claims("controller", "acme"), "sub", json!("user-43")));
    let bearer = |t: &str| metadata(&format!("Bearer {t}"));
    auth.authenticate(&bearer(&token)).unwrap();
    assert_eq!(auth.cached_tokens(), 1);

    auth.revocations()
        .add(&RevocationTarget::TokenId("token-7".to_owned()));
    // Every token of the fixture carries jti `token-7`.
    assert_eq!(auth.authenticate(&bearer(&token)), Err(AuthError::Revoked));
    assert_eq!(auth.authenticate(&bearer(&other)), Err(AuthError::Revoked));
    let no_jti = ed_token(&without(claims("controller", "acme"), "jti"));
    auth.authenticate(&bearer(&no_jti)).unwrap();

    // A token without `jti` is still refused by its subject.
    auth.revocations()
        .add(&RevocationTarget::Subject("user-42".to_owned()));
    assert_eq!(auth.authenticate(&bearer(&no_jti)), Err(AuthError::Revoked));
    assert_eq!(
        AuthError::Revoked.code(),
        tonic::Code::Unauthenticated,
        "a revoked token is unauthenticated, not merely forbidden"
    );
}

#[test]
fn a_caller_let_in_stays_valid_until_revoked_or_expired() {
    let auth = authenticator();
    let token = ed_token(&claims("controller", "acme"));
    let caller = auth
        .authenticate(&metadata(&format!("Bearer {token}")))
        .unwrap();
    assert_eq!(auth.still_valid(&caller), Ok(()));
    let expired = Caller {
        expires_at: caller.expires_at - 3600,
        ..caller.clone()
    };
    assert_eq!(auth.still_valid(&expired), Err(AuthError::Expired));
    auth.revocations()
        .add(&RevocationTarget::Subject(caller.subject.clone()));
    assert_eq!(auth.still_valid(&caller), Err(AuthError::Revoked));
}

/// Every refusal, whatever its cause, leaves no part of the token in any log
/// line (at every level) nor in the error's text or debug form, which is
/// what the handlers' warn line and the client's message are made of.
#[test]
fn no_refusal_writes_any_part_of_the_token() {
    use std::io;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    let auth = authenticator();
    auth.revocations()
        .add(&RevocationTarget::Subject("revoked-svc".to_owned()));
    let expired = ed_token(&with(claims("admin", ""), "exp", json!(now() - 3600)));
    let mut tampered = ed_token(&claims("admin", ""));
    tampered.replace_range(tampered.len() - 6.., "AAAAAA");
    let tokens = [
        ("expired", expired),
        ("bad signature", tampered),
        (
            "unknown kid",
            sign_token(
                &fixture().ed,
                Algorithm::EdDSA,
                Some("ed-9"),
                &claims("admin", ""),
            )
            .unwrap(),
        ),
        (
            "wrong audience",
            ed_token(&with(claims("admin", ""), "aud", json!("other"))),
        ),
        (
            "wrong issuer",
            ed_token(&with(
                claims("admin", ""),
                "iss",
                json!("https://evil.test"),
            )),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64_json(&json!({"alg": "none"})),
                b64_json(&claims("admin", ""))
            ),
        ),
        (
            "revoked",
            ed_token(&with(claims("admin", ""), "sub", json!("revoked-svc"))),
        ),
        ("wrong role", ed_token(&claims("processor", "crm-vendor"))),
    ];
    let out = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer({
            let out = out.clone();
            move || out.clone()
        })
        .finish();
    let errors: Vec<_> = tracing::subscriber::with_default(subscriber, || {
        tokens
            .iter()
            .map(|(case, token)| {
                let err = auth
                    .authorize(&metadata(&format!("Bearer {token}")), &[Role::Admin])
                    .expect_err(case);
                tracing::warn!(reason = err.reason(), error = %err, "call refused");
                (case, token, err)
            })
            .collect()
    });
    let logged = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        logged.matches("call refused").count(),
        tokens.len(),
        "{logged}"
    );
    for (case, token, err) in errors {
        let said = format!("{logged}\n{err}\n{err:?}");
        for segment in token.split('.').filter(|s| s.len() >= 8) {
            assert!(
                !said.contains(segment),
                "{case}: a token segment was written"
            );
        }
        // The reason is stated, in a form made only of the refusal.
        assert!(logged.contains(err.reason()), "{case}");
    }
}

#[test]
fn a_reload_replaces_the_key_set_and_forgets_what_it_verified() {
    let fx = fixture();
    let only = |keys: &[Value]| json!({ "keys": keys }).to_string();
    let ed_jwk = public_jwk(&fx.ed, Algorithm::EdDSA, "ed-1");
    let es_jwk = public_jwk(&fx.es, Algorithm::ES256, "es-1");
    let auth =
        Authenticator::from_jwks_json(&only(std::slice::from_ref(&ed_jwk)), config(30)).unwrap();
    let claims = claims("controller", "acme");
    let ed = ed_token(&claims);
    let es = sign_token(&fx.es, Algorithm::ES256, Some("es-1"), &claims).unwrap();
    assert!(auth.verify_token(&ed).is_ok());
    assert_eq!(auth.verify_token(&es), Err(AuthError::UnknownKeyId));
    assert_eq!(auth.cached_tokens(), 1);

    // A key added: accepted.
    assert_eq!(
        auth.reload(&only(&[ed_jwk, es_jwk.clone()]), "test")
            .unwrap(),
        2
    );
    assert!(auth.verify_token(&es).is_ok());
    // A key removed: refused, though a token signed with it was verified
    // (and remembered) before.
    assert!(auth.verify_token(&ed).is_ok());
    assert_eq!(auth.reload(&only(&[es_jwk]), "test").unwrap(), 1);
    assert_eq!(auth.cached_tokens(), 0);
    assert_eq!(auth.verify_token(&ed), Err(AuthError::UnknownKeyId));
    // A set that does not load changes nothing.
    for broken in ["{ \"keys\": [", "{\"keys\": []}", "not json"] {
        assert!(auth.reload(broken, "test").is_err(), "{broken}");
        assert!(auth.verify_token(&es).is_ok(), "{broken}");
        assert_eq!(auth.verify_token(&ed), Err(AuthError::UnknownKeyId));
    }
    assert!(format!("{auth:?}").contains("es-1"));
}
