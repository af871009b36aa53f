//! Health and reflection: served on the same port, no token needed.

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::*;

#[tokio::test]
async fn health_answers_without_a_token() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    let overall = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("overall health")
        .into_inner();
    assert_eq!(overall.status(), ServingStatus::Serving);
    // Readiness is set by the first database check, right after start;
    // until then the service is unknown to health.
    eventually(
        "readiness SERVING",
        std::time::Duration::from_secs(10),
        || {
            let mut health = health.clone();
            async move {
                health
                    .check(HealthCheckRequest {
                        service: "gdpr.intake.v1.DataSubjectRequestService".into(),
                    })
                    .await
                    .is_ok_and(|r| r.into_inner().status() == ServingStatus::Serving)
            }
        },
    )
    .await;
    let err = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(err.code(), tonic::Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn reflection_lists_the_services_in_both_versions() {
    use tokio_stream::StreamExt;
    let app = spawn_app().await;

    let mut v1 = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
        app.channel.clone(),
    );
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut stream = v1
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("reflection v1")
        .into_inner();
    let resp = stream.next().await.expect("one answer").expect("ok");
    let Some(
        tonic_reflection::pb::v1::server_reflection_response::MessageResponse::ListServicesResponse(
            list,
        ),
    ) = resp.message_response
    else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for service in gdpr_intake::startup::READINESS_SERVICES {
        assert!(names.contains(&(*service).to_owned()), "{names:?}");
    }
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    let mut v1alpha =
        tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(
            app.channel.clone(),
        );
    let req = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut stream = v1alpha
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("reflection v1alpha")
        .into_inner();
    let resp = stream.next().await.expect("one answer").expect("ok");
    assert!(resp.message_response.is_some());
    app.stop().await;
}

#[tokio::test]
async fn shutdown_turns_health_to_not_serving_and_stops() {
    let mut app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("stream")
        .expect("first status");
    assert_eq!(first.status(), ServingStatus::Serving);
    let _ = app.shutdown.take().expect("running").send(());
    let next = watch.message().await;
    if let Ok(Some(next)) = next {
        assert_eq!(next.status(), ServingStatus::NotServing);
    }
    let server = app.server.take().expect("running");
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("stops within the drain timeout")
        .expect("server task");
}

/// The application refuses a store configuration without its keys before
/// it binds or writes anything: no throwaway key ever seals data.
#[tokio::test]
async fn the_application_needs_the_store_keys() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(
        gdpr_intake::store::StoreConfig::sqlite(data_dir.path()),
        &data_dir,
    );
    settings.listen = "127.0.0.1:0".parse().expect("addr");
    let refused = gdpr_intake::startup::Application::build(
        settings,
        std::sync::Arc::new(gdpr_intake::clock::SystemClock),
    )
    .await
    .err()
    .expect("no keys, no application");
    assert!(refused.to_string().contains("no audit key"), "{refused}");
    assert!(
        !data_dir.path().join("gdpr-intake.db").exists(),
        "nothing was written"
    );
}
