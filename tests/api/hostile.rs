//! Hostile input through the real server: arbitrary submissions and
//! arbitrary bytes as every unary method's message get an answer a client
//! can act on (OK, or a refusal naming what is wrong), never INTERNAL,
//! UNKNOWN or a broken connection (how a panicking handler shows). Then a
//! table of the classic bad inputs, each refused with INVALID_ARGUMENT
//! naming its field.
//!
//! The property tests run `HOSTILE_CASES` cases each (default 200), all
//! against one application: `HOSTILE_CASES=5000 cargo test hostile`.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use bytes::{Buf, BufMut, Bytes};
use gdpr_intake::auth::Role;
use gdpr_intake::proto::google::r#type::Date;
use gdpr_intake::proto::v1;
use http::uri::PathAndQuery;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::helpers::*;

fn cases() -> u32 {
    std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// One runtime and one application for all the cases of a property: the
/// runner is synchronous, each case blocks on the runtime.
fn with_app(test: impl FnOnce(&tokio::runtime::Runtime, &TestApp)) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let app = rt.block_on(spawn_app());
    test(&rt, &app);
    rt.block_on(app.stop());
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

/// A refusal a client can act on: INVALID_ARGUMENT naming at least one
/// field, or FAILED_PRECONDITION with its ErrorInfo reason.
fn actionable(status: &Status) -> Result<(), TestCaseError> {
    let details = status.get_error_details();
    match status.code() {
        Code::InvalidArgument => {
            let fields: Vec<String> = details
                .bad_request()
                .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
                .unwrap_or_default();
            prop_assert!(
                !fields.is_empty() && fields.iter().all(|f| !f.is_empty()),
                "INVALID_ARGUMENT without named fields: {status:?}"
            );
        }
        Code::FailedPrecondition => {
            prop_assert!(
                details.error_info().is_some(),
                "FAILED_PRECONDITION without ErrorInfo: {status:?}"
            );
        }
        _ => prop_assert!(false, "neither OK nor a named refusal: {status:?}"),
    }
    Ok(())
}

// ---- arbitrary submissions ----

/// Any characters, control characters and NUL included; now and then a
/// long run of one, well over every field's limit.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        // At most 6,000 chars of at most 4 bytes, so that all the text
        // fields together stay under the 256 KiB message limit.
        1 => (any::<char>(), 1_000usize..6_000).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
}

/// Each field is usually valid and now and then hostile, so that a good
/// share of the cases gets past every check to the age rule, the deadline
/// and the store, and the rest is refused for one or a few fields.
fn usually<T: std::fmt::Debug + Clone + 'static>(
    valid: impl Strategy<Value = T> + 'static,
    hostile: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![7 => valid, 1 => hostile].boxed()
}

fn date() -> impl Strategy<Value = Date> {
    let hostile = prop_oneof![
        // Years 0, 1899 and 3000, and any at all.
        (
            prop_oneof![Just(0), Just(1899), Just(3000), any::<i32>()],
            1..=12,
            1..=28
        ),
        // 30 February, 31 April.
        (1900..2026, Just(2), Just(30)),
        (1900..2026, Just(4), Just(31)),
        // Months and days that are no month or day.
        (1900..2026, any::<i32>(), any::<i32>()),
    ];
    // Up to this year, so that some subjects are minors or under 15.
    usually((1900..2026, 1..=12, 1..=28), hostile).prop_map(|(year, month, day)| Date {
        year,
        month,
        day,
    })
}

fn subject() -> impl Strategy<Value = v1::Subject> {
    (
        usually("cust-[0-9]{1,6}", text()),
        usually(
            prop_oneof![Just("ada@example.org".to_owned()), Just(String::new())],
            text(),
        ),
        usually(date().prop_map(Some), Just(None)),
        usually(
            proptest::sample::select(vec!["DE", "FR", "US", "BR", "GB", "JP", "IS"])
                .prop_map(str::to_owned),
            text(),
        ),
        usually(
            Just(String::new()),
            prop_oneof![Just("US-CA".to_owned()), text()],
        ),
    )
        .prop_map(
            |(external_id, email, date_of_birth, country, subdivision)| v1::Subject {
                external_id,
                email,
                date_of_birth,
                country,
                subdivision,
            },
        )
}

fn received_at(now: i64) -> impl Strategy<Value = Option<prost_types::Timestamp>> {
    let at = |(seconds, nanos)| Some(prost_types::Timestamp { seconds, nanos });
    let hostile = prop_oneof![
        // Before 1970, more than 13 months back, in the future.
        (
            prop_oneof![
                Just(-1i64),
                Just(i64::MIN),
                Just(i64::MAX),
                (now - 450 * 86_400)..(now - 396 * 86_400),
                (now + 120)..(now + 86_400),
                any::<i64>(),
            ],
            0..1_000_000_000
        ),
        // Nanoseconds no timestamp has.
        ((now - 86_400)..now, any::<i32>()),
    ]
    .prop_map(at);
    usually(
        prop_oneof![
            Just(None),
            ((now - 390 * 86_400)..now, 0..1_000_000_000).prop_map(at),
        ],
        hostile,
    )
}

fn request_type() -> impl Strategy<Value = i32> {
    usually(1..=7, prop_oneof![Just(0), 8..100, any::<i32>()])
}

fn corrections() -> impl Strategy<Value = HashMap<String, String>> {
    usually(
        prop_oneof![
            6 => Just(HashMap::new()),
            1 => proptest::collection::hash_map("[a-z_]{1,12}", "[ -~]{0,16}", 1..4),
        ],
        prop_oneof![
            proptest::collection::hash_map(text(), text(), 0..4),
            // Many small entries: under the message limit, over the count limit.
            proptest::collection::hash_map("[a-z0-9]{1,8}", "[ -~]{0,8}", 90..2_000),
        ],
    )
}

/// A submission; `request_id: None` means a fresh UUID, drawn when the case
/// runs so that no two cases (shrinking included) share one.
fn submission_parts(
    now: i64,
) -> impl Strategy<Value = (Option<String>, v1::SubmitDataSubjectRequestRequest)> {
    (
        usually(Just(None), text().prop_map(Some)),
        request_type(),
        usually(subject().prop_map(Some), Just(None)),
        received_at(now),
        usually("[ -~]{0,40}", text()),
        corrections(),
    )
        .prop_map(
            |(request_id, r#type, subject, received_at, details, corrections)| {
                (
                    request_id,
                    v1::SubmitDataSubjectRequestRequest {
                        request_id: String::new(),
                        r#type,
                        subject,
                        received_at,
                        details,
                        corrections,
                        identity_verification_required: false,
                    },
                )
            },
        )
}

#[test]
fn arbitrary_submissions_get_ok_or_a_named_refusal() {
    with_app(|rt, app| {
        let token = app.token(Role::Controller, "acme");
        let now = jiff::Timestamp::now().as_second();
        // OK, INVALID_ARGUMENT, FAILED_PRECONDITION.
        let seen = Cell::new([0u32; 3]);
        let count = |i: usize| {
            let mut n = seen.get();
            n[i] += 1;
            seen.set(n);
        };
        let result = runner().run(&submission_parts(now), |(request_id, mut m)| {
            m.request_id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let answer = rt.block_on(app.dsr().submit_data_subject_request(authed(&token, m)));
            match answer {
                Ok(_) => count(0),
                Err(status) => {
                    actionable(&status)?;
                    count(if status.code() == Code::InvalidArgument {
                        1
                    } else {
                        2
                    });
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        // The server is still whole after all that.
        rt.block_on(
            app.dsr()
                .submit_data_subject_request(authed(&token, submission())),
        )
        .expect("a valid submission after the hostile ones");
        let [ok, invalid, precondition] = seen.get();
        eprintln!(
            "submissions: {ok} OK, {invalid} INVALID_ARGUMENT, {precondition} FAILED_PRECONDITION"
        );
        if cases() >= 100 {
            // The generator must reach past the checks, not only into them.
            assert!(ok > 0 && invalid > 0, "{ok} accepted, {invalid} refused");
        }
    });
}

// ---- arbitrary bytes as every unary method's message ----

/// Sends and receives message bodies as they are, so a test can put any
/// bytes on the wire inside correct gRPC framing.
#[derive(Clone, Copy, Debug, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Calls `path` with `body` as the message, as `token`.
async fn raw_call(
    app: &TestApp,
    path: &'static str,
    token: &str,
    body: Bytes,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    grpc.unary(
        authed(token, body),
        PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(drop)
}

/// Who may call a method, so that a message that decodes reaches its
/// handler's checks instead of stopping at PERMISSION_DENIED.
#[derive(Clone, Copy, Debug)]
enum Who {
    Controller,
    Admin,
    Processor,
}

/// Every unary method: path, caller, and whether bytes decode as its
/// message.
type Method = (&'static str, Who, fn(&[u8]) -> bool);

fn decodes<M: Message + Default>(bytes: &[u8]) -> bool {
    M::decode(bytes).is_ok()
}

const METHODS: [Method; 28] = [
    (
        "/gdpr.intake.v1.DataSubjectRequestService/SubmitDataSubjectRequest",
        Who::Controller,
        decodes::<v1::SubmitDataSubjectRequestRequest>,
    ),
    (
        "/gdpr.intake.v1.DataSubjectRequestService/GetDataSubjectRequest",
        Who::Controller,
        decodes::<v1::GetDataSubjectRequestRequest>,
    ),
    (
        "/gdpr.intake.v1.DataSubjectRequestService/ListDataSubjectRequests",
        Who::Controller,
        decodes::<v1::ListDataSubjectRequestsRequest>,
    ),
    (
        "/gdpr.intake.v1.DataSubjectRequestService/RecordGuardianConsent",
        Who::Controller,
        decodes::<v1::RecordGuardianConsentRequest>,
    ),
    (
        "/gdpr.intake.v1.DataSubjectRequestService/ExtendDeadline",
        Who::Controller,
        decodes::<v1::ExtendDeadlineRequest>,
    ),
    (
        "/gdpr.intake.v1.DataSubjectRequestService/CancelDataSubjectRequest",
        Who::Controller,
        decodes::<v1::CancelDataSubjectRequestRequest>,
    ),
    (
        "/gdpr.intake.v1.DataSubjectRequestService/CloseDataSubjectRequest",
        Who::Controller,
        decodes::<v1::CloseDataSubjectRequestRequest>,
    ),
    (
        "/gdpr.intake.v1.DataSubjectRequestService/RequestIdentityVerification",
        Who::Controller,
        decodes::<v1::RequestIdentityVerificationRequest>,
    ),
    (
        "/gdpr.intake.v1.DataSubjectRequestService/RecordIdentityVerification",
        Who::Controller,
        decodes::<v1::RecordIdentityVerificationRequest>,
    ),
    (
        "/gdpr.intake.v1.DataSubjectRequestService/RequestClarification",
        Who::Controller,
        decodes::<v1::RequestClarificationRequest>,
    ),
    (
        "/gdpr.intake.v1.DataSubjectRequestService/RecordClarification",
        Who::Controller,
        decodes::<v1::RecordClarificationRequest>,
    ),
    (
        "/gdpr.intake.v1.DataSubjectRequestService/ListRequestEvents",
        Who::Controller,
        decodes::<v1::ListRequestEventsRequest>,
    ),
    (
        "/gdpr.intake.v1.DataSubjectRequestService/ListFeedEvents",
        Who::Controller,
        decodes::<v1::ListFeedEventsRequest>,
    ),
    (
        "/gdpr.intake.v1.DataSubjectRequestService/ExportRequestEvidence",
        Who::Admin,
        decodes::<v1::ExportRequestEvidenceRequest>,
    ),
    (
        "/gdpr.intake.v1.ReportingService/GetComplianceReport",
        Who::Admin,
        decodes::<v1::GetComplianceReportRequest>,
    ),
    (
        "/gdpr.intake.v1.RoutingService/CreateProcessor",
        Who::Admin,
        decodes::<v1::CreateProcessorRequest>,
    ),
    (
        "/gdpr.intake.v1.RoutingService/ListProcessors",
        Who::Admin,
        decodes::<v1::ListProcessorsRequest>,
    ),
    (
        "/gdpr.intake.v1.RoutingService/DeleteProcessor",
        Who::Admin,
        decodes::<v1::DeleteProcessorRequest>,
    ),
    (
        "/gdpr.intake.v1.RoutingService/CreateRoute",
        Who::Admin,
        decodes::<v1::CreateRouteRequest>,
    ),
    (
        "/gdpr.intake.v1.RoutingService/ListRoutes",
        Who::Admin,
        decodes::<v1::ListRoutesRequest>,
    ),
    (
        "/gdpr.intake.v1.RoutingService/DeleteRoute",
        Who::Admin,
        decodes::<v1::DeleteRouteRequest>,
    ),
    (
        "/gdpr.intake.v1.ProcessorTaskService/ClaimTasks",
        Who::Processor,
        decodes::<v1::ClaimTasksRequest>,
    ),
    (
        "/gdpr.intake.v1.ProcessorTaskService/RenewTaskLease",
        Who::Processor,
        decodes::<v1::RenewTaskLeaseRequest>,
    ),
    (
        "/gdpr.intake.v1.ProcessorTaskService/CompleteTask",
        Who::Processor,
        decodes::<v1::CompleteTaskRequest>,
    ),
    (
        "/gdpr.intake.v1.ProcessorTaskService/ReleaseTask",
        Who::Processor,
        decodes::<v1::ReleaseTaskRequest>,
    ),
    (
        "/gdpr.intake.v1.ProcessorTaskService/ListTasks",
        Who::Processor,
        decodes::<v1::ListTasksRequest>,
    ),
    (
        "/gdpr.intake.v1.AccessService/RevokeAccess",
        Who::Admin,
        decodes::<v1::RevokeAccessRequest>,
    ),
    (
        "/gdpr.intake.v1.AccessService/ListRevocations",
        Who::Admin,
        decodes::<v1::ListRevocationsRequest>,
    ),
];

/// Bytes that are sometimes protobuf: random, or a field key followed by
/// random bytes, so that both the decoder and the handlers get exercised.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (
            1u8..8,
            0u8..6,
            proptest::collection::vec(any::<u8>(), 0..48)
        )
            .prop_map(|(field, wire, rest)| {
                let mut out = vec![(field << 3) | wire];
                out.extend(rest);
                out
            }),
    ]
}

#[test]
fn arbitrary_bytes_as_any_method_are_never_an_internal_error() {
    with_app(|rt, app| {
        let tokens = [
            app.token(Role::Controller, "acme"),
            app.token(Role::Admin, ""),
            app.token(Role::Processor, "crm"),
        ];
        let strategy = (0..METHODS.len(), body());
        let result = runner().run(&strategy, |(i, bytes)| {
            let (path, who, decodes) = METHODS[i];
            let token = &tokens[who as usize];
            let answer = rt.block_on(raw_call(app, path, token, Bytes::from(bytes.clone())));
            let Err(status) = answer else {
                prop_assert!(decodes(&bytes), "{path}: OK for bytes that do not decode");
                return Ok(());
            };
            let reason = status
                .get_error_details()
                .error_info()
                .map(|i| i.reason.clone())
                .unwrap_or_default();
            if decodes(&bytes) {
                // The handler ran: its answer is one a client can act on.
                prop_assert!(
                    matches!(
                        status.code(),
                        Code::InvalidArgument
                            | Code::NotFound
                            | Code::FailedPrecondition
                            | Code::AlreadyExists
                    ),
                    "{path}: {status:?}"
                );
                prop_assert_ne!(reason.as_str(), "MALFORMED_MESSAGE");
            } else {
                prop_assert_eq!(
                    status.code(),
                    Code::InvalidArgument,
                    "{}: {:?}",
                    path,
                    status
                );
                prop_assert_eq!(reason.as_str(), "MALFORMED_MESSAGE");
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        let alive = rt.block_on(raw_call(
            app,
            "/gdpr.intake.v1.DataSubjectRequestService/ListDataSubjectRequests",
            &tokens[0],
            Bytes::new(),
        ));
        assert!(alive.is_ok(), "{alive:?}");
    });
}

// ---- the classic bad inputs, one by one ----

/// Encodes `m` and puts `bad` (as long as `marker`) where `marker` was.
fn with_bytes(m: &impl Message, marker: &[u8], bad: &[u8]) -> Bytes {
    assert_eq!(
        marker.len(),
        bad.len(),
        "same length keeps the framing valid"
    );
    let mut out = m.encode_to_vec();
    let at = out
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("marker encoded");
    out[at..at + marker.len()].copy_from_slice(bad);
    Bytes::from(out)
}

#[tokio::test]
async fn a_string_that_is_not_utf8_is_refused_naming_its_field() {
    let app = spawn_app().await;
    let controller = app.token(Role::Controller, "acme");
    let admin = app.token(Role::Admin, "");
    let marker = b"MARK";
    let not_utf8 = b"\xff\xfe\xc3\x28";

    let mut top = submission();
    top.request_id = "MARK".into();
    let mut nested = submission();
    if let Some(s) = nested.subject.as_mut() {
        s.email = "ada@MARK.example".into();
    }
    let mut map_value = submission();
    map_value.r#type = v1::RequestType::Rectification.into();
    map_value
        .corrections
        .insert("last_name".into(), "MARK".into());
    let guardian = v1::RecordGuardianConsentRequest {
        name: "dataSubjectRequests/0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10".into(),
        guardian: Some(v1::Guardian {
            full_name: "MARK".into(),
            ..Default::default()
        }),
    };
    let processor = v1::CreateProcessorRequest {
        processor_id: "crm".into(),
        display_name: "MARK".into(),
        contact: String::new(),
    };
    let submit = "/gdpr.intake.v1.DataSubjectRequestService/SubmitDataSubjectRequest";
    let (controller, admin) = (controller.as_str(), admin.as_str());
    let table = [
        (
            "request_id",
            submit,
            controller,
            with_bytes(&top, marker, not_utf8),
        ),
        (
            "subject.email",
            submit,
            controller,
            with_bytes(&nested, marker, not_utf8),
        ),
        (
            "corrections",
            submit,
            controller,
            with_bytes(&map_value, marker, not_utf8),
        ),
        (
            "guardian.full_name",
            "/gdpr.intake.v1.DataSubjectRequestService/RecordGuardianConsent",
            controller,
            with_bytes(&guardian, marker, not_utf8),
        ),
        (
            "display_name",
            "/gdpr.intake.v1.RoutingService/CreateProcessor",
            admin,
            with_bytes(&processor, marker, not_utf8),
        ),
    ];
    for (field, path, token, body) in table {
        let status = raw_call(&app, path, token, body)
            .await
            .expect_err("not UTF-8");
        assert_eq!(bad_fields(&status), vec![field], "{status:?}");
        let info = status
            .get_error_details()
            .error_info()
            .cloned()
            .expect("info");
        assert_eq!(info.reason, "MALFORMED_MESSAGE");
        assert!(!status.message().contains("ada@"), "{status:?}");
    }

    // Bytes that are no protobuf at all: no field to name, still the
    // caller's mistake.
    let status = raw_call(&app, submit, controller, Bytes::from_static(&[0x02, 0x00]))
        .await
        .expect_err("field number 0");
    assert_status(&status, Code::InvalidArgument, Some("MALFORMED_MESSAGE"));

    // Over the 256 KiB limit: refused before decoding, as too large
    // (RESOURCE_EXHAUSTED; tonic itself says OUT_OF_RANGE), not as the
    // server's fault either.
    let mut huge = submission();
    huge.details = "x".repeat(300 * 1024);
    let status = app
        .dsr()
        .submit_data_subject_request(authed(controller, huge))
        .await
        .expect_err("too large");
    assert!(
        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{status:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn impossible_dates_and_times_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let token = app.token(Role::Controller, "acme");
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    // Two days ahead: tomorrow in UTC may already be today in Germany.
    let later = today
        .tomorrow()
        .and_then(|d| d.tomorrow())
        .expect("a day after tomorrow");
    let born = |year: i32, month: i32, day: i32| {
        let mut m = submission();
        if let Some(s) = m.subject.as_mut() {
            s.date_of_birth = Some(Date { year, month, day });
        }
        m
    };
    let received = |seconds: i64, nanos: i32| {
        let mut m = submission();
        m.received_at = Some(prost_types::Timestamp { seconds, nanos });
        m
    };
    let now = jiff::Timestamp::now().as_second();
    let cases = vec![
        ("30 February", born(2000, 2, 30), "subject.date_of_birth"),
        ("31 April", born(1990, 4, 31), "subject.date_of_birth"),
        ("year 0", born(0, 1, 1), "subject.date_of_birth"),
        ("born in 1899", born(1899, 12, 31), "subject.date_of_birth"),
        (
            "born after the day of receipt",
            born(
                later.year().into(),
                later.month().into(),
                later.day().into(),
            ),
            "subject.date_of_birth",
        ),
        ("born in 3000", born(3000, 1, 1), "subject.date_of_birth"),
        ("month 13", born(1990, 13, 1), "subject.date_of_birth"),
        ("received before 1970", received(-1, 0), "received_at"),
        ("received at i64::MIN", received(i64::MIN, 0), "received_at"),
        (
            "received 14 months ago",
            received(now - 425 * 86_400, 0),
            "received_at",
        ),
        (
            "received tomorrow",
            received(now + 86_400, 0),
            "received_at",
        ),
        (
            "nanos over a second",
            received(now, 1_000_000_000),
            "received_at",
        ),
    ];
    for (case, m, field) in cases {
        let status = app
            .dsr()
            .submit_data_subject_request(authed(&token, m))
            .await
            .expect_err(case);
        assert_eq!(bad_fields(&status), vec![field], "{case}: {status:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn ten_thousand_corrections_are_refused() {
    let app = spawn_app().await;
    let mut m = submission();
    m.r#type = v1::RequestType::Rectification.into();
    m.corrections = (0..10_000)
        .map(|i| (format!("field{i}"), "v".to_owned()))
        .collect();
    let status = app
        .dsr()
        .submit_data_subject_request(authed(&app.token(Role::Controller, "acme"), m))
        .await
        .expect_err("too many corrections");
    assert_eq!(bad_fields(&status), vec!["corrections"]);
    app.stop().await;
}

/// One call under way.
type Call = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

/// One oversized field of one call, and the field the refusal must name.
struct Oversized {
    field: &'static str,
    call: Call,
}

fn subject_of(m: &mut v1::SubmitDataSubjectRequestRequest) -> &mut v1::Subject {
    m.subject.get_or_insert_with(adult_subject)
}

#[tokio::test]
async fn every_string_over_its_limit_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let controller = app.token(Role::Controller, "acme");
    let admin = app.token(Role::Admin, "");
    let processor = app.token(Role::Processor, "crm");
    // Guardian consent is checked against the stored request, so one must
    // exist and await it.
    let minor = app
        .dsr()
        .submit_data_subject_request(authed(
            &controller,
            v1::SubmitDataSubjectRequestRequest {
                subject: Some(minor_subject()),
                ..submission()
            },
        ))
        .await
        .expect("submitted")
        .into_inner()
        .data_subject_request
        .expect("request")
        .name;
    let long = |n: usize| "x".repeat(n);
    let task = "tasks/0b0e8d56-3c0f-4d7e-9a47-2f1b5f6d9a10".to_owned();

    let submit = |change: fn(&mut v1::SubmitDataSubjectRequestRequest)| {
        let mut m = submission();
        change(&mut m);
        let mut client = app.dsr();
        let token = controller.clone();
        Box::pin(async move {
            client
                .submit_data_subject_request(authed(&token, m))
                .await
                .map(drop)
        }) as Call
    };
    let guardian = |change: fn(&mut v1::Guardian)| {
        let mut g = v1::Guardian {
            full_name: "Grace Hopper".into(),
            relationship: v1::GuardianRelationship::Parent.into(),
            email: "g@example.org".into(),
            verification_method: "id-check".into(),
            // A second ahead: after the request's receipt, within the skew.
            consented_at: Some(prost_types::Timestamp {
                seconds: jiff::Timestamp::now().as_second() + 1,
                nanos: 0,
            }),
        };
        change(&mut g);
        let mut client = app.dsr();
        let (token, name) = (controller.clone(), minor.clone());
        Box::pin(async move {
            client
                .record_guardian_consent(authed(
                    &token,
                    v1::RecordGuardianConsentRequest {
                        name,
                        guardian: Some(g),
                    },
                ))
                .await
                .map(drop)
        }) as Call
    };
    let (mut dsr, mut routing, mut tasks) = (app.dsr(), app.routing(), app.tasks());
    let table: Vec<Oversized> = vec![
        Oversized {
            field: "request_id",
            call: submit(|m| m.request_id = "7".repeat(10_000)),
        },
        Oversized {
            field: "subject.external_id",
            call: submit(|m| subject_of(m).external_id = "x".repeat(257)),
        },
        Oversized {
            field: "subject.email",
            call: submit(|m| subject_of(m).email = format!("{}@example.org", "a".repeat(250))),
        },
        Oversized {
            field: "subject.country",
            call: submit(|m| subject_of(m).country = "D".repeat(5_000)),
        },
        Oversized {
            field: "subject.subdivision",
            call: submit(|m| {
                let s = subject_of(m);
                s.country = "US".into();
                s.subdivision = format!("US-{}", "C".repeat(5_000));
            }),
        },
        Oversized {
            field: "details",
            call: submit(|m| m.details = "x".repeat(4_097)),
        },
        Oversized {
            field: "corrections",
            call: submit(|m| {
                m.r#type = v1::RequestType::Rectification.into();
                m.corrections.insert("k".repeat(129), "v".into());
            }),
        },
        Oversized {
            field: "corrections[last_name]",
            call: submit(|m| {
                m.r#type = v1::RequestType::Rectification.into();
                m.corrections.insert("last_name".into(), "v".repeat(1_025));
            }),
        },
        Oversized {
            field: "guardian.full_name",
            call: guardian(|g| g.full_name = "G".repeat(201)),
        },
        Oversized {
            field: "guardian.email",
            call: guardian(|g| g.email = format!("{}@example.org", "g".repeat(250))),
        },
        Oversized {
            field: "guardian.verification_method",
            call: guardian(|g| g.verification_method = "v".repeat(501)),
        },
        Oversized {
            field: "name",
            call: Box::pin({
                let token = controller.clone();
                let name = long(100_000);
                async move {
                    dsr.get_data_subject_request(authed(
                        &token,
                        v1::GetDataSubjectRequestRequest { name },
                    ))
                    .await
                    .map(drop)
                }
            }),
        },
        Oversized {
            field: "reason",
            call: Box::pin({
                let mut client = app.dsr();
                let (token, name, reason) = (controller.clone(), minor.clone(), long(2_001));
                async move {
                    client
                        .extend_deadline(authed(&token, v1::ExtendDeadlineRequest { name, reason }))
                        .await
                        .map(drop)
                }
            }),
        },
        Oversized {
            field: "reason",
            call: Box::pin({
                let mut client = app.dsr();
                let (token, name, reason) = (controller.clone(), minor.clone(), long(2_001));
                async move {
                    client
                        .cancel_data_subject_request(authed(
                            &token,
                            v1::CancelDataSubjectRequestRequest { name, reason },
                        ))
                        .await
                        .map(drop)
                }
            }),
        },
        Oversized {
            field: "reason",
            call: Box::pin({
                let mut client = app.dsr();
                let (token, name, reason) = (controller.clone(), minor.clone(), long(2_001));
                async move {
                    client
                        .request_identity_verification(authed(
                            &token,
                            v1::RequestIdentityVerificationRequest { name, reason },
                        ))
                        .await
                        .map(drop)
                }
            }),
        },
        Oversized {
            field: "method",
            call: Box::pin({
                let mut client = app.dsr();
                let (token, name, method) = (controller.clone(), minor.clone(), long(2_001));
                async move {
                    client
                        .record_identity_verification(authed(
                            &token,
                            v1::RecordIdentityVerificationRequest {
                                name,
                                method,
                                received_at: None,
                            },
                        ))
                        .await
                        .map(drop)
                }
            }),
        },
        Oversized {
            field: "question",
            call: Box::pin({
                let mut client = app.dsr();
                let (token, name, question) = (controller.clone(), minor.clone(), long(2_001));
                async move {
                    client
                        .request_clarification(authed(
                            &token,
                            v1::RequestClarificationRequest { name, question },
                        ))
                        .await
                        .map(drop)
                }
            }),
        },
        Oversized {
            field: "explanation",
            call: Box::pin({
                let mut client = app.dsr();
                let (token, name, explanation) = (controller.clone(), minor.clone(), long(4_001));
                async move {
                    client
                        .close_data_subject_request(authed(
                            &token,
                            v1::CloseDataSubjectRequestRequest {
                                name,
                                outcome: v1::Outcome::Refused.into(),
                                refusal_reason: v1::RefusalReason::Other.into(),
                                explanation,
                            },
                        ))
                        .await
                        .map(drop)
                }
            }),
        },
        Oversized {
            field: "page_token",
            call: Box::pin({
                let mut client = app.dsr();
                let (token, page_token) = (controller.clone(), long(100_000));
                async move {
                    client
                        .list_data_subject_requests(authed(
                            &token,
                            v1::ListDataSubjectRequestsRequest {
                                page_token,
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(drop)
                }
            }),
        },
        Oversized {
            field: "processor_id",
            call: Box::pin({
                let mut client = app.routing();
                let token = admin.clone();
                async move {
                    client
                        .create_processor(authed(
                            &token,
                            v1::CreateProcessorRequest {
                                processor_id: "p".repeat(65),
                                display_name: "P".into(),
                                contact: String::new(),
                            },
                        ))
                        .await
                        .map(drop)
                }
            }),
        },
        Oversized {
            field: "display_name",
            call: Box::pin({
                let mut client = app.routing();
                let token = admin.clone();
                async move {
                    client
                        .create_processor(authed(
                            &token,
                            v1::CreateProcessorRequest {
                                processor_id: "p".into(),
                                display_name: "P".repeat(201),
                                contact: String::new(),
                            },
                        ))
                        .await
                        .map(drop)
                }
            }),
        },
        Oversized {
            field: "contact",
            call: Box::pin({
                let mut client = app.routing();
                let token = admin.clone();
                async move {
                    client
                        .create_processor(authed(
                            &token,
                            v1::CreateProcessorRequest {
                                processor_id: "p".into(),
                                display_name: "P".into(),
                                contact: "c".repeat(255),
                            },
                        ))
                        .await
                        .map(drop)
                }
            }),
        },
        Oversized {
            field: "controller_id",
            call: Box::pin({
                let token = admin.clone();
                async move {
                    routing
                        .create_route(authed(
                            &token,
                            v1::CreateRouteRequest {
                                controller_id: "a".repeat(129),
                                processor_id: "crm".into(),
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(drop)
                }
            }),
        },
        Oversized {
            field: "reason",
            call: Box::pin({
                let mut client = app.tasks();
                let (token, name) = (processor.clone(), task.clone());
                async move {
                    client
                        .complete_task(authed(
                            &token,
                            v1::CompleteTaskRequest {
                                name,
                                lease_token: "t".into(),
                                outcome: v1::TaskOutcome::Failed.into(),
                                reason: "r".repeat(2_001),
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(drop)
                }
            }),
        },
        Oversized {
            field: "result_uri",
            call: Box::pin({
                let mut client = app.tasks();
                let (token, name) = (processor.clone(), task.clone());
                async move {
                    client
                        .complete_task(authed(
                            &token,
                            v1::CompleteTaskRequest {
                                name,
                                lease_token: "t".into(),
                                outcome: v1::TaskOutcome::Done.into(),
                                result_uri: "u".repeat(2_049),
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(drop)
                }
            }),
        },
        Oversized {
            field: "note",
            call: Box::pin({
                let mut client = app.tasks();
                let (token, name) = (processor.clone(), task.clone());
                async move {
                    client
                        .complete_task(authed(
                            &token,
                            v1::CompleteTaskRequest {
                                name,
                                lease_token: "t".into(),
                                outcome: v1::TaskOutcome::Done.into(),
                                note: "n".repeat(2_001),
                                ..Default::default()
                            },
                        ))
                        .await
                        .map(drop)
                }
            }),
        },
        Oversized {
            field: "reason",
            call: Box::pin({
                let (token, name) = (processor.clone(), task.clone());
                async move {
                    tasks
                        .release_task(authed(
                            &token,
                            v1::ReleaseTaskRequest {
                                name,
                                lease_token: "t".into(),
                                reason: "r".repeat(2_001),
                            },
                        ))
                        .await
                        .map(drop)
                }
            }),
        },
    ];
    let rows = table.len();
    for (row, Oversized { field, call }) in table.into_iter().enumerate() {
        let status = call.await.expect_err(field);
        assert_eq!(bad_fields(&status), vec![field], "row {row}: {status:?}");
    }
    assert_eq!(rows, 27);
    app.stop().await;
}

#[tokio::test]
async fn a_lease_that_would_overflow_is_refused_not_a_broken_connection() {
    let app = spawn_app().await;
    let token = app.token(Role::Processor, "crm");
    for (seconds, nanos) in [
        (i64::MAX, 1_000_000_000),
        (i64::MIN, -1_000_000_000),
        (i64::MAX, i32::MAX),
        (5, -1),
    ] {
        let status = app
            .tasks()
            .claim_tasks(authed(
                &token,
                v1::ClaimTasksRequest {
                    max_tasks: 1,
                    lease_duration: Some(prost_types::Duration { seconds, nanos }),
                },
            ))
            .await
            .expect_err("an impossible lease");
        assert_eq!(
            bad_fields(&status),
            vec!["lease_duration"],
            "({seconds}, {nanos})"
        );
    }
    app.stop().await;
}

#[test]
fn the_method_table_holds_every_unary_method_served() {
    let served = prost_types::FileDescriptorSet::decode(gdpr_intake::proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    let mut unary: Vec<String> = served
        .file
        .iter()
        .flat_map(|f| {
            f.service.iter().flat_map(move |s| {
                s.method
                    .iter()
                    .filter(|m| !m.server_streaming() && !m.client_streaming())
                    .map(move |m| format!("/{}.{}/{}", f.package(), s.name(), m.name()))
            })
        })
        .collect();
    unary.sort();
    let mut tested: Vec<String> = METHODS.iter().map(|(p, ..)| (*p).to_owned()).collect();
    tested.sort();
    assert_eq!(tested, unary);
}
