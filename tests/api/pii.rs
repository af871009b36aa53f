//! Personal data at rest: the subject's email and date of birth and the
//! guardian's name and email are sealed in the database, bound to their
//! tenant, row and column (both backends).

use gdpr_intake::domain::pii::{Email, PersonName};
use gdpr_intake::domain::request::{
    EventType, Guardian, GuardianConsent, GuardianIdentity, GuardianRelationship, Personal,
};
use gdpr_intake::store::{self, Effects, StoreConfig, StoreError};

use crate::audit::{at, event, sample_request};
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
    personal_data_is_sealed_and_round_trips,
    a_ciphertext_moved_elsewhere_is_corrupt,
);

fn with_guardian() -> gdpr_intake::domain::request::DataSubjectRequest {
    let mut r = sample_request();
    r.guardian_consent = Some(GuardianConsent {
        guardian: Guardian {
            identity: Personal::Present(GuardianIdentity {
                full_name: PersonName::parse("Zoë O'Brien").unwrap(),
                email: Email::parse("guardian@example.org").unwrap(),
            }),
            relationship: GuardianRelationship::Parent,
            verification_method: "passport checked in person".to_owned(),
            consented_at: at(50),
        },
        record_time: at(60),
        recorded_by: "operator-8".to_owned(),
    });
    r
}

async fn personal_data_is_sealed_and_round_trips(config: StoreConfig) {
    let store = store::connect(&config, true).await.unwrap();
    let mut request = with_guardian();
    let submitted = event(EventType::Submitted, None, 0, "accepted");
    store
        .insert_request(&request, &Effects::event(submitted))
        .await
        .unwrap();
    assert_eq!(
        store.get_request("acme", request.id).await.unwrap(),
        Some(request.clone())
    );
    // An update seals again what it writes.
    request.version += 1;
    request.update_time = at(70);
    store
        .update_request(&request, 1, &Effects::default())
        .await
        .unwrap();
    assert_eq!(
        store.get_request("acme", request.id).await.unwrap(),
        Some(request.clone())
    );

    let plaintext = db::fetch_count(
        &config,
        "SELECT COUNT(*) FROM data_subject_requests WHERE \
         subject_email LIKE '%example.org%' OR subject_date_of_birth LIKE '%1990%' \
         OR guardian_full_name LIKE '%Brien%' OR guardian_email LIKE '%example.org%'"
            .to_owned(),
    )
    .await;
    assert_eq!(plaintext, 0, "personal data is stored in the clear");
    let sealed = db::fetch_count(
        &config,
        "SELECT COUNT(*) FROM data_subject_requests WHERE \
         subject_email LIKE 'v2.%' AND subject_date_of_birth LIKE 'v2.%' \
         AND guardian_full_name LIKE 'v2.%' AND guardian_email LIKE 'v2.%'"
            .to_owned(),
    )
    .await;
    assert_eq!(sealed, 1);
}

async fn a_ciphertext_moved_elsewhere_is_corrupt(config: StoreConfig) {
    let store = store::connect(&config, true).await.unwrap();
    let [a, b] = [with_guardian(), with_guardian()];
    for r in [&a, &b] {
        let submitted = event(EventType::Submitted, None, 0, "accepted");
        store
            .insert_request(r, &Effects::event(submitted))
            .await
            .unwrap();
    }
    let corrupt = |result: Result<_, StoreError>| matches!(result, Err(StoreError::Corrupt(_)));

    // To another row.
    db::execute_raw_owned(
        &config,
        format!(
            "UPDATE data_subject_requests SET subject_email = \
             (SELECT subject_email FROM data_subject_requests WHERE id = '{}') \
             WHERE id = '{}'",
            a.id, b.id
        ),
    )
    .await;
    assert!(corrupt(store.get_request("acme", b.id).await));
    assert!(store.get_request("acme", a.id).await.unwrap().is_some());

    // To another column of the same row.
    db::execute_raw_owned(
        &config,
        format!(
            "UPDATE data_subject_requests SET guardian_email = subject_email WHERE id = '{}'",
            a.id
        ),
    )
    .await;
    assert!(corrupt(store.get_request("acme", a.id).await));

    // Another key opens nothing.
    let mut other = config.clone();
    other.data_key = Some(crate::db::test_keys().1);
    let c = with_guardian();
    store
        .insert_request(
            &c,
            &Effects::event(event(EventType::Submitted, None, 0, "accepted")),
        )
        .await
        .unwrap();
    let reader = store::connect(&other, false).await.unwrap();
    assert!(corrupt(reader.get_request("acme", c.id).await));
}
