//! RoutingService: processors and routes, roles and tenant scoping.

use gdpr_intake::auth::Role;
use gdpr_intake::proto::v1;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn an_admin_manages_processors_and_routes() {
    let app = spawn_app().await;
    let admin = app.token(Role::Admin, "");
    let mut r = app.routing();

    let p = r
        .create_processor(authed(
            &admin,
            v1::CreateProcessorRequest {
                processor_id: "mailer".into(),
                display_name: "Mailer GmbH".into(),
                contact: String::new(),
            },
        ))
        .await
        .expect("created")
        .into_inner()
        .processor
        .expect("processor");
    assert_eq!(p.name, "processors/mailer");
    let err = r
        .create_processor(authed(
            &admin,
            v1::CreateProcessorRequest {
                processor_id: "mailer".into(),
                display_name: "again".into(),
                contact: String::new(),
            },
        ))
        .await
        .expect_err("duplicate");
    assert_status(&err, Code::AlreadyExists, Some("PROCESSOR_EXISTS"));
    let err = r
        .create_processor(authed(
            &admin,
            v1::CreateProcessorRequest {
                processor_id: "Bad Id!".into(),
                display_name: String::new(),
                contact: String::new(),
            },
        ))
        .await
        .expect_err("invalid");
    assert_eq!(bad_fields(&err), vec!["processor_id", "display_name"]);

    let route = r
        .create_route(authed(
            &admin,
            v1::CreateRouteRequest {
                controller_id: "acme".into(),
                processor_id: "mailer".into(),
                request_types: vec![
                    v1::RequestType::Erasure.into(),
                    v1::RequestType::Access.into(),
                ],
                task_sla_working_hours: 0,
            },
        ))
        .await
        .expect("route")
        .into_inner()
        .route
        .expect("route");
    assert_eq!(route.task_sla_working_hours, 72, "default SLA");
    assert!(route.name.starts_with("routes/"));
    let err = r
        .create_route(authed(
            &admin,
            v1::CreateRouteRequest {
                controller_id: "acme".into(),
                processor_id: "mailer".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("duplicate route");
    assert_status(&err, Code::AlreadyExists, Some("ROUTE_EXISTS"));
    let err = r
        .create_route(authed(
            &admin,
            v1::CreateRouteRequest {
                controller_id: "acme".into(),
                processor_id: "ghost".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("no such processor");
    assert_status(&err, Code::FailedPrecondition, Some("PROCESSOR_NOT_FOUND"));
    let err = r
        .create_route(authed(
            &admin,
            v1::CreateRouteRequest {
                controller_id: String::new(),
                processor_id: "mailer".into(),
                request_types: vec![0],
                task_sla_working_hours: -1,
            },
        ))
        .await
        .expect_err("invalid route");
    assert_eq!(
        bad_fields(&err),
        vec!["controller_id", "request_types", "task_sla_working_hours"]
    );

    let listed = r
        .list_processors(authed(&admin, v1::ListProcessorsRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.processors.len(), 1);

    r.delete_route(authed(
        &admin,
        v1::DeleteRouteRequest {
            name: route.name.clone(),
        },
    ))
    .await
    .expect("route deleted");
    let err = r
        .delete_route(authed(
            &admin,
            v1::DeleteRouteRequest {
                name: route.name.clone(),
            },
        ))
        .await
        .expect_err("gone");
    assert_eq!(err.code(), Code::NotFound);
    r.delete_processor(authed(
        &admin,
        v1::DeleteProcessorRequest {
            processor_id: "mailer".into(),
        },
    ))
    .await
    .expect("processor deleted");
    let err = r
        .delete_processor(authed(
            &admin,
            v1::DeleteProcessorRequest {
                processor_id: "mailer".into(),
            },
        ))
        .await
        .expect_err("gone");
    assert_eq!(err.code(), Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn a_processor_with_open_tasks_cannot_be_deleted() {
    let app = spawn_app().await;
    app.route("acme", "crm", &[], 72).await;
    let token = app.token(Role::Controller, "acme");
    app.dsr()
        .submit_data_subject_request(authed(&token, submission()))
        .await
        .expect("submitted");
    let err = app
        .routing()
        .delete_processor(authed(
            &app.token(Role::Admin, ""),
            v1::DeleteProcessorRequest {
                processor_id: "crm".into(),
            },
        ))
        .await
        .expect_err("open tasks");
    assert_status(
        &err,
        Code::FailedPrecondition,
        Some("PROCESSOR_HAS_OPEN_TASKS"),
    );
    app.stop().await;
}

#[tokio::test]
async fn routes_are_listed_by_filter_and_controllers_see_only_their_own() {
    let app = spawn_app().await;
    app.route("acme", "crm", &[], 72).await;
    app.route("acme", "mailer", &[v1::RequestType::Erasure], 24)
        .await;
    app.route("beta", "crm", &[], 48).await;
    let admin = app.token(Role::Admin, "");
    let list = |token: String, controller: &str, processor: &str, size: i32, page: String| {
        let mut r = app.routing();
        let req = authed(
            &token,
            v1::ListRoutesRequest {
                controller_id: controller.into(),
                processor_id: processor.into(),
                page_size: size,
                page_token: page,
            },
        );
        async move { r.list_routes(req).await.expect("list").into_inner() }
    };
    assert_eq!(
        list(admin.clone(), "", "", 0, String::new())
            .await
            .routes
            .len(),
        3
    );
    assert_eq!(
        list(admin.clone(), "acme", "", 0, String::new())
            .await
            .routes
            .len(),
        2
    );
    assert_eq!(
        list(admin.clone(), "", "crm", 0, String::new())
            .await
            .routes
            .len(),
        2
    );
    let first = list(admin.clone(), "", "", 2, String::new()).await;
    assert_eq!(first.routes.len(), 2);
    let second = list(admin.clone(), "", "", 2, first.next_page_token).await;
    assert_eq!(second.routes.len(), 1);
    assert!(second.next_page_token.is_empty());

    let acme = app.token(Role::Controller, "acme");
    let own = list(acme.clone(), "", "", 0, String::new()).await;
    assert_eq!(own.routes.len(), 2);
    assert!(own.routes.iter().all(|r| r.controller_id == "acme"));
    assert!(
        list(acme.clone(), "beta", "", 0, String::new())
            .await
            .routes
            .is_empty()
    );
    let auditor = app.token(Role::Auditor, "beta");
    let theirs = list(auditor, "", "", 0, String::new()).await;
    assert_eq!(theirs.routes.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn only_an_admin_changes_routing() {
    let app = spawn_app().await;
    let mut r = app.routing();
    for token in [
        app.token(Role::Controller, "acme"),
        app.token(Role::Processor, "crm"),
        app.token(Role::Auditor, "acme"),
    ] {
        let errs = vec![
            r.create_processor(authed(
                &token,
                v1::CreateProcessorRequest {
                    processor_id: "x".into(),
                    display_name: "x".into(),
                    contact: String::new(),
                },
            ))
            .await
            .expect_err("create processor"),
            r.delete_processor(authed(
                &token,
                v1::DeleteProcessorRequest {
                    processor_id: "x".into(),
                },
            ))
            .await
            .expect_err("delete processor"),
            r.create_route(authed(
                &token,
                v1::CreateRouteRequest {
                    controller_id: "acme".into(),
                    processor_id: "x".into(),
                    ..Default::default()
                },
            ))
            .await
            .expect_err("create route"),
            r.delete_route(authed(
                &token,
                v1::DeleteRouteRequest {
                    name: "routes/00000000-0000-4000-8000-000000000000".into(),
                },
            ))
            .await
            .expect_err("delete route"),
        ];
        for e in errs {
            assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        }
    }
    let err = r
        .list_routes(authed(
            &app.token(Role::Processor, "crm"),
            v1::ListRoutesRequest::default(),
        ))
        .await
        .expect_err("processors do not read routes");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = r
        .list_processors(v1::ListProcessorsRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    app.stop().await;
}
