//! Evidence bundles through the real server and the real binary, on both
//! backends: an auditor's export verifies with the published public key
//! alone (`audit verify-bundle`); an altered, removed or inserted event is
//! named; a bundle checked against another key set fails naming its key;
//! personal data is left out unless asked for; a controller may not
//! export, another tenant's auditor finds nothing, an admin exports any
//! tenant's; a request whose stored trail was tampered with is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gdpr_intake::auth::Role;
use gdpr_intake::proto::v1;
use gdpr_intake::store::StoreConfig;
use tonic::Code;

use crate::helpers::*;
use crate::keys::submit_with_email;
use crate::overload::spawn_with;

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gdpr-intake"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("GDPR_INTAKE_EVIDENCE_KEY_FILE");
    command
}

/// `audit verify-bundle bundle --public-keys keys`.
fn verify_bundle(bundle: &Path, keys: &Path) -> Output {
    binary()
        .args(["audit", "verify-bundle"])
        .arg(bundle)
        .arg("--public-keys")
        .arg(keys)
        .output()
        .expect("the binary runs")
}

/// The public keys of the evidence key in `data_dir`, as `audit
/// public-keys` prints them, in a file.
fn public_keys(data_dir: &Path, into: &Path) -> PathBuf {
    let out = binary()
        .args(["audit", "public-keys", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{out:?}");
    let path = into.join("evidence-keys.json");
    std::fs::write(&path, &out.stdout).expect("written");
    path
}

async fn export(
    app: &TestApp,
    token: &str,
    name: &str,
    personal: bool,
) -> Result<v1::ExportRequestEvidenceResponse, tonic::Status> {
    app.dsr()
        .export_request_evidence(authed(
            token,
            v1::ExportRequestEvidenceRequest {
                name: name.to_owned(),
                include_personal_data: personal,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The bundle with its event lines passed through `edit`.
fn with_events(bundle: &str, edit: impl Fn(&mut Vec<String>)) -> String {
    let lines: Vec<&str> = bundle.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains("\"events\": ["))
        .expect("events")
        + 1;
    let end = start
        + lines[start..]
            .iter()
            .position(|l| l.trim() == "],")
            .expect("end of events");
    let mut events: Vec<String> = lines[start..end]
        .iter()
        .map(|l| l.trim().trim_end_matches(',').to_owned())
        .collect();
    edit(&mut events);
    let mut out: Vec<String> = lines[..start].iter().map(|l| (*l).to_owned()).collect();
    out.push(
        events
            .iter()
            .map(|e| format!("    {e}"))
            .collect::<Vec<_>>()
            .join(",\n"),
    );
    out.extend(lines[end..].iter().map(|l| (*l).to_owned()));
    out.join("\n")
}

async fn bundles_verify_and_name_what_was_changed(store: StoreConfig) {
    let dir = tempfile::tempdir().expect("dir");
    let (app, _) = spawn_with(store.clone(), tempfile::tempdir().expect("dir"), |_| {}).await;
    let controller = app.token(Role::Controller, "acme");
    let name = submit_with_email(&app, "ada.evidence@example.org").await;
    app.dsr()
        .cancel_data_subject_request(authed(
            &controller,
            v1::CancelDataSubjectRequestRequest {
                name: name.clone(),
                reason: "the subject withdrew it".to_owned(),
            },
        ))
        .await
        .expect("cancelled");

    // Who may export.
    let refused = export(&app, &controller, &name, false)
        .await
        .expect_err("controllers do not export");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let stranger = export(&app, &app.token(Role::Auditor, "globex"), &name, false)
        .await
        .expect_err("another tenant's request");
    assert_eq!(stranger.code(), Code::NotFound, "{stranger:?}");
    let admin = export(&app, &app.token(Role::Admin, ""), &name, false)
        .await
        .expect("an admin exports any tenant's");
    let exported = export(&app, &app.token(Role::Auditor, "acme"), &name, false)
        .await
        .expect("the tenant's auditor exports");
    let bundle = String::from_utf8(exported.bundle).expect("utf-8");
    assert!(!bundle.contains("ada.evidence"), "no personal data unasked");
    assert!(bundle.contains(&name) && bundle.contains(&exported.key_id));
    assert_eq!(admin.key_id, exported.key_id);
    let personal = export(&app, &app.token(Role::Auditor, "acme"), &name, true)
        .await
        .expect("with personal data");
    assert!(String::from_utf8_lossy(&personal.bundle).contains("ada.evidence@example.org"));

    // Verified with the published public key alone.
    let keys = public_keys(app.data_dir.path(), dir.path());
    let file = dir.path().join("bundle.json");
    std::fs::write(&file, &bundle).expect("written");
    let out = verify_bundle(&file, &keys);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains(&format!("evidence bundle intact: {name}, 2 events")),
        "{stdout}"
    );

    // Tampering, each caught and named.
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a byte of event 2",
            with_events(&bundle, |e| {
                e[1] = e[1].replace("the subject withdrew it", "the subject withdrew iT");
            }),
            "event 2 was altered",
        ),
        (
            "event 1 dropped",
            with_events(&bundle, |e| {
                e.remove(0);
            }),
            "event 1 was removed",
        ),
        (
            "the last event dropped",
            with_events(&bundle, |e| {
                e.pop();
            }),
            "events after 1 were removed",
        ),
        (
            "an event inserted",
            with_events(&bundle, |e| {
                let copy = e[0].clone();
                e.insert(1, copy);
            }),
            "event 2 was inserted",
        ),
    ];
    for (what, tampered, expected) in cases {
        std::fs::write(&file, tampered).expect("written");
        let out = verify_bundle(&file, &keys);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {out:?}");
        assert!(stderr.contains(expected), "{what}: {stderr}");
    }

    // Another key set: the bundle's key is named as unknown.
    let other = tempfile::tempdir().expect("dir");
    let no_key = binary()
        .args(["audit", "public-keys", "--data-dir"])
        .arg(other.path())
        .output()
        .expect("the binary runs");
    assert!(!no_key.status.success(), "no key is made up: {no_key:?}");
    gdpr_intake::evidence::EvidenceKey::ensure_dev(other.path()).expect("another key");
    let other_keys = public_keys(other.path(), other.path());
    std::fs::write(&file, &bundle).expect("written");
    let out = verify_bundle(&file, &other_keys);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr.contains(&format!("signed with evidence key {}", exported.key_id)),
        "{stderr}"
    );

    // A stored trail changed behind the service's back is not exported.
    let id = name.trim_start_matches("dataSubjectRequests/");
    crate::db::execute_raw_owned(
        &store,
        format!(
            "UPDATE request_events SET reason = 'nothing happened' \
             WHERE data_subject_request_id = '{id}' AND sequence = 2"
        ),
    )
    .await;
    let broken = export(&app, &app.token(Role::Auditor, "acme"), &name, false)
        .await
        .expect_err("a broken trail is not vouched for");
    assert_status(
        &broken,
        Code::FailedPrecondition,
        Some("AUDIT_TRAIL_BROKEN"),
    );
    app.stop().await;
}

#[tokio::test]
async fn sqlite_bundles_verify_and_name_what_was_changed() {
    let (store, _dir) = crate::db::sqlite_config().await;
    bundles_verify_and_name_what_was_changed(store).await;
}

#[tokio::test]
async fn postgres_bundles_verify_and_name_what_was_changed() {
    let Some(store) = crate::db::postgres_config().await else {
        return;
    };
    bundles_verify_and_name_what_was_changed(store).await;
}

/// `audit export` reads the database directly with the data dir's keys.
#[tokio::test]
async fn the_binary_exports_a_bundle_that_verifies() {
    use gdpr_intake::store::{AuditKey, DataKey};
    let data = tempfile::tempdir().expect("dir");
    let (audit, _) = AuditKey::ensure_dev(data.path()).expect("audit key");
    let (key, _) = DataKey::ensure_dev(data.path()).expect("data key");
    gdpr_intake::evidence::EvidenceKey::ensure_dev(data.path()).expect("evidence key");
    let store = StoreConfig::sqlite(data.path()).with_keys(audit, key);
    let (app, _) = spawn_with(store, tempfile::tempdir().expect("dir"), |_| {}).await;
    let name = submit_with_email(&app, "subject@example.org").await;
    app.stop().await;

    let file = data.path().join("bundle.json");
    let export = |request: &str| {
        binary()
            .args(["audit", "export", "--data-dir"])
            .arg(data.path())
            .args(["--request", request, "--out"])
            .arg(&file)
            .env_remove("GDPR_INTAKE_AUDIT_KEY_FILE")
            .env_remove("GDPR_INTAKE_DATA_KEY_FILE")
            .output()
            .expect("the binary runs")
    };
    let out = export(&name);
    assert!(out.status.success(), "{out:?}");
    let keys = public_keys(data.path(), data.path());
    let out = verify_bundle(&file, &keys);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 events"));

    let missing = export("dataSubjectRequests/00000000-0000-4000-8000-000000000000");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}
