//! The restore drill. A backup taken while the service runs is restored
//! into a fresh data directory (SQLite: `gdpr-intake backup` and
//! `gdpr-intake restore`) or a fresh database (PostgreSQL: `pg_dump` and
//! `pg_restore`, as docs/operations.md gives them), a server is started on
//! it with the same keys, and it must hold the same requests, tasks and
//! events as when the backup was taken, read their personal data, pass
//! `gdpr-intake audit verify`, honour the old request ids and accept new
//! submissions.

use std::path::Path;
use std::process::{Command, Output};

use gdpr_intake::auth::Role;
use gdpr_intake::proto::v1;
use gdpr_intake::store::{AuditKey, DataKey, StoreConfig, audit};
use tempfile::TempDir;

use crate::helpers::*;
use crate::overload::spawn_with;

/// What a client sees of the data: every request, its trail, and every
/// task of each processor.
#[derive(Debug, PartialEq)]
struct Seen {
    requests: Vec<v1::DataSubjectRequest>,
    trails: Vec<Vec<v1::RequestEvent>>,
    tasks: Vec<Vec<v1::Task>>,
}

const PROCESSORS: [&str; 2] = ["crm", "mailer"];

/// Routes, five requests (one a minor's, waiting for consent), one task
/// completed and one held under a lease; the submissions, for replays.
async fn populate(app: &TestApp) -> Vec<v1::SubmitDataSubjectRequestRequest> {
    app.route("acme", "crm", &[], 72).await;
    app.route("acme", "mailer", &[v1::RequestType::Erasure], 24)
        .await;
    let token = app.token(Role::Controller, "acme");
    let mut submissions = Vec::new();
    for (i, t) in [
        v1::RequestType::Access,
        v1::RequestType::Erasure,
        v1::RequestType::Erasure,
        v1::RequestType::Portability,
    ]
    .into_iter()
    .enumerate()
    {
        let mut m = submission();
        m.r#type = t.into();
        m.details = format!("request {i} of the drill");
        submissions.push(m);
    }
    let mut minor = submission();
    minor.subject = Some(minor_subject());
    submissions.push(minor);
    for m in &submissions {
        app.dsr()
            .submit_data_subject_request(authed(&token, m.clone()))
            .await
            .expect("submitted");
    }
    let claim = |processor: &'static str| {
        let token = app.token(Role::Processor, processor);
        async move {
            app.tasks()
                .claim_tasks(authed(
                    &token,
                    v1::ClaimTasksRequest {
                        max_tasks: 1,
                        lease_duration: Some(prost_types::Duration {
                            seconds: 600,
                            nanos: 0,
                        }),
                    },
                ))
                .await
                .expect("claimed")
                .into_inner()
                .tasks
                .pop()
                .expect("a task to claim")
        }
    };
    let done = claim("crm").await;
    app.tasks()
        .complete_task(authed(
            &app.token(Role::Processor, "crm"),
            v1::CompleteTaskRequest {
                name: done.name,
                lease_token: done.lease_token,
                outcome: v1::TaskOutcome::Done.into(),
                reason: String::new(),
                result_uri: "s3://exports/drill.zip".to_owned(),
                note: String::new(),
            },
        ))
        .await
        .expect("completed");
    claim("mailer").await;
    submissions
}

async fn seen(app: &TestApp) -> Seen {
    let token = app.token(Role::Controller, "acme");
    let requests = app
        .dsr()
        .list_data_subject_requests(authed(
            &token,
            v1::ListDataSubjectRequestsRequest {
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .expect("listed")
        .into_inner()
        .data_subject_requests;
    let mut full = Vec::new();
    let mut trails = Vec::new();
    for r in &requests {
        // Get: the personal data, unsealed with the data key.
        full.push(
            app.dsr()
                .get_data_subject_request(authed(
                    &token,
                    v1::GetDataSubjectRequestRequest {
                        name: r.name.clone(),
                    },
                ))
                .await
                .expect("read")
                .into_inner()
                .data_subject_request
                .expect("request"),
        );
        trails.push(
            app.dsr()
                .list_request_events(authed(
                    &token,
                    v1::ListRequestEventsRequest {
                        name: r.name.clone(),
                        page_size: 100,
                        page_token: String::new(),
                    },
                ))
                .await
                .expect("trail")
                .into_inner()
                .events,
        );
    }
    let mut tasks = Vec::new();
    for processor in PROCESSORS {
        tasks.push(
            app.tasks()
                .list_tasks(authed(
                    &app.token(Role::Processor, processor),
                    v1::ListTasksRequest {
                        page_size: 100,
                        ..Default::default()
                    },
                ))
                .await
                .expect("tasks")
                .into_inner()
                .tasks,
        );
    }
    Seen {
        requests: full,
        trails,
        tasks,
    }
}

/// Checks the restored app against what was seen at backup time, runs
/// `audit verify` on its database, and submits: a replay and a new one.
async fn check_restored(
    app: &TestApp,
    before: &Seen,
    submissions: &[v1::SubmitDataSubjectRequestRequest],
    verify: Output,
) {
    let after = seen(app).await;
    assert_eq!(after.requests.len(), 5);
    assert_eq!(
        after
            .requests
            .iter()
            .map(|r| r.subject.clone())
            .collect::<Vec<_>>(),
        before
            .requests
            .iter()
            .map(|r| r.subject.clone())
            .collect::<Vec<_>>(),
        "personal data readable with the same data key"
    );
    assert!(
        after
            .requests
            .iter()
            .all(|r| r.subject.as_ref().is_some_and(|s| !s.email.is_empty()))
    );
    assert_eq!(&after, before);
    assert_eq!(after.tasks.iter().map(Vec::len).sum::<usize>(), 6);

    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{verify:?}");
    assert!(
        stdout.contains("audit trail intact: 5 requests"),
        "{stdout}"
    );

    let token = app.token(Role::Controller, "acme");
    let replay = app
        .dsr()
        .submit_data_subject_request(authed(&token, submissions[0].clone()))
        .await
        .expect("a replay is answered")
        .into_inner()
        .data_subject_request
        .expect("request");
    assert_eq!(replay, before.requests_named(&replay.name));
    let fresh = app
        .dsr()
        .submit_data_subject_request(authed(&token, submission()))
        .await
        .expect("a new submission is accepted")
        .into_inner()
        .data_subject_request
        .expect("request");
    assert!(before.requests.iter().all(|r| r.name != fresh.name));
}

impl Seen {
    fn requests_named(&self, name: &str) -> v1::DataSubjectRequest {
        self.requests
            .iter()
            .find(|r| r.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} was not stored before the backup"))
    }
}

/// Keys written to files in `dir`, as an operator keeps them: the same
/// files serve the original and the restored service.
fn keys(dir: &Path) -> (AuditKey, DataKey) {
    let (audit, _) = AuditKey::ensure_dev(dir).expect("audit key");
    let (data, _) = DataKey::ensure_dev(dir).expect("data key");
    (audit, data)
}

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gdpr-intake"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("GDPR_INTAKE_DATA_DIR")
        .env_remove("GDPR_INTAKE_AUDIT_KEY_FILE")
        .env_remove("GDPR_INTAKE_DATA_KEY_FILE")
        .output()
        .expect("the binary runs")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_taken_while_serving_restores_into_a_fresh_data_directory() {
    let key_dir = tempfile::tempdir().expect("temp dir");
    let (audit_key, data_key) = keys(key_dir.path());
    let source = tempfile::tempdir().expect("temp dir");
    let config = StoreConfig::sqlite(source.path()).with_keys(audit_key.clone(), data_key.clone());
    let (app, _) = spawn_with(config, source, |_| {}).await;
    let submissions = populate(&app).await;
    let before = seen(&app).await;

    let work = tempfile::tempdir().expect("temp dir");
    let file = work.path().join("gdpr-intake.backup");
    let out = cli(&[
        "backup",
        "--to",
        path(&file),
        "--data-dir",
        path(app.data_dir.path()),
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("5 requests, 6 tasks"),
        "backup summary: {stdout}"
    );
    // Written after the backup: not in what is restored.
    app.dsr()
        .submit_data_subject_request(authed(&app.token(Role::Controller, "acme"), submission()))
        .await
        .expect("submitted after the backup");
    app.stop().await;

    let restored: TempDir = tempfile::tempdir().expect("temp dir");
    let out = cli(&[
        "restore",
        "--from",
        path(&file),
        "--data-dir",
        path(restored.path()),
    ]);
    assert!(out.status.success(), "{out:?}");
    // Never over a database.
    let again = cli(&[
        "restore",
        "--from",
        path(&file),
        "--data-dir",
        path(restored.path()),
    ]);
    assert!(!again.status.success(), "{again:?}");

    let verify = cli(&[
        "audit",
        "verify",
        "--data-dir",
        path(restored.path()),
        "--audit-key-file",
        path(&key_dir.path().join(audit::DEV_AUDIT_KEY_FILE)),
    ]);
    let config = StoreConfig::sqlite(restored.path()).with_keys(audit_key, data_key);
    let (app, _) = spawn_with(config, restored, |_| {}).await;
    check_restored(&app, &before, &submissions, verify).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_dump_restores_into_a_fresh_database() {
    let Some(source) = crate::db::postgres_config().await else {
        return;
    };
    let Some(target) = crate::db::postgres_config().await else {
        return;
    };
    let url = |c: &StoreConfig| c.database_url.clone().expect("a postgres url");
    let key_dir = tempfile::tempdir().expect("temp dir");
    let (audit_key, data_key) = keys(key_dir.path());
    let source = source.with_keys(audit_key.clone(), data_key.clone());
    let (app, _) = spawn_with(source.clone(), tempfile::tempdir().expect("dir"), |_| {}).await;
    let submissions = populate(&app).await;
    let before = seen(&app).await;

    // The documented procedure, while the service runs.
    let work = tempfile::tempdir().expect("temp dir");
    let file = work.path().join("gdpr-intake.dump");
    let dump = Command::new("pg_dump")
        .args(["--format=custom", "--no-owner", "--file"])
        .arg(&file)
        .arg(url(&source))
        .output()
        .expect("pg_dump runs (install the PostgreSQL client tools)");
    assert!(dump.status.success(), "{dump:?}");
    app.stop().await;
    let restore = Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "--dbname"])
        .arg(url(&target))
        .arg(&file)
        .output()
        .expect("pg_restore runs");
    assert!(restore.status.success(), "{restore:?}");

    let verify = cli(&[
        "audit",
        "verify",
        "--database-url",
        &url(&target),
        "--audit-key-file",
        path(&key_dir.path().join(audit::DEV_AUDIT_KEY_FILE)),
    ]);
    let target = target.with_keys(audit_key, data_key);
    let (app, _) = spawn_with(target, tempfile::tempdir().expect("dir"), |_| {}).await;
    check_restored(&app, &before, &submissions, verify).await;
    app.stop().await;

    // `backup` says where PostgreSQL's own tools are documented.
    let out = cli(&[
        "backup",
        "--to",
        path(&work.path().join("x")),
        "--database-url",
        &url(&source),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pg_dump"),
        "{out:?}"
    );
}
