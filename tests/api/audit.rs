//! The hash-chained audit trail: tampering with `request_events` through
//! plain SQL, behind the store's back, is named by `audit::verify` (both
//! backends) and by the real binary's `audit verify` (SQLite).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use gdpr_intake::domain::jurisdiction::Jurisdiction;
use gdpr_intake::domain::pii::{DateOfBirth, Email};
use gdpr_intake::domain::request::{
    Actor, DataSubjectRequest, EventType, NewEvent, State, Subject,
};
use gdpr_intake::domain::sla::SlaMarks;
use gdpr_intake::store::audit::{self, Problem, Report};
use gdpr_intake::store::{self, AuditKey, Effects, InsertOutcome, Store, StoreConfig};
use jiff::civil::date;
use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use crate::db;

/// One test per check and backend; the PostgreSQL ones return early when
/// there is no PostgreSQL server (see [`db::postgres_config`]).
macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let (config, _dir) = crate::db::sqlite_config().await;
                    super::$check(config).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(config) = crate::db::postgres_config().await else {
                        return;
                    };
                    super::$check(config).await;
                }
            )*
        }
    };
}

on_both_backends!(
    intact_trails_verify_page_by_page,
    each_kind_of_tampering_is_named,
    a_trail_chained_under_two_keys_verifies_and_keeps_its_keys,
);

pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_microsecond(1_767_225_600_123_457).unwrap() + SignedDuration::from_secs(seconds)
}

fn actor() -> Actor {
    Actor {
        id: "operator-7".to_owned(),
        role: "controller".to_owned(),
    }
}

pub fn event(event_type: EventType, from: Option<State>, seconds: i64, reason: &str) -> NewEvent {
    NewEvent {
        event_type,
        time: at(seconds),
        actor: actor(),
        from_state: from,
        to_state: State::InProgress,
        reason: reason.to_owned(),
        task: None,
    }
}

/// A new request of `acme`, not stored yet (also for `pii.rs`).
pub fn sample_request() -> DataSubjectRequest {
    let jurisdiction = Jurisdiction::parse("DE", "").unwrap();
    let created = at(0);
    DataSubjectRequest {
        id: Uuid::new_v4(),
        controller_id: "acme".to_owned(),
        request_id: Uuid::new_v4(),
        request_type: gdpr_intake::domain::request::RequestType::Access,
        subject: Subject::new(
            "customer-42".to_owned(),
            jurisdiction.clone(),
            Some(Email::parse("ada@example.org").unwrap()),
            DateOfBirth::parse(1990, 12, 10, date(2026, 1, 1)).unwrap(),
        ),
        details: "all data you hold about me".to_owned(),
        corrections: BTreeMap::new(),
        state: State::InProgress,
        regime: jurisdiction.regime(),
        received_at: created,
        create_time: created,
        update_time: created,
        original_due_time: created + SignedDuration::from_hours(24 * 30),
        due_time: created + SignedDuration::from_hours(24 * 30),
        extension: None,
        guardian_consent: None,
        closure: None,
        close_time: None,
        cancellation_reason: None,
        unrouted: false,
        fingerprint: "fingerprint".to_owned(),
        version: 1,
        origin: None,
        sla: SlaMarks::default(),
        clock_start_time: created,
        clock_pauses: Vec::new(),
        duplicate_of: None,
    }
}

/// Stores a request of `acme` with a trail of four events, written by
/// three transactions (the middle one writes two).
async fn request_with_four_events(store: &Arc<dyn Store>) -> DataSubjectRequest {
    let mut request = sample_request();
    let submitted = event(EventType::Submitted, None, 0, "accepted");
    let outcome = store
        .insert_request(&request, &Effects::event(submitted))
        .await
        .unwrap();
    assert!(matches!(outcome, InsertOutcome::Created), "{outcome:?}");
    for (seconds, events) in [
        (
            10,
            vec![
                event(
                    EventType::NeedsAttention,
                    Some(State::InProgress),
                    10,
                    "second",
                ),
                event(
                    EventType::NeedsAttention,
                    Some(State::InProgress),
                    10,
                    "third",
                ),
            ],
        ),
        (
            20,
            vec![event(
                EventType::NeedsAttention,
                Some(State::InProgress),
                20,
                "fourth",
            )],
        ),
    ] {
        request.version += 1;
        request.update_time = at(seconds);
        let effects = Effects {
            events,
            ..Effects::default()
        };
        store
            .update_request(&request, request.version - 1, &effects)
            .await
            .unwrap();
    }
    request
}

async fn verify(store: &Arc<dyn Store>, key: &AuditKey) -> Report {
    audit::verify(store.as_ref(), key, 2).await.unwrap()
}

async fn intact_trails_verify_page_by_page(config: StoreConfig) {
    let store = store::connect(&config, true).await.unwrap();
    assert_eq!(
        verify(&store, config.audit_key.as_ref().expect("keyed")).await,
        Report::default()
    );
    for _ in 0..5 {
        request_with_four_events(&store).await;
    }
    let report = verify(&store, config.audit_key.as_ref().expect("keyed")).await;
    assert_eq!(
        report,
        Report {
            requests: 5,
            events: 20,
            finding: None
        }
    );
    // Another key cannot vouch for the trail.
    let report = verify(&store, &crate::db::test_keys().0).await;
    assert!(report.finding.is_some(), "{report:?}");
}

/// Runs `statements` with plain SQL on a connection of its own.
async fn tamper(config: &StoreConfig, statements: &[String]) {
    for statement in statements {
        db::execute_raw_owned(config, statement.clone()).await;
    }
}

/// The plain SQL that damages the trail of request `id` (`hash` is a
/// well-formed hash nobody computed).
type Tampering = fn(Uuid, &str) -> Vec<String>;

async fn each_kind_of_tampering_is_named(config: StoreConfig) {
    let store = store::connect(&config, true).await.unwrap();
    let forged_hash = "ab".repeat(32);
    let cases: Vec<(&str, Tampering, i64, Problem)> = vec![
        (
            "a field changed",
            |id, _| {
                vec![format!(
                    "UPDATE request_events SET reason = 'nothing happened' \
                     WHERE data_subject_request_id = '{id}' AND sequence = 2"
                )]
            },
            2,
            Problem::Altered,
        ),
        (
            "an actor changed",
            |id, _| {
                vec![format!(
                    "UPDATE request_events SET actor_id = 'someone-else' \
                     WHERE data_subject_request_id = '{id}' AND sequence = 4"
                )]
            },
            4,
            Problem::Altered,
        ),
        (
            "an event deleted",
            |id, _| {
                vec![format!(
                    "DELETE FROM request_events \
                     WHERE data_subject_request_id = '{id}' AND sequence = 3"
                )]
            },
            3,
            Problem::Removed,
        ),
        (
            "the last event deleted",
            |id, _| {
                vec![format!(
                    "DELETE FROM request_events \
                     WHERE data_subject_request_id = '{id}' AND sequence = 4"
                )]
            },
            3,
            Problem::TruncatedAfter,
        ),
        (
            "a forged event appended",
            |id, hash| {
                vec![format!(
                    "INSERT INTO request_events (data_subject_request_id, controller_id, \
                     sequence, event_type, event_time, actor_id, actor_role, from_state, \
                     to_state, reason, task_id, hash) VALUES ('{id}', 'acme', 5, 'closed', \
                     1767225700000000, 'operator-7', 'controller', 'in_progress', \
                     'completed', 'done', NULL, '{hash}')"
                )]
            },
            5,
            Problem::Inserted,
        ),
        (
            "two events' sequences swapped",
            |id, _| {
                let set = |from: i64, to: i64| {
                    format!(
                        "UPDATE request_events SET sequence = {to} \
                         WHERE data_subject_request_id = '{id}' AND sequence = {from}"
                    )
                };
                // Through a free sequence: the primary key is checked row
                // by row in PostgreSQL.
                vec![set(2, 100), set(3, 2), set(100, 3)]
            },
            2,
            Problem::Reordered { was: 3 },
        ),
    ];
    for (what, statements, sequence, problem) in cases {
        let request = request_with_four_events(&store).await;
        let report = verify(&store, config.audit_key.as_ref().expect("keyed")).await;
        assert_eq!(report.finding, None, "{what}: intact before");
        tamper(&config, &statements(request.id, &forged_hash)).await;
        let finding = verify(&store, config.audit_key.as_ref().expect("keyed"))
            .await
            .finding
            .unwrap_or_else(|| panic!("{what}: not caught"));
        assert_eq!(finding.request, request.name(), "{what}");
        assert_eq!(
            (finding.sequence, finding.problem),
            (sequence, problem),
            "{what}"
        );
        // Out of the way of the next case: a request gone with its whole
        // trail is beyond what the chain can tell.
        tamper(
            &config,
            &[
                format!(
                    "DELETE FROM request_events WHERE data_subject_request_id = '{}'",
                    request.id
                ),
                format!(
                    "DELETE FROM data_subject_requests WHERE id = '{}'",
                    request.id
                ),
            ],
        )
        .await;
    }
}

/// Random key bytes for an audit ring.
fn audit_secret() -> [u8; 32] {
    use rand_core::{OsRng, RngCore};
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    key
}

/// A trail begun under one audit key and continued under the next, as a
/// rotation leaves it: it verifies with both in the ring (either first),
/// tampering is still caught at the right event under either key, a ring
/// without the old key names it, and a replica whose ring drops it is
/// refused with the trail that needs it.
async fn a_trail_chained_under_two_keys_verifies_and_keeps_its_keys(config: StoreConfig) {
    let (old, new) = (audit_secret(), audit_secret());
    let ring = |keys: &[&[u8; 32]]| {
        let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        AuditKey::ring(&keys).expect("ring")
    };
    let with = |key: AuditKey| {
        let mut c = config.clone();
        c.audit_key = Some(key);
        c
    };
    let (before, after) = (ring(&[&old]), ring(&[&new, &old]));
    let old_id = before.primary_id().to_owned();

    // Events 1 to 3 under the old key, 4 (and the head) under the new one.
    let first = store::connect(&with(before.clone()), true).await.unwrap();
    store::keys::check_rings(first.as_ref(), at(0))
        .await
        .unwrap();
    let mut request = sample_request();
    first
        .insert_request(
            &request,
            &Effects::event(event(EventType::Submitted, None, 0, "accepted")),
        )
        .await
        .unwrap();
    request.version += 1;
    let two = Effects {
        events: vec![
            event(EventType::NeedsAttention, Some(State::InProgress), 10, "2"),
            event(EventType::NeedsAttention, Some(State::InProgress), 10, "3"),
        ],
        ..Effects::default()
    };
    first
        .update_request(&request, request.version - 1, &two)
        .await
        .unwrap();
    let second = store::connect(&with(after.clone()), true).await.unwrap();
    store::keys::check_rings(second.as_ref(), at(30))
        .await
        .unwrap();
    request.version += 1;
    let four = Effects {
        events: vec![event(
            EventType::NeedsAttention,
            Some(State::InProgress),
            20,
            "4",
        )],
        ..Effects::default()
    };
    second
        .update_request(&request, request.version - 1, &four)
        .await
        .unwrap();

    for verifying in [after.clone(), ring(&[&old, &new])] {
        let report = verify(&second, &verifying).await;
        assert_eq!((report.requests, report.events), (1, 4));
        assert_eq!(report.finding, None, "{verifying:?}");
    }
    let finding = verify(&second, &ring(&[&new]))
        .await
        .finding
        .expect("caught");
    assert_eq!(
        (finding.sequence, finding.problem),
        (1, Problem::UnknownKey { id: old_id.clone() })
    );

    // A replica whose ring drops the old key is refused, naming the trail.
    let dropped = store::connect(&with(ring(&[&new])), true).await.unwrap();
    let refused = store::keys::check_rings(dropped.as_ref(), at(60))
        .await
        .expect_err("the old key is still needed");
    let message = refused.to_string();
    assert!(
        message.contains(&old_id) && message.contains(&request.name()),
        "{message}"
    );

    for (sequence, reason) in [
        (4, "changed under the new key"),
        (2, "changed under the old"),
    ] {
        tamper(
            &config,
            &[format!(
                "UPDATE request_events SET reason = '{reason}' \
                 WHERE data_subject_request_id = '{}' AND sequence = {sequence}",
                request.id
            )],
        )
        .await;
        let finding = verify(&second, &after).await.finding.expect("caught");
        assert_eq!(
            (finding.sequence, finding.problem),
            (sequence, Problem::Altered),
            "{reason}"
        );
    }
}

fn run_verify(data_dir: &Path, key_file: Option<&Path>) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gdpr-intake"));
    command
        .args(["audit", "verify", "--data-dir"])
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("GDPR_INTAKE_AUDIT_KEY_FILE");
    if let Some(key_file) = key_file {
        command.arg("--audit-key-file").arg(key_file);
    }
    command.output().expect("the binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_names_a_tampered_event_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // The development key `serve` would have created.
    let (key, created) = AuditKey::ensure_dev(&data_dir).unwrap();
    assert!(created);
    let mut config = crate::db::keyed(StoreConfig::sqlite(&data_dir));
    config.audit_key = Some(key);
    let store = store::connect(&config, true).await.unwrap();
    let request = request_with_four_events(&store).await;

    let intact = run_verify(&data_dir, None);
    let stdout = String::from_utf8_lossy(&intact.stdout);
    assert!(intact.status.success(), "{intact:?}");
    assert!(
        stdout.contains("audit trail intact: 1 requests, 4 events"),
        "{stdout}"
    );

    tamper(
        &config,
        &[format!(
            "UPDATE request_events SET event_time = event_time + 1 \
             WHERE data_subject_request_id = '{}' AND sequence = 3",
            request.id
        )],
    )
    .await;
    let broken = run_verify(&data_dir, None);
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert_eq!(broken.status.code(), Some(2), "{broken:?}");
    assert!(
        stderr.contains(&format!("{}: event 3 was altered", request.name())),
        "{stderr}"
    );

    // Another key finds the trail broken at once; no key at all is a
    // configuration error, not a finding.
    let other = dir.path().join("other.key");
    AuditKey::ensure_dev(dir.path()).unwrap();
    std::fs::rename(dir.path().join(audit::DEV_AUDIT_KEY_FILE), &other).unwrap();
    let wrong = run_verify(&data_dir, Some(&other));
    assert_eq!(wrong.status.code(), Some(2), "{wrong:?}");
    let missing = run_verify(&data_dir, Some(&dir.path().join("missing.key")));
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("--audit-key-file"), "{stderr}");
}
