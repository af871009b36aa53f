//! `AccessService`: revoking a caller or a token takes effect at once on
//! the replica that records it and within the refresh on every other one
//! (two instances on one PostgreSQL database), verified tokens remembered
//! or not; refusals are counted by reason.

use std::sync::Arc;
use std::time::Duration;

use gdpr_intake::auth::{Role, TokenClaims, dev};
use gdpr_intake::clock::SystemClock;
use gdpr_intake::proto::v1;
use gdpr_intake::proto::v1::access_service_client::AccessServiceClient;
use gdpr_intake::proto::v1::revocation::Target;
use gdpr_intake::proto::v1::revoke_access_request::Target as Revoke;
use gdpr_intake::startup::KeySource;
use tonic::Code;

use crate::helpers::{
    Backend, TestApp, assert_status, authed, bad_fields, eventually, spawn_app, spawn_configured,
};
use crate::telemetry::{
    http_get, spawn_with_metrics_endpoint, spawn_with_metrics_endpoint_configured,
};

fn access(app: &TestApp) -> AccessServiceClient<tonic::transport::Channel> {
    AccessServiceClient::new(app.channel.clone())
}

/// A controller token of `subject` in tenant `acme`, with `jti` if given.
fn token(app: &TestApp, subject: &str, jti: Option<&str>) -> String {
    dev::mint_token(
        app.data_dir.path(),
        &TokenClaims {
            issuer: dev::DEV_ISSUER.to_owned(),
            audience: "gdpr-intake".to_owned(),
            subject: subject.to_owned(),
            role: Role::Controller,
            tenant: "acme".to_owned(),
            ttl_secs: 600,
            token_id: jti.map(str::to_owned),
        },
    )
    .expect("dev token")
}

/// The outcome of one cheap call (a list) with `token`.
async fn list_with(app: &TestApp, token: &str) -> Result<(), tonic::Status> {
    app.dsr()
        .list_data_subject_requests(authed(token, v1::ListDataSubjectRequestsRequest::default()))
        .await
        .map(drop)
}

async fn revoke(app: &TestApp, target: Revoke) -> v1::Revocation {
    let admin = app.token(Role::Admin, "");
    access(app)
        .revoke_access(authed(
            &admin,
            v1::RevokeAccessRequest {
                target: Some(target),
                reason: "credentials leaked in a ticket".to_owned(),
            },
        ))
        .await
        .expect("revoked")
        .into_inner()
        .revocation
        .expect("a revocation")
}

#[tokio::test]
async fn revoking_a_subject_refuses_every_token_it_holds() {
    let app = spawn_app().await;
    let old = token(&app, "billing-service", None);
    let other = token(&app, "crm-service", None);
    // Verified, so remembered before the revocation.
    list_with(&app, &old).await.expect("allowed before");

    let revocation = revoke(&app, Revoke::Subject("billing-service".to_owned())).await;
    assert_eq!(
        revocation.target,
        Some(Target::Subject("billing-service".to_owned()))
    );
    assert_eq!(revocation.revoked_by, "admin@");
    assert!(
        revocation.name.starts_with("revocations/"),
        "{}",
        revocation.name
    );

    for refused in [old, token(&app, "billing-service", Some("fresh"))] {
        let status = list_with(&app, &refused).await.expect_err("revoked");
        assert_status(&status, Code::Unauthenticated, Some("TOKEN_REVOKED"));
    }
    list_with(&app, &other)
        .await
        .expect("another caller is untouched");
    app.stop().await;
}

#[tokio::test]
async fn revoking_a_token_id_refuses_that_token_only() {
    let app = spawn_app().await;
    let leaked = token(&app, "billing-service", Some("jti-leaked"));
    let current = token(&app, "billing-service", Some("jti-current"));
    list_with(&app, &leaked).await.expect("allowed before");

    let first = revoke(&app, Revoke::TokenId("jti-leaked".to_owned())).await;
    let status = list_with(&app, &leaked).await.expect_err("revoked");
    assert_status(&status, Code::Unauthenticated, Some("TOKEN_REVOKED"));
    list_with(&app, &current)
        .await
        .expect("the caller's other token works");

    // Revoking again answers with what is stored.
    let again = revoke(&app, Revoke::TokenId("jti-leaked".to_owned())).await;
    assert_eq!(again, first);
    app.stop().await;
}

#[tokio::test]
async fn revocations_are_listed_oldest_first_in_pages() {
    let app = spawn_app().await;
    let mut names = Vec::new();
    for i in 0..5 {
        names.push(revoke(&app, Revoke::Subject(format!("svc-{i}"))).await.name);
    }
    let admin = app.token(Role::Admin, "");
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = access(&app)
            .list_revocations(authed(
                &admin,
                v1::ListRevocationsRequest {
                    page_size: 2,
                    page_token: page_token.clone(),
                },
            ))
            .await
            .expect("lists")
            .into_inner();
        assert!(page.revocations.len() <= 2);
        seen.extend(page.revocations.into_iter().map(|r| r.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, names);

    let status = access(&app)
        .list_revocations(authed(
            &admin,
            v1::ListRevocationsRequest {
                page_size: 2,
                page_token: "not-a-token".to_owned(),
            },
        ))
        .await
        .expect_err("bad token");
    assert_eq!(bad_fields(&status), ["page_token"]);
    app.stop().await;
}

#[tokio::test]
async fn only_an_admin_revokes_and_a_revocation_is_checked() {
    let app = spawn_app().await;
    let request = |target: Option<Revoke>, reason: &str| v1::RevokeAccessRequest {
        target,
        reason: reason.to_owned(),
    };
    for role in [Role::Controller, Role::Processor, Role::Auditor] {
        let token = app.token(role, "acme");
        let status = access(&app)
            .revoke_access(authed(
                &token,
                request(Some(Revoke::Subject("x".to_owned())), "why"),
            ))
            .await
            .expect_err("not an admin");
        assert_status(&status, Code::PermissionDenied, Some("PERMISSION_DENIED"));
        let status = access(&app)
            .list_revocations(authed(&token, v1::ListRevocationsRequest::default()))
            .await
            .expect_err("not an admin");
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    let status = access(&app)
        .revoke_access(tonic::Request::new(request(
            Some(Revoke::Subject("x".to_owned())),
            "why",
        )))
        .await
        .expect_err("no token");
    assert_status(&status, Code::Unauthenticated, Some("MISSING_CREDENTIALS"));

    let admin = app.token(Role::Admin, "");
    for (message, fields) in [
        (request(None, "why"), vec!["target"]),
        (
            request(Some(Revoke::Subject("x".to_owned())), " "),
            vec!["reason"],
        ),
        (
            request(Some(Revoke::TokenId("t".repeat(513))), "why"),
            vec!["token_id"],
        ),
        (
            request(Some(Revoke::Subject(String::new())), ""),
            vec!["subject", "reason"],
        ),
    ] {
        let status = access(&app)
            .revoke_access(authed(&admin, message))
            .await
            .expect_err("invalid");
        assert_eq!(bad_fields(&status), fields);
    }
    app.stop().await;
}

/// Refusals are counted by reason, the caller nowhere in the labels, as the
/// Prometheus endpoint shows them.
#[tokio::test]
async fn failed_authentications_are_counted_by_reason() {
    let (app, metrics) = spawn_with_metrics_endpoint().await;
    let scrape = || async move {
        let (status, text) = http_get(metrics, "/metrics").await;
        assert!(status.contains("200"), "{status}");
        text
    };
    let count = |text: &str, reason: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("gdpr_auth_failures_total{")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = scrape().await;
    assert_eq!(count(&before, "missing_credentials"), 0.0);

    let no_token = app
        .dsr()
        .list_data_subject_requests(tonic::Request::new(
            v1::ListDataSubjectRequestsRequest::default(),
        ))
        .await;
    assert!(no_token.is_err());
    // One character of the signature changed.
    let mut forged = token(&app, "billing-service", None).into_bytes();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    assert!(list_with(&app, &forged).await.is_err());
    assert!(list_with(&app, &forged).await.is_err());
    let processor = app.token(Role::Processor, "crm-vendor");
    assert!(list_with(&app, &processor).await.is_err());
    revoke(&app, Revoke::Subject("billing-service".to_owned())).await;
    assert!(
        list_with(&app, &token(&app, "billing-service", None))
            .await
            .is_err()
    );

    let text = scrape().await;
    assert_eq!(count(&text, "missing_credentials"), 1.0, "{text}");
    assert_eq!(count(&text, "invalid_signature"), 2.0, "{text}");
    assert_eq!(count(&text, "permission_denied"), 1.0, "{text}");
    assert_eq!(count(&text, "token_revoked"), 1.0, "{text}");
    let labels: Vec<_> = text
        .lines()
        .filter(|l| l.starts_with("gdpr_auth_failures_total{"))
        .collect();
    assert!(
        labels.iter().all(|l| !l.contains("billing-service")
            && !l.contains("tenant")
            && !l.contains("crm-vendor")),
        "no caller in the labels: {labels:?}"
    );
    app.stop().await;
}

/// Two instances on one PostgreSQL database: a revocation recorded on one
/// is refused by the other within its refresh, though the other had already
/// verified (and remembered) the token, and by one started later at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_postgres_replica_within_the_refresh() {
    let refresh = Duration::from_millis(300);
    let Some((first, database)) = spawn_configured(Backend::Postgres, Arc::new(SystemClock), |s| {
        s.revocation_refresh = refresh;
    })
    .await
    else {
        return;
    };
    // The same database, and the first one's keys: replicas share both.
    let keys = first.data_dir.path().to_path_buf();
    let (second, _) = spawn_configured(Backend::Postgres, Arc::new(SystemClock), |s| {
        s.revocation_refresh = refresh;
        s.store = database.clone();
        s.keys = KeySource::DevKeys {
            data_dir: keys.clone(),
        };
    })
    .await
    .expect("postgres");
    let leaked = token(&first, "billing-service", Some("jti-1"));
    list_with(&second, &leaked).await.expect("allowed before");

    revoke(&first, Revoke::TokenId("jti-1".to_owned())).await;
    let status = list_with(&first, &leaked).await.expect_err("at once here");
    assert_status(&status, Code::Unauthenticated, Some("TOKEN_REVOKED"));
    eventually(
        "the other replica to refuse the revoked token",
        refresh * 10,
        || async {
            let refused = list_with(&second, &leaked).await.err();
            if let Some(status) = &refused {
                assert_status(status, Code::Unauthenticated, Some("TOKEN_REVOKED"));
            }
            refused.is_some()
        },
    )
    .await;

    // A replica started later refuses it from its first call, long before
    // its first refresh: it loads every revocation before serving.
    let (third, _) = spawn_configured(Backend::Postgres, Arc::new(SystemClock), |s| {
        s.revocation_refresh = Duration::from_secs(3600);
        s.store = database;
        s.keys = KeySource::DevKeys { data_dir: keys };
    })
    .await
    .expect("postgres");
    let status = list_with(&third, &leaked)
        .await
        .expect_err("from the start");
    assert_status(&status, Code::Unauthenticated, Some("TOKEN_REVOKED"));
    list_with(&third, &token(&first, "billing-service", Some("jti-2")))
        .await
        .expect("another token of the caller works");
    first.stop().await;
    second.stop().await;
    third.stop().await;
}

/// The JWKS file changed under a running server, as a Kubernetes Secret
/// update changes it (a new file renamed over the old): a key added is
/// accepted, and one removed refused, within `--jwks-refresh`; a file that
/// does not load keeps the keys in force and is counted once.
#[tokio::test]
async fn a_changed_jwks_file_takes_effect_without_a_restart() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ed25519_dalek::SigningKey;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, KeypairBytes};
    use gdpr_intake::auth::{Algorithm, EncodingKey, sign_token};

    let (app, metrics) = spawn_with_metrics_endpoint_configured(
        Arc::new(gdpr_intake::clock::SystemClock),
        |settings| settings.jwks_refresh = Duration::from_millis(100),
    )
    .await;
    let failures = || async move {
        let (status, text) = http_get(metrics, "/metrics").await;
        assert!(status.contains("200"), "{status}");
        text.lines()
            .find(|l| l.starts_with("gdpr_auth_jwks_reload_failures_total"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let path = app.data_dir.path().join(dev::DEV_JWKS_FILE);
    let replace = |text: String| {
        let temp = path.with_extension("new");
        std::fs::write(&temp, text).expect("write the new set");
        std::fs::rename(&temp, &path).expect("rename it over the old");
    };
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dev jwks")).expect("json");
    let dev_jwk = original["keys"][0].clone();

    let signing = SigningKey::generate(&mut rand_core::OsRng);
    let der = KeypairBytes {
        secret_key: signing.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_der()
    .expect("pkcs8");
    let new_key = EncodingKey::from_ed_der(der.as_bytes());
    let new_jwk = serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes()),
        "kid": "rotated-1",
        "alg": "EdDSA",
        "use": "sig",
    });
    let claims = TokenClaims {
        issuer: dev::DEV_ISSUER.to_owned(),
        audience: "gdpr-intake".to_owned(),
        subject: "billing-service".to_owned(),
        role: Role::Controller,
        tenant: "acme".to_owned(),
        ttl_secs: 600,
        token_id: None,
    }
    .to_json(jiff::Timestamp::now().as_second())
    .expect("claims");
    let new_token =
        sign_token(&new_key, Algorithm::EdDSA, Some("rotated-1"), &claims).expect("signed");
    let dev_token = token(&app, "billing-service", None);

    assert_eq!(
        list_with(&app, &new_token).await.map_err(|s| s.code()),
        Err(Code::Unauthenticated)
    );
    assert!(list_with(&app, &dev_token).await.is_ok());

    // Added beside the development key: both accepted.
    replace(serde_json::json!({ "keys": [dev_jwk, new_jwk] }).to_string());
    eventually(
        "the added key is accepted",
        Duration::from_secs(10),
        || async { list_with(&app, &new_token).await.is_ok() },
    )
    .await;
    assert!(list_with(&app, &dev_token).await.is_ok());

    // The development key removed: its token refused, though verified
    // (and remembered) before.
    replace(serde_json::json!({ "keys": [new_jwk] }).to_string());
    eventually(
        "the removed key is refused",
        Duration::from_secs(10),
        || async { list_with(&app, &dev_token).await.is_err() },
    )
    .await;
    assert_eq!(
        list_with(&app, &dev_token).await.map_err(|s| s.code()),
        Err(Code::Unauthenticated)
    );
    assert!(list_with(&app, &new_token).await.is_ok());

    // A set that does not load: the keys in force stay, and it is counted
    // once, however many times it is read.
    let before = failures().await;
    replace("{ \"keys\": [".to_owned());
    eventually(
        "the broken file is counted",
        Duration::from_secs(10),
        || async { failures().await == before + 1.0 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(failures().await, before + 1.0, "counted once");
    assert!(list_with(&app, &new_token).await.is_ok());
    assert_eq!(
        list_with(&app, &dev_token).await.map_err(|s| s.code()),
        Err(Code::Unauthenticated)
    );
}

/// A stream outlives the check at its start: a revocation ends the change
/// feed's and the task watch's streams of the revoked caller, with
/// UNAUTHENTICATED `TOKEN_REVOKED`, while other callers' go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_ends_the_streams_of_the_revoked_caller() {
    let app = spawn_app().await;
    let controller = app.token(Role::Controller, "acme");
    let auditor = app.token(Role::Auditor, "acme");
    let processor = app.token(Role::Processor, "crm");
    let mut feed = app
        .dsr()
        .watch_request_events(authed(
            &controller,
            v1::WatchRequestEventsRequest::default(),
        ))
        .await
        .expect("feed opens")
        .into_inner();
    let mut audited = app
        .dsr()
        .watch_request_events(authed(&auditor, v1::WatchRequestEventsRequest::default()))
        .await
        .expect("feed opens")
        .into_inner();
    let mut tasks = app
        .tasks()
        .watch_tasks(authed(&processor, v1::WatchTasksRequest::default()))
        .await
        .expect("watch opens")
        .into_inner();

    revoke(&app, Revoke::Subject("controller@acme".to_owned())).await;
    revoke(&app, Revoke::Subject("processor@crm".to_owned())).await;
    for (what, ended) in [
        ("feed", feed.message().await.map(drop)),
        ("tasks", tasks.message().await.map(drop)),
    ] {
        let status = ended.expect_err(what);
        assert_status(&status, Code::Unauthenticated, Some("TOKEN_REVOKED"));
    }
    // The auditor's stream is not the revoked caller's: it goes on.
    let still = tokio::time::timeout(Duration::from_millis(300), audited.message()).await;
    assert!(still.is_err(), "the auditor's stream stays open: {still:?}");
    app.stop().await;
}
