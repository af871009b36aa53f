//! The compliance report against figures worked out by hand on a seeded
//! data set, on both backends: counts by outcome and refusal reason, a
//! request closed exactly on its deadline (on time) and one a day late,
//! medians over an even and an odd number of closings, extensions, open
//! and overdue now, another tenant's and an earlier month's requests left
//! out, the regime filter and the CCPA layout. Then the RPC's access rules
//! and the binary's CSV.

use std::collections::BTreeMap;
use std::sync::Arc;

use gdpr_intake::auth::Role;
use gdpr_intake::domain::jurisdiction::{Jurisdiction, Regime};
use gdpr_intake::domain::request::{
    Closure, DataSubjectRequest, EventType, Extension, Outcome, RefusalReason, RequestType, State,
};
use gdpr_intake::proto::google::r#type::Date as ProtoDate;
use gdpr_intake::proto::v1;
use gdpr_intake::service::reporting::{self, Report, ReportRequest, ReportRow};
use gdpr_intake::store::{self, Effects, Store, StoreConfig};
use jiff::civil::date;
use jiff::{SignedDuration, Timestamp};
use tonic::Code;

use crate::helpers::*;

fn utc(y: i16, m: i8, d: i8, h: i8) -> Timestamp {
    jiff::tz::TimeZone::UTC
        .to_timestamp(date(y, m, d).at(h, 0, 0, 0))
        .expect("a time")
}

/// How a seeded request ends.
#[derive(Clone, Copy)]
enum End {
    Open,
    Completed(Timestamp),
    Refused(Timestamp, RefusalReason),
    Cancelled(Timestamp),
    Expired(Timestamp),
}

struct Seed {
    tenant: &'static str,
    kind: RequestType,
    regime: Regime,
    received: Timestamp,
    due: Timestamp,
    end: End,
    extended: bool,
}

fn seed(kind: RequestType, received: Timestamp, due: Timestamp, end: End) -> Seed {
    Seed {
        tenant: "acme",
        kind,
        regime: Regime::Gdpr,
        received,
        due,
        end,
        extended: false,
    }
}

/// Stores `s`: inserted open, then moved to its end.
async fn store_seed(store: &Arc<dyn Store>, s: &Seed) {
    let mut r: DataSubjectRequest = crate::audit::sample_request();
    r.controller_id = s.tenant.to_owned();
    r.request_type = s.kind;
    r.regime = s.regime;
    if s.regime == Regime::Ccpa {
        r.subject.jurisdiction = Jurisdiction::parse("US", "US-CA").expect("California");
    }
    r.received_at = s.received;
    r.create_time = s.received;
    r.update_time = s.received;
    r.original_due_time = s.due;
    r.due_time = s.due;
    let submitted = crate::audit::event(EventType::Submitted, None, 0, "accepted");
    store
        .insert_request(&r, &Effects::event(submitted))
        .await
        .expect("inserted");
    let version = r.version;
    r.version += 1;
    if s.extended {
        r.extension = Some(Extension {
            reason: "complex request".to_owned(),
            extend_time: s.received + SignedDuration::from_hours(24),
            extended_by: "operator-7".to_owned(),
        });
    }
    let close = |r: &mut DataSubjectRequest, state, at: Timestamp| {
        r.state = state;
        r.close_time = Some(at);
        r.update_time = at;
    };
    match s.end {
        End::Open => {}
        End::Completed(at) => {
            close(&mut r, State::Completed, at);
            r.closure = Some(Closure {
                outcome: Outcome::Completed,
                refusal_reason: None,
                explanation: "done".to_owned(),
            });
        }
        End::Refused(at, reason) => {
            close(&mut r, State::Refused, at);
            r.closure = Some(Closure {
                outcome: Outcome::Refused,
                refusal_reason: Some(reason),
                explanation: "refused".to_owned(),
            });
        }
        End::Cancelled(at) => {
            close(&mut r, State::Cancelled, at);
            r.cancellation_reason = Some("withdrawn".to_owned());
        }
        End::Expired(at) => close(&mut r, State::Expired, at),
    }
    store
        .update_request(&r, version, &Effects::default())
        .await
        .expect("updated");
}

/// The data set: March 2026, reported on 15 April.
fn seeds() -> Vec<Seed> {
    use RequestType::{Access, Erasure, Rectification};
    let far = utc(2026, 6, 1, 0);
    let mut all = vec![
        // Access: 3, 10, 31 (closed exactly at its deadline) and 32 days
        // (a day late); one open and overdue, one open, extended.
        seed(
            Access,
            utc(2026, 3, 1, 10),
            utc(2026, 3, 31, 0),
            End::Completed(utc(2026, 3, 4, 9)),
        ),
        seed(
            Access,
            utc(2026, 3, 2, 8),
            utc(2026, 4, 2, 0),
            End::Completed(utc(2026, 3, 12, 8)),
        ),
        seed(
            Access,
            utc(2026, 3, 3, 8),
            utc(2026, 4, 3, 23),
            End::Refused(utc(2026, 4, 3, 23), RefusalReason::Excessive),
        ),
        seed(
            Access,
            utc(2026, 3, 5, 12),
            utc(2026, 4, 5, 12),
            End::Completed(utc(2026, 4, 6, 12)),
        ),
        seed(Access, utc(2026, 3, 10, 8), utc(2026, 4, 10, 0), End::Open),
        Seed {
            extended: true,
            ..seed(Access, utc(2026, 3, 20, 8), utc(2026, 4, 20, 0), End::Open)
        },
        // Erasure: 2, 5 and 1 days; one cancelled, one expired.
        seed(
            Erasure,
            utc(2026, 3, 1, 8),
            far,
            End::Completed(utc(2026, 3, 3, 8)),
        ),
        seed(
            Erasure,
            utc(2026, 3, 2, 8),
            far,
            End::Completed(utc(2026, 3, 7, 8)),
        ),
        seed(
            Erasure,
            utc(2026, 3, 3, 8),
            far,
            End::Refused(utc(2026, 3, 4, 8), RefusalReason::ManifestlyUnfounded),
        ),
        seed(
            Erasure,
            utc(2026, 3, 4, 8),
            far,
            End::Cancelled(utc(2026, 3, 5, 8)),
        ),
        seed(
            Erasure,
            utc(2026, 3, 6, 8),
            far,
            End::Expired(utc(2026, 3, 20, 8)),
        ),
        // A CCPA rectification, 5 days.
        Seed {
            regime: Regime::Ccpa,
            ..seed(
                Rectification,
                utc(2026, 3, 15, 8),
                far,
                End::Completed(utc(2026, 3, 20, 8)),
            )
        },
        // Left out: received in February; another tenant's.
        seed(
            Access,
            utc(2026, 2, 28, 8),
            far,
            End::Completed(utc(2026, 3, 2, 8)),
        ),
    ];
    all.push(Seed {
        tenant: "globex",
        ..seed(Access, utc(2026, 3, 10, 8), far, End::Open)
    });
    all
}

fn now() -> Timestamp {
    utc(2026, 4, 15, 12)
}

fn march(regime: Option<Regime>, ccpa_7102: bool) -> ReportRequest {
    ReportRequest {
        start: date(2026, 3, 1),
        end: date(2026, 3, 31),
        regime,
        controller_id: None,
        ccpa_7102,
    }
}

#[allow(clippy::too_many_arguments, reason = "one row of the expected table")]
fn row(
    group: &str,
    received: i64,
    (completed, refused, cancelled, expired): (i64, i64, i64, i64),
    reasons: &[(&str, i64)],
    on_time: i64,
    (median, mean): (Option<f64>, Option<f64>),
    extended: i64,
    (open, overdue): (i64, i64),
) -> ReportRow {
    ReportRow {
        group: group.to_owned(),
        received,
        completed,
        refused,
        refused_by_reason: reasons
            .iter()
            .map(|(r, n)| ((*r).to_owned(), *n))
            .collect::<BTreeMap<_, _>>(),
        cancelled,
        expired,
        duplicates: 0,
        closed_within_deadline: on_time,
        median_days_to_close: median,
        mean_days_to_close: mean,
        extensions_granted: extended,
        open_now: open,
        overdue_now: overdue,
    }
}

fn access(group: &str) -> ReportRow {
    row(
        group,
        6,
        (3, 1, 0, 0),
        &[("excessive", 1)],
        3,
        (Some(20.5), Some(19.0)),
        1,
        (2, 1),
    )
}

fn erasure(group: &str) -> ReportRow {
    row(
        group,
        5,
        (2, 1, 1, 1),
        &[("manifestly_unfounded", 1)],
        3,
        (Some(2.0), Some(8.0 / 3.0)),
        0,
        (0, 0),
    )
}

fn rectification(group: &str) -> ReportRow {
    row(
        group,
        1,
        (1, 0, 0, 0),
        &[],
        1,
        (Some(5.0), Some(5.0)),
        0,
        (0, 0),
    )
}

async fn report(store: &Arc<dyn Store>, request: &ReportRequest) -> Report {
    reporting::report(store.as_ref(), Some("acme".to_owned()), request, now())
        .await
        .expect("a report")
}

async fn the_report_matches_the_figures_worked_out_by_hand(config: StoreConfig) {
    let store = store::connect(&config, true).await.expect("store");
    for s in seeds() {
        store_seed(&store, &s).await;
    }

    let all = report(&store, &march(None, false)).await;
    assert_eq!(
        all.rows,
        vec![
            access("access"),
            erasure("erasure"),
            rectification("rectification")
        ]
    );
    // All closings: 1, 2, 3, 5, 5, 10, 31, 32 days.
    assert_eq!(
        all.total,
        row(
            "total",
            12,
            (6, 2, 1, 1),
            &[("excessive", 1), ("manifestly_unfounded", 1)],
            7,
            (Some(5.0), Some(89.0 / 8.0)),
            1,
            (2, 1),
        )
    );
    assert_eq!(all.rows[0].within_deadline_percent(), Some(75.0));
    assert_eq!(all.total.within_deadline_percent(), Some(87.5));

    let gdpr = report(&store, &march(Some(Regime::Gdpr), false)).await;
    assert_eq!(gdpr.rows, vec![access("access"), erasure("erasure")]);
    assert_eq!(gdpr.total.received, 11);

    let ccpa = report(&store, &march(None, true)).await;
    assert_eq!(
        ccpa.rows,
        vec![
            rectification("to correct"),
            erasure("to delete"),
            access("to know")
        ]
    );

    // An empty period: a total of zeros, no averages.
    let mut quiet = march(None, false);
    quiet.start = date(2025, 1, 1);
    quiet.end = date(2025, 1, 31);
    let empty = report(&store, &quiet).await;
    assert!(empty.rows.is_empty());
    assert_eq!(
        (empty.total.received, empty.total.median_days_to_close),
        (0, None)
    );

    // The period's checks.
    let mut backwards = march(None, false);
    backwards.end = date(2026, 2, 1);
    let refused = reporting::report(store.as_ref(), None, &backwards, now())
        .await
        .expect_err("end before start");
    assert!(matches!(
        refused,
        gdpr_intake::service::ServiceError::InvalidArgument(_)
    ));
}

#[tokio::test]
async fn sqlite_the_report_matches_the_figures_worked_out_by_hand() {
    let (config, _dir) = crate::db::sqlite_config().await;
    the_report_matches_the_figures_worked_out_by_hand(config).await;
}

#[tokio::test]
async fn postgres_the_report_matches_the_figures_worked_out_by_hand() {
    let Some(config) = crate::db::postgres_config().await else {
        return;
    };
    the_report_matches_the_figures_worked_out_by_hand(config).await;
}

fn proto_date(y: i32, m: i32, d: i32) -> Option<ProtoDate> {
    Some(ProtoDate {
        year: y,
        month: m,
        day: d,
    })
}

/// The RPC: a controller's and an auditor's own tenant, an admin's named
/// one; another tenant refused; bad dates named; and the binary's CSV.
#[tokio::test]
async fn the_rpc_keeps_tenants_apart_and_the_binary_writes_csv() {
    let dir = tempfile::tempdir().expect("dir");
    let (audit, _) = gdpr_intake::store::AuditKey::ensure_dev(dir.path()).expect("key");
    let (data, _) = gdpr_intake::store::DataKey::ensure_dev(dir.path()).expect("key");
    let config = StoreConfig::sqlite(dir.path()).with_keys(audit, data);
    let store = store::connect(&config, true).await.expect("store");
    for s in seeds() {
        store_seed(&store, &s).await;
    }
    let (app, _) =
        crate::overload::spawn_with(config, tempfile::tempdir().expect("dir"), |_| {}).await;
    let mut client = v1::reporting_service_client::ReportingServiceClient::new(app.channel.clone());
    let ask = |controller: &str| v1::GetComplianceReportRequest {
        start_date: proto_date(2026, 3, 1),
        end_date: proto_date(2026, 3, 31),
        regime: v1::Regime::Unspecified.into(),
        controller_id: controller.to_owned(),
        ccpa_7102: false,
    };
    for token in [
        app.token(Role::Controller, "acme"),
        app.token(Role::Auditor, "acme"),
    ] {
        let got = client
            .get_compliance_report(authed(&token, ask("")))
            .await
            .expect("own tenant")
            .into_inner();
        let total = got.total.expect("total");
        assert_eq!((total.received, total.open_now), (12, 2));
        assert_eq!(got.rows.len(), 3);
        assert_eq!(got.rows[0].median_days_to_close, Some(20.5));
        assert_eq!(got.rows[0].closed_within_deadline_percent, Some(75.0));
    }
    let globex = client
        .get_compliance_report(authed(&app.token(Role::Controller, "globex"), ask("")))
        .await
        .expect("its own")
        .into_inner();
    assert_eq!(globex.total.expect("total").received, 1);
    let other = client
        .get_compliance_report(authed(&app.token(Role::Auditor, "globex"), ask("acme")))
        .await
        .expect_err("another tenant's");
    assert_eq!(other.code(), Code::NotFound, "{other:?}");
    let admin = client
        .get_compliance_report(authed(&app.token(Role::Admin, ""), ask("")))
        .await
        .expect_err("an admin names the controller");
    assert_status(&admin, Code::InvalidArgument, None);
    assert!(bad_fields(&admin).contains(&"controller_id".to_owned()));
    let named = client
        .get_compliance_report(authed(&app.token(Role::Admin, ""), ask("acme")))
        .await
        .expect("the controller named")
        .into_inner();
    assert_eq!(named.total.expect("total").received, 12);
    let mut bad = ask("");
    bad.end_date = proto_date(2026, 2, 30);
    let bad = client
        .get_compliance_report(authed(&app.token(Role::Controller, "acme"), bad))
        .await
        .expect_err("no such day");
    assert!(bad_fields(&bad).contains(&"end_date".to_owned()));
    let processor = client
        .get_compliance_report(authed(&app.token(Role::Processor, "crm"), ask("")))
        .await
        .expect_err("processors see no reports");
    assert_eq!(processor.code(), Code::PermissionDenied);
    app.stop().await;

    // The binary, every controller, the CCPA layout, as CSV.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gdpr-intake"))
        .args(["report", "--from", "2026-03-01", "--to", "2026-03-31"])
        .args(["--ccpa-7102", "--format", "csv", "--data-dir"])
        .arg(dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{out:?}");
    let csv = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(
        lines[0].starts_with("group,received,completed,refused,"),
        "{csv}"
    );
    assert_eq!(lines.len(), 5, "{csv}");
    // Every controller: globex's open access request counts too; the
    // binary's now is today's, when every open request is overdue.
    assert_eq!(
        lines[3], "to know,7,3,1,0,1,0,0,0,0,0,0,3,75.00,20.50,19.00,1,3,3",
        "{csv}"
    );
    assert!(lines[4].starts_with("total,13,6,2,1,1,"), "{csv}");
}
