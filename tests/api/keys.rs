//! Data key rotation through the real server, on both backends: values
//! written before, during and after a rotation read back on a server whose
//! ring holds the keys; `gdpr-intake keys status` counts each key's values
//! and names a key in use that the ring lacks; a server without that key
//! refuses to read those values and still reads the rest; a server whose
//! ring lacks the newest primary does not start; the watchdog's re-seal
//! moves every value to the primary, after which the old key may go.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gdpr_intake::auth::Role;
use gdpr_intake::clock::SystemClock;
use gdpr_intake::proto::v1;
use gdpr_intake::startup::Application;
use gdpr_intake::store::{DataKey, StoreConfig};
use rand_core::{OsRng, RngCore};
use tonic::Code;

use crate::helpers::*;
use crate::overload::spawn_with;

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    key
}

/// A key file holding `keys`, one per line, the first the primary.
fn ring_file(dir: &Path, name: &str, keys: &[&[u8; 32]]) -> std::path::PathBuf {
    let path = dir.join(name);
    let lines: Vec<String> = keys.iter().map(|k| STANDARD.encode(k)).collect();
    std::fs::write(&path, lines.join("\n") + "\n").expect("key file written");
    path
}

fn keys_status(store: &StoreConfig, key_file: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gdpr-intake"));
    command
        .args(["keys", "status", "--data-key-file"])
        .arg(key_file)
        .arg("--data-dir")
        .arg(&store.data_dir)
        .env_remove("DATABASE_URL");
    if let Some(url) = &store.database_url {
        command.arg("--database-url").arg(url);
    }
    command.output().expect("the binary runs")
}

/// Submits a request for a subject with `email`; its name.
pub(crate) async fn submit_with_email(app: &TestApp, email: &str) -> String {
    let mut m = submission();
    m.subject.as_mut().expect("subject").email = email.to_owned();
    app.dsr()
        .submit_data_subject_request(authed(&app.token(Role::Controller, "acme"), m))
        .await
        .expect("submitted")
        .into_inner()
        .data_subject_request
        .expect("request")
        .name
}

async fn email_of(app: &TestApp, name: &str) -> Result<String, tonic::Status> {
    app.dsr()
        .get_data_subject_request(authed(
            &app.token(Role::Controller, "acme"),
            v1::GetDataSubjectRequestRequest { name: name.into() },
        ))
        .await
        .map(|r| {
            r.into_inner()
                .data_subject_request
                .and_then(|r| r.subject)
                .map(|s| s.email)
                .unwrap_or_default()
        })
}

async fn rotate_on(store: StoreConfig) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (old, new) = (random_key(), random_key());
    let before = ring_file(dir.path(), "before", &[&old]);
    let during = ring_file(dir.path(), "during", &[&old, &new]);
    let after = ring_file(dir.path(), "after", &[&new, &old]);
    let removed = ring_file(dir.path(), "removed", &[&new]);
    let (old_id, new_id) = (
        DataKey::from_file(&before)
            .expect("ring")
            .primary_id()
            .to_owned(),
        DataKey::from_file(&removed)
            .expect("ring")
            .primary_id()
            .to_owned(),
    );
    let audit = store.audit_key.clone().expect("keyed");
    let with_ring = |file: &Path| {
        let mut config = store.clone();
        config.data_key = Some(DataKey::from_file(file).expect("ring"));
        config.audit_key = Some(audit.clone());
        config
    };
    let serve = |file: &Path| {
        let config = with_ring(file);
        async move {
            spawn_with(config, tempfile::tempdir().expect("dir"), |_| {})
                .await
                .0
        }
    };

    let mut written = Vec::new();
    // Step 0, one key; step 1, the new key added to the ring (the old one
    // still seals); step 2, the new key made primary.
    for (step, file) in [&before, &during, &after].into_iter().enumerate() {
        let app = serve(file).await;
        let email = format!("subject-{step}@example.org");
        written.push((submit_with_email(&app, &email).await, email));
        for (name, email) in &written {
            assert_eq!(&email_of(&app, name).await.expect("readable"), email);
        }
        app.stop().await;
    }

    let status = keys_status(&store, &after);
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{status:?}");
    assert!(
        stdout.contains(&format!("key {old_id}: 2 requests, 4 values (in the ring)")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("key {new_id}: 1 requests, 2 values (primary)")),
        "{stdout}"
    );

    // The old key taken out while values still need it: named, refused.
    let status = keys_status(&store, &removed);
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(!status.status.success(), "{status:?}");
    assert!(
        stdout.contains(&format!(
            "key {old_id}: 2 requests, 4 values (NOT IN THE RING)"
        )),
        "{stdout}"
    );
    let app = serve(&removed).await;
    let refused = email_of(&app, &written[0].0).await.expect_err("unreadable");
    assert_eq!(refused.code(), Code::Internal, "{refused:?}");
    assert!(
        !refused.message().contains("subject-0"),
        "no personal data in the error"
    );
    assert_eq!(
        email_of(&app, &written[2].0).await.expect("readable"),
        written[2].1
    );
    app.stop().await;

    // A replica whose ring lacks the newest primary does not start.
    let settings = test_settings(with_ring(&before), &tempfile::tempdir().expect("dir"));
    let refused = Application::build(settings, Arc::new(SystemClock))
        .await
        .err()
        .expect("refused to start");
    let message = refused.to_string();
    assert!(
        message.contains(&new_id) && message.contains("--data-key-file"),
        "{message}"
    );

    // The watchdog's re-seal moves every value to the primary.
    let (app, _) = spawn_with(with_ring(&after), tempfile::tempdir().expect("dir"), |s| {
        s.watchdog.interval = Duration::from_millis(400);
    })
    .await;
    app.sweeps_after(1).await;
    app.stop().await;
    let status = keys_status(&store, &after);
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{status:?}");
    assert!(
        stdout.contains(&format!("key {old_id}: 0 requests, 0 values (in the ring")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("key {new_id}: 3 requests, 6 values (primary)")),
        "{stdout}"
    );

    // Now the old key may go: every value reads without it.
    let app = serve(&removed).await;
    for (name, email) in &written {
        assert_eq!(&email_of(&app, name).await.expect("readable"), email);
    }
    app.stop().await;
    let status = keys_status(&store, &removed);
    assert!(status.status.success(), "{status:?}");
}

#[tokio::test]
async fn sqlite_values_read_before_during_and_after_a_data_key_rotation() {
    let dir = tempfile::tempdir().expect("temp dir");
    rotate_on(crate::db::keyed(StoreConfig::sqlite(dir.path()))).await;
}

#[tokio::test]
async fn postgres_values_read_before_during_and_after_a_data_key_rotation() {
    let Some(store) = crate::db::postgres_config().await else {
        return;
    };
    rotate_on(store).await;
}

/// The registry of primaries through a rotation, on one database: the
/// first start records every key of its rings; a new primary becomes the
/// newest; a replica still on an older primary starts and records nothing;
/// keys that left every ring and hold nothing are retired, and a retired
/// key is refused as a primary; a start refused on one ring records
/// nothing of the other.
async fn the_registry_follows_a_rotation(config: StoreConfig) {
    use gdpr_intake::store::keys::{KeyPurpose, RingError, check_rings};
    use gdpr_intake::store::{self, AuditKey, Effects};

    let (k0, k1, k2, k3) = (random_key(), random_key(), random_key(), random_key());
    let (a, b) = (random_key(), random_key());
    let data = |keys: &[&[u8; 32]]| {
        let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        DataKey::ring(&keys).expect("ring")
    };
    let audit = |key: &[u8; 32]| AuditKey::from_bytes(key).expect("key");
    // The audit ring after its own rotation: b chains, a still verifies.
    let rotated = || AuditKey::ring(&[b.as_slice(), a.as_slice()]).expect("ring");
    let id = |key: &[u8; 32]| data(&[key]).primary_id().to_owned();
    let start = |d: DataKey, au: AuditKey| {
        let mut c = config.clone();
        c.data_key = Some(d);
        c.audit_key = Some(au);
        async move {
            let s = store::connect(&c, true).await.expect("store");
            let checked = check_rings(s.as_ref(), jiff::Timestamp::now()).await;
            (s, checked)
        }
    };
    let newest_first = |s: &std::sync::Arc<dyn store::Store>| {
        let s = s.clone();
        async move {
            s.registered_keys(KeyPurpose::Data)
                .await
                .expect("registry")
                .into_iter()
                .map(|k| (k.key_id, k.retired_since.is_some(), k.covers_unnamed))
                .collect::<Vec<_>>()
        }
    };

    let (first, checked) = start(data(&[&k1, &k0]), audit(&a)).await;
    checked.expect("the first start");
    assert_eq!(
        newest_first(&first).await,
        vec![(id(&k1), false, true), (id(&k0), false, true)]
    );
    // A trail chained with audit key `a`.
    let request = crate::audit::sample_request();
    first
        .insert_request(
            &request,
            &Effects::event(crate::audit::event(
                gdpr_intake::domain::request::EventType::Submitted,
                None,
                0,
                "accepted",
            )),
        )
        .await
        .expect("stored");

    let (second, checked) = start(data(&[&k2, &k1, &k0]), rotated()).await;
    checked.expect("a new primary");
    let (_, checked) = start(data(&[&k1, &k2, &k0]), rotated()).await;
    checked.expect("an older primary still starts");
    assert_eq!(
        newest_first(&second).await,
        vec![
            (id(&k2), false, false),
            (id(&k1), false, true),
            (id(&k0), false, true)
        ]
    );

    // Refused on its audit ring (`a` chained a trail): nothing of its new
    // data primary is recorded.
    let (_, checked) = start(data(&[&k3, &k2, &k1, &k0]), audit(&b)).await;
    assert!(
        matches!(checked, Err(RingError::AuditKeyInUse { ref id, .. }) if *id == audit(&a).primary_id()),
        "{checked:?}"
    );
    assert_eq!(newest_first(&second).await.len(), 3);

    // The old data keys leave the ring: nothing is sealed with them (the
    // request above is sealed with k1, so k1 stays in use and is kept).
    let (_, checked) = start(data(&[&k2]), rotated()).await;
    checked.expect("starts, reporting k1 in use");
    assert_eq!(
        newest_first(&second).await,
        vec![
            (id(&k2), false, false),
            (id(&k1), false, true),
            (id(&k0), true, true)
        ]
    );
    // A retired key is never primary again.
    let (_, checked) = start(data(&[&k0, &k2, &k1]), rotated()).await;
    assert!(
        matches!(checked, Err(RingError::PrimaryRetired { ref id, .. }) if *id == data(&[&k0]).primary_id()),
        "{checked:?}"
    );
}

#[tokio::test]
async fn sqlite_the_registry_follows_a_rotation() {
    let (config, _dir) = crate::db::sqlite_config().await;
    the_registry_follows_a_rotation(config).await;
}

#[tokio::test]
async fn postgres_the_registry_follows_a_rotation() {
    let Some(config) = crate::db::postgres_config().await else {
        return;
    };
    the_registry_follows_a_rotation(config).await;
}
