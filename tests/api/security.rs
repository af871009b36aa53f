//! The security matrix: every RPC × every way a caller can be wrong gives
//! the documented code, and another tenant's resource is answered exactly
//! as a missing one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gdpr_intake::auth::{Algorithm, Role, TokenClaims, dev, sign_token};
use gdpr_intake::proto::v1;
use gdpr_intake::proto::v1::access_service_client::AccessServiceClient;
use serde_json::Value;
use tonic::{Code, Status};

use crate::helpers::*;

/// Every RPC that needs a token, with the roles it admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rpc {
    Submit,
    Get,
    List,
    Consent,
    Extend,
    Cancel,
    Close,
    AskIdentity,
    RecordIdentity,
    AskClarification,
    RecordClarification,
    Events,
    Feed,
    WatchFeed,
    CreateProcessor,
    ListProcessors,
    DeleteProcessor,
    CreateRoute,
    ListRoutes,
    DeleteRoute,
    Claim,
    Renew,
    Complete,
    Release,
    ListTasks,
    Watch,
    Revoke,
    ListRevocations,
}

const ALL: [Rpc; 28] = [
    Rpc::Submit,
    Rpc::Get,
    Rpc::List,
    Rpc::Consent,
    Rpc::Extend,
    Rpc::Cancel,
    Rpc::Close,
    Rpc::AskIdentity,
    Rpc::RecordIdentity,
    Rpc::AskClarification,
    Rpc::RecordClarification,
    Rpc::Events,
    Rpc::Feed,
    Rpc::WatchFeed,
    Rpc::CreateProcessor,
    Rpc::ListProcessors,
    Rpc::DeleteProcessor,
    Rpc::CreateRoute,
    Rpc::ListRoutes,
    Rpc::DeleteRoute,
    Rpc::Claim,
    Rpc::Renew,
    Rpc::Complete,
    Rpc::Release,
    Rpc::ListTasks,
    Rpc::Watch,
    Rpc::Revoke,
    Rpc::ListRevocations,
];

impl Rpc {
    /// A role the RPC admits.
    fn role(self) -> Role {
        match self {
            Rpc::Submit
            | Rpc::Get
            | Rpc::List
            | Rpc::Consent
            | Rpc::Extend
            | Rpc::Cancel
            | Rpc::Close
            | Rpc::AskIdentity
            | Rpc::RecordIdentity
            | Rpc::AskClarification
            | Rpc::RecordClarification
            | Rpc::Events
            | Rpc::Feed
            | Rpc::WatchFeed => Role::Controller,
            Rpc::CreateProcessor
            | Rpc::ListProcessors
            | Rpc::DeleteProcessor
            | Rpc::CreateRoute
            | Rpc::ListRoutes
            | Rpc::DeleteRoute
            | Rpc::Revoke
            | Rpc::ListRevocations => Role::Admin,
            _ => Role::Processor,
        }
    }

    /// A role the RPC refuses.
    fn wrong_role(self) -> Role {
        match self.role() {
            Role::Controller => Role::Processor,
            Role::Processor => Role::Controller,
            _ => Role::Processor,
        }
    }

    /// Whether it acts on one existing resource of a tenant.
    fn targets_a_tenant_resource(self) -> bool {
        matches!(
            self,
            Rpc::Get
                | Rpc::Consent
                | Rpc::Extend
                | Rpc::Cancel
                | Rpc::Close
                | Rpc::AskIdentity
                | Rpc::RecordIdentity
                | Rpc::AskClarification
                | Rpc::RecordClarification
                | Rpc::Events
                | Rpc::Renew
                | Rpc::Complete
                | Rpc::Release
        )
    }
}

/// Targets: the request and task of tenant `acme` / processor `crm`.
struct Targets {
    request: String,
    task: String,
    token: String,
}

async fn call(app: &TestApp, rpc: Rpc, token: Option<&str>, t: &Targets) -> Result<(), Status> {
    fn req<T>(token: Option<&str>, m: T) -> tonic::Request<T> {
        match token {
            Some(tok) => authed(tok, m),
            None => tonic::Request::new(m),
        }
    }
    let (mut d, mut r, mut k) = (app.dsr(), app.routing(), app.tasks());
    let mut a = AccessServiceClient::new(app.channel.clone());
    let name = t.request.clone();
    let task = t.task.clone();
    let lease = t.token.clone();
    match rpc {
        Rpc::Submit => d
            .submit_data_subject_request(req(token, submission()))
            .await
            .map(drop),
        Rpc::Get => d
            .get_data_subject_request(req(token, v1::GetDataSubjectRequestRequest { name }))
            .await
            .map(drop),
        Rpc::List => d
            .list_data_subject_requests(req(token, v1::ListDataSubjectRequestsRequest::default()))
            .await
            .map(drop),
        Rpc::Consent => d
            .record_guardian_consent(req(
                token,
                v1::RecordGuardianConsentRequest {
                    name,
                    guardian: None,
                },
            ))
            .await
            .map(drop),
        Rpc::Extend => d
            .extend_deadline(req(
                token,
                v1::ExtendDeadlineRequest {
                    name,
                    reason: "x".into(),
                },
            ))
            .await
            .map(drop),
        Rpc::Cancel => d
            .cancel_data_subject_request(req(
                token,
                v1::CancelDataSubjectRequestRequest {
                    name,
                    reason: "x".into(),
                },
            ))
            .await
            .map(drop),
        Rpc::Close => d
            .close_data_subject_request(req(
                token,
                v1::CloseDataSubjectRequestRequest {
                    name,
                    outcome: v1::Outcome::Completed.into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        Rpc::AskIdentity => d
            .request_identity_verification(req(
                token,
                v1::RequestIdentityVerificationRequest {
                    name,
                    reason: "x".into(),
                },
            ))
            .await
            .map(drop),
        Rpc::RecordIdentity => d
            .record_identity_verification(req(
                token,
                v1::RecordIdentityVerificationRequest {
                    name,
                    method: "x".into(),
                    received_at: None,
                },
            ))
            .await
            .map(drop),
        Rpc::AskClarification => d
            .request_clarification(req(
                token,
                v1::RequestClarificationRequest {
                    name,
                    question: "x".into(),
                },
            ))
            .await
            .map(drop),
        Rpc::RecordClarification => d
            .record_clarification(req(
                token,
                v1::RecordClarificationRequest {
                    name,
                    received_at: None,
                },
            ))
            .await
            .map(drop),
        Rpc::Events => d
            .list_request_events(req(
                token,
                v1::ListRequestEventsRequest {
                    name,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        Rpc::Feed => d
            .list_feed_events(req(token, v1::ListFeedEventsRequest::default()))
            .await
            .map(drop),
        Rpc::WatchFeed => d
            .watch_request_events(req(token, v1::WatchRequestEventsRequest::default()))
            .await
            .map(drop),
        Rpc::CreateProcessor => r
            .create_processor(req(
                token,
                v1::CreateProcessorRequest {
                    processor_id: "fresh".into(),
                    display_name: "Fresh".into(),
                    contact: String::new(),
                },
            ))
            .await
            .map(drop),
        Rpc::ListProcessors => r
            .list_processors(req(token, v1::ListProcessorsRequest::default()))
            .await
            .map(drop),
        Rpc::DeleteProcessor => r
            .delete_processor(req(
                token,
                v1::DeleteProcessorRequest {
                    processor_id: "nobody".into(),
                },
            ))
            .await
            .map(drop),
        Rpc::CreateRoute => r
            .create_route(req(
                token,
                v1::CreateRouteRequest {
                    controller_id: "acme".into(),
                    processor_id: "crm".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        Rpc::ListRoutes => r
            .list_routes(req(token, v1::ListRoutesRequest::default()))
            .await
            .map(drop),
        Rpc::DeleteRoute => r
            .delete_route(req(
                token,
                v1::DeleteRouteRequest {
                    name: "routes/00000000-0000-4000-8000-000000000000".into(),
                },
            ))
            .await
            .map(drop),
        // A token id nobody holds: the matrix revokes nothing it uses.
        Rpc::Revoke => a
            .revoke_access(req(
                token,
                v1::RevokeAccessRequest {
                    target: Some(v1::revoke_access_request::Target::TokenId(
                        "security-matrix-probe".into(),
                    )),
                    reason: "security matrix".into(),
                },
            ))
            .await
            .map(drop),
        Rpc::ListRevocations => a
            .list_revocations(req(token, v1::ListRevocationsRequest::default()))
            .await
            .map(drop),
        Rpc::Claim => k
            .claim_tasks(req(
                token,
                v1::ClaimTasksRequest {
                    max_tasks: 1,
                    lease_duration: None,
                },
            ))
            .await
            .map(drop),
        Rpc::Renew => k
            .renew_task_lease(req(
                token,
                v1::RenewTaskLeaseRequest {
                    name: task,
                    lease_token: lease,
                    lease_duration: None,
                },
            ))
            .await
            .map(drop),
        Rpc::Complete => k
            .complete_task(req(
                token,
                v1::CompleteTaskRequest {
                    name: task,
                    lease_token: lease,
                    outcome: v1::TaskOutcome::Done.into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        Rpc::Release => k
            .release_task(req(
                token,
                v1::ReleaseTaskRequest {
                    name: task,
                    lease_token: lease,
                    reason: String::new(),
                },
            ))
            .await
            .map(drop),
        Rpc::ListTasks => k
            .list_tasks(req(token, v1::ListTasksRequest::default()))
            .await
            .map(drop),
        Rpc::Watch => k
            .watch_tasks(req(token, v1::WatchTasksRequest {}))
            .await
            .map(drop),
    }
}

fn claims(role: Role, tenant: &str) -> Value {
    TokenClaims {
        issuer: dev::DEV_ISSUER.into(),
        audience: "gdpr-intake".into(),
        subject: "mallory".into(),
        role,
        tenant: tenant.into(),
        ttl_secs: 600,
        token_id: None,
    }
    .to_json(jiff::Timestamp::now().as_second())
    .expect("claims")
}

fn sign(app: &TestApp, kid: &str, claims: &Value) -> String {
    let key = dev::encoding_key(app.data_dir.path()).expect("dev key");
    sign_token(&key, Algorithm::EdDSA, Some(kid), claims).expect("signed")
}

/// Every way a token can be bad, with the code it must get.
fn bad_tokens(app: &TestApp, rpc: Rpc) -> Vec<(&'static str, Option<String>, Code)> {
    let tenant = if rpc.role() == Role::Admin {
        ""
    } else if rpc.role() == Role::Processor {
        "crm"
    } else {
        "acme"
    };
    let good = claims(rpc.role(), tenant);
    let with = |key: &str, value: Value| {
        let mut c = good.clone();
        c[key] = value;
        c
    };
    let now = jiff::Timestamp::now().as_second();
    let valid = sign(app, dev::DEV_KEY_ID, &good);
    let tampered = {
        let parts: Vec<&str> = valid.split('.').collect();
        let mut payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        payload["tenant"] = Value::String("other".into());
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            parts[2]
        )
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"dev-1"}"#),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    let wrong_role_tenant = if rpc.wrong_role() == Role::Admin {
        ""
    } else {
        "acme"
    };
    vec![
        ("no token", None, Code::Unauthenticated),
        (
            "expired",
            Some(sign(
                app,
                dev::DEV_KEY_ID,
                &with("exp", Value::from(now - 3600)),
            )),
            Code::Unauthenticated,
        ),
        (
            "wrong audience",
            Some(sign(
                app,
                dev::DEV_KEY_ID,
                &with("aud", Value::from("someone-else")),
            )),
            Code::Unauthenticated,
        ),
        (
            "wrong issuer",
            Some(sign(
                app,
                dev::DEV_KEY_ID,
                &with("iss", Value::from("https://evil.example")),
            )),
            Code::Unauthenticated,
        ),
        (
            "unknown kid",
            Some(sign(app, "nope-7", &good)),
            Code::Unauthenticated,
        ),
        ("tampered signature", Some(tampered), Code::Unauthenticated),
        ("alg none", Some(none), Code::Unauthenticated),
        (
            "wrong role",
            Some(sign(
                app,
                dev::DEV_KEY_ID,
                &claims(rpc.wrong_role(), wrong_role_tenant),
            )),
            Code::PermissionDenied,
        ),
    ]
}

#[tokio::test]
async fn every_rpc_refuses_every_bad_caller() {
    let app = spawn_app().await;
    app.route("acme", "crm", &[], 72).await;
    let r = app
        .dsr()
        .submit_data_subject_request(authed(&app.token(Role::Controller, "acme"), submission()))
        .await
        .expect("submitted")
        .into_inner()
        .data_subject_request
        .expect("request");
    let task = app
        .tasks()
        .claim_tasks(authed(
            &app.token(Role::Processor, "crm"),
            v1::ClaimTasksRequest {
                max_tasks: 1,
                lease_duration: None,
            },
        ))
        .await
        .expect("claimed")
        .into_inner()
        .tasks
        .remove(0);
    let targets = Targets {
        request: r.name.clone(),
        task: task.name.clone(),
        token: task.lease_token.clone(),
    };

    let mut checked = 0;
    for rpc in ALL {
        for (case, token, code) in bad_tokens(&app, rpc) {
            let err = call(&app, rpc, token.as_deref(), &targets)
                .await
                .expect_err(&format!("{rpc:?} with {case} must fail"));
            assert_eq!(err.code(), code, "{rpc:?} with {case}: {err:?}");
            assert!(
                !err.message().contains("eyJ"),
                "{rpc:?} {case}: the token is echoed"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, ALL.len() * 8);

    // Other tenant: identical to a resource that does not exist.
    let missing = Targets {
        request: "dataSubjectRequests/00000000-0000-4000-8000-000000000000".into(),
        task: "tasks/00000000-0000-4000-8000-000000000000".into(),
        token: task.lease_token.clone(),
    };
    for rpc in ALL.into_iter().filter(|r| r.targets_a_tenant_resource()) {
        let other = if rpc.role() == Role::Processor {
            app.token(Role::Processor, "mailer")
        } else {
            app.token(Role::Controller, "beta")
        };
        let theirs = call(&app, rpc, Some(&other), &targets)
            .await
            .expect_err("other tenant");
        let nothing = call(&app, rpc, Some(&other), &missing)
            .await
            .expect_err("missing");
        assert_eq!(theirs.code(), Code::NotFound, "{rpc:?}: {theirs:?}");
        assert_eq!(
            (theirs.code(), theirs.message()),
            (nothing.code(), nothing.message()),
            "{rpc:?}"
        );
        assert_eq!(theirs.details(), nothing.details(), "{rpc:?}");
    }
    // And the owner still gets through on every one of its RPCs' reads.
    call(
        &app,
        Rpc::Get,
        Some(&app.token(Role::Controller, "acme")),
        &targets,
    )
    .await
    .expect("owner reads");
    app.stop().await;
}

/// What an auditor of tenant `acme` gets from `rpc`: reads of its own
/// tenant succeed, everything else is refused for its role.
fn auditor_expects(rpc: Rpc) -> Option<Code> {
    match rpc {
        Rpc::Get
        | Rpc::List
        | Rpc::Events
        | Rpc::Feed
        | Rpc::WatchFeed
        | Rpc::ListRoutes
        | Rpc::ListProcessors => None,
        _ => Some(Code::PermissionDenied),
    }
}

#[tokio::test]
async fn an_auditor_reads_its_tenant_and_changes_nothing() {
    let app = spawn_app().await;
    app.route("acme", "crm", &[], 72).await;
    app.route("beta", "crm", &[], 72).await;
    let submit = |tenant: &'static str| {
        let token = app.token(Role::Controller, tenant);
        let mut client = app.dsr();
        async move {
            client
                .submit_data_subject_request(authed(&token, submission()))
                .await
                .expect("submitted")
                .into_inner()
                .data_subject_request
                .expect("request")
        }
    };
    let ours = submit("acme").await;
    let theirs = submit("beta").await;
    let task = app
        .tasks()
        .claim_tasks(authed(
            &app.token(Role::Processor, "crm"),
            v1::ClaimTasksRequest {
                max_tasks: 1,
                lease_duration: None,
            },
        ))
        .await
        .expect("claimed")
        .into_inner()
        .tasks
        .remove(0);
    let targets = Targets {
        request: ours.name.clone(),
        task: task.name.clone(),
        token: task.lease_token.clone(),
    };
    let auditor = app.token(Role::Auditor, "acme");
    let events_before = app
        .dsr()
        .list_request_events(authed(
            &auditor,
            v1::ListRequestEventsRequest {
                name: ours.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("the auditor reads the events")
        .into_inner()
        .events
        .len();

    // Every RPC: the reads of its own tenant succeed, the rest is refused.
    for rpc in ALL {
        let got = call(&app, rpc, Some(&auditor), &targets).await;
        match auditor_expects(rpc) {
            None => assert!(got.is_ok(), "{rpc:?}: {got:?}"),
            Some(code) => {
                let err = got.expect_err(&format!("{rpc:?} is not for an auditor"));
                assert_eq!(err.code(), code, "{rpc:?}: {err:?}");
            }
        }
    }

    // Another tenant's request is a missing one, to an auditor as well.
    let other = Targets {
        request: theirs.name.clone(),
        ..targets
    };
    let missing = Targets {
        request: "dataSubjectRequests/00000000-0000-4000-8000-000000000000".into(),
        task: other.task.clone(),
        token: other.token.clone(),
    };
    for rpc in [Rpc::Get, Rpc::Events] {
        let foreign = call(&app, rpc, Some(&auditor), &other)
            .await
            .expect_err("another tenant's request");
        let nothing = call(&app, rpc, Some(&auditor), &missing)
            .await
            .expect_err("no such request");
        assert_eq!(foreign.code(), Code::NotFound, "{rpc:?}: {foreign:?}");
        assert_eq!(
            (foreign.code(), foreign.message(), foreign.details()),
            (nothing.code(), nothing.message(), nothing.details()),
            "{rpc:?}"
        );
    }

    // Listings are scoped to the tenant.
    let listed = app
        .dsr()
        .list_data_subject_requests(authed(
            &auditor,
            v1::ListDataSubjectRequestsRequest::default(),
        ))
        .await
        .expect("listed")
        .into_inner()
        .data_subject_requests;
    assert_eq!(
        listed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        vec![ours.name.as_str()]
    );
    let routes = |controller_id: &str| {
        let mut client = app.routing();
        let request = authed(
            &auditor,
            v1::ListRoutesRequest {
                controller_id: controller_id.to_owned(),
                ..Default::default()
            },
        );
        async move {
            client
                .list_routes(request)
                .await
                .expect("listed")
                .into_inner()
                .routes
                .into_iter()
                .map(|r| r.controller_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(routes("").await, vec!["acme"]);
    assert!(
        routes("beta").await.is_empty(),
        "beta's routes are not shown"
    );

    // And none of the refused writes changed anything.
    let after = app
        .dsr()
        .get_data_subject_request(authed(
            &auditor,
            v1::GetDataSubjectRequestRequest {
                name: ours.name.clone(),
            },
        ))
        .await
        .expect("read")
        .into_inner()
        .data_subject_request
        .expect("request");
    assert_eq!(
        (after.state, after.update_time, after.due_time),
        (ours.state, ours.update_time, ours.due_time)
    );
    let events_after = app
        .dsr()
        .list_request_events(authed(
            &auditor,
            v1::ListRequestEventsRequest {
                name: ours.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("events")
        .into_inner()
        .events
        .len();
    assert_eq!(events_after, events_before);
    app.stop().await;
}
