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
use crate::telemetry::{http_get, spawn_with_metrics_endpoint};

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
