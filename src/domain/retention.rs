//! How long a closed request keeps its personal data: the retention purge's
//! decisions. The period counts from the close (completion, refusal,
//! cancellation or expiry); the purge itself is
//! [`DataSubjectRequest::purge`].

use jiff::{SignedDuration, Timestamp};

use super::request::DataSubjectRequest;

/// The latest close time of a request due for purge at `now`: a request
/// closed at or before it has kept its data for `retention` or longer.
pub fn closed_by(now: Timestamp, retention: SignedDuration) -> Timestamp {
    now.saturating_sub(retention.abs())
        .unwrap_or(Timestamp::MIN)
}

/// Whether `request` is due for purge at `now`: in a final state, closed
/// `retention` ago or longer, and not purged yet.
pub fn purge_due(request: &DataSubjectRequest, retention: SignedDuration, now: Timestamp) -> bool {
    request.state.is_final()
        && request.purge_time().is_none()
        && request
            .close_time
            .is_some_and(|closed| closed <= closed_by(now, retention))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::age::AgePolicy;
    use crate::domain::input::{RawSubject, RawSubmission, Submission, accept};
    use crate::domain::pii::{Email, PersonName};
    use crate::domain::request::{
        Actor, Closure, EventType, Guardian, GuardianIdentity, GuardianRelationship, Outcome,
        Personal, State,
    };
    use proptest::prelude::*;
    use uuid::Uuid;

    fn t0() -> Timestamp {
        "2026-03-10T09:00:00Z".parse().expect("valid")
    }

    fn days(n: i64) -> SignedDuration {
        SignedDuration::from_hours(24 * n)
    }

    fn controller() -> Actor {
        Actor {
            id: "controller@acme".into(),
            role: "controller".into(),
        }
    }

    fn request(birth_year: i32) -> DataSubjectRequest {
        let raw = RawSubmission {
            request_id: Uuid::new_v4().to_string(),
            request_type: Some(crate::domain::request::RequestType::Rectification),
            subject: Some(RawSubject {
                external_id: "cust-1".into(),
                email: "a@example.org".into(),
                date_of_birth: Some((birth_year, 1, 1)),
                country: "DE".into(),
                subdivision: String::new(),
            }),
            received_at: Some((t0().as_second(), 0)),
            details: "please fix my address".into(),
            corrections: [("address".to_owned(), "1 Main St".to_owned())].into(),
            identity_verification_required: false,
        };
        let s = Submission::parse(raw, t0()).expect("valid submission");
        let fp = s.fingerprint();
        accept(
            s,
            "acme",
            Uuid::new_v4(),
            fp,
            &AgePolicy::default(),
            &controller(),
            t0(),
        )
        .expect("accepted")
        .0
    }

    fn completed(at: Timestamp) -> DataSubjectRequest {
        let mut r = request(1980);
        r.close(
            Closure {
                outcome: Outcome::Completed,
                refusal_reason: None,
                explanation: "done".into(),
            },
            &controller(),
            at,
        )
        .expect("close");
        r
    }

    #[test]
    fn due_once_the_retention_has_passed_since_the_close() {
        let closed = t0() + days(2);
        let r = completed(closed);
        let retention = days(30);
        assert!(!purge_due(&r, retention, closed));
        assert!(!purge_due(
            &r,
            retention,
            closed + retention - SignedDuration::from_micros(1)
        ));
        assert!(purge_due(&r, retention, closed + retention));
        assert!(purge_due(&r, retention, closed + days(400)));
    }

    #[test]
    fn open_requests_are_never_due() {
        let open = request(1980);
        assert_eq!(open.state, State::InProgress);
        assert!(!purge_due(&open, days(1), t0() + days(10_000)));
        let minor = request(2010);
        assert_eq!(minor.state, State::AwaitingGuardianConsent);
        assert!(!purge_due(
            &minor,
            SignedDuration::ZERO,
            t0() + days(10_000)
        ));
    }

    #[test]
    fn every_final_state_is_due_cancelled_and_expired_too() {
        let mut cancelled = request(1980);
        cancelled
            .cancel("withdrawn".into(), &controller(), t0())
            .expect("cancel");
        let mut expired = request(2010);
        expired.expire(t0()).expect("expire");
        for r in [cancelled, expired, completed(t0())] {
            assert!(r.state.is_final());
            assert!(
                purge_due(&r, days(1), t0() + days(1)),
                "{}",
                r.state.as_str()
            );
        }
    }

    #[test]
    fn purging_removes_the_personal_data_and_keeps_the_rest() {
        let mut r = request(2010);
        r.record_guardian_consent(
            Guardian {
                identity: Personal::Present(GuardianIdentity {
                    full_name: PersonName::parse("Grace Hopper").expect("valid"),
                    email: Email::parse("g@example.org").expect("valid"),
                }),
                relationship: GuardianRelationship::Parent,
                verification_method: "id-check".into(),
                consented_at: t0(),
            },
            &controller(),
            t0(),
        )
        .expect("consent");
        r.cancel("withdrawn".into(), &controller(), t0() + days(1))
            .expect("cancel");
        let before = r.clone();
        let at = t0() + days(40);

        let event = r.purge(at).expect("purged");

        assert_eq!(r.purge_time(), Some(at));
        assert_eq!(r.subject.personal, Personal::Purged { at });
        assert_eq!(r.subject.email(), None);
        assert_eq!(r.subject.date_of_birth(), None);
        let consent = r.guardian_consent.as_ref().expect("consent kept");
        assert_eq!(consent.guardian.identity, Personal::Purged { at });
        assert_eq!(consent.guardian.relationship, GuardianRelationship::Parent);
        assert!(r.details.is_empty() && r.corrections.is_empty());
        assert_eq!(r.subject.external_id, before.subject.external_id);
        assert_eq!(r.subject.jurisdiction, before.subject.jurisdiction);
        assert_eq!(
            (r.state, r.close_time, r.cancellation_reason.as_deref()),
            (State::Cancelled, before.close_time, Some("withdrawn"))
        );
        assert_eq!((r.version, r.update_time), (before.version + 1, at));
        assert_eq!(event.event_type, EventType::Purged);
        assert_eq!(event.actor, Actor::system());
        assert_eq!(
            (event.from_state, event.to_state),
            (Some(State::Cancelled), State::Cancelled)
        );
        assert!(!purge_due(&r, SignedDuration::ZERO, at + days(1)));
    }

    #[test]
    fn purging_twice_or_an_open_request_is_refused() {
        let mut r = completed(t0());
        r.purge(t0() + days(1)).expect("purged");
        let once = r.clone();
        assert_eq!(
            r.purge(t0() + days(2)).map_err(|e| e.reason),
            Err("REQUEST_ALREADY_PURGED")
        );
        assert_eq!(r, once, "a refused purge changes nothing");
        let mut open = request(1980);
        let before = open.clone();
        assert_eq!(
            open.purge(t0()).map_err(|e| e.reason),
            Err("REQUEST_NOT_CLOSED")
        );
        assert_eq!(open, before);
    }

    proptest! {
        /// Due exactly when closed at least `retention` before `now`; and
        /// the event a purge writes never carries the data it removed.
        #[test]
        fn due_exactly_after_the_retention(
            closed_after_secs in 0i64..400 * 86_400,
            retention_secs in 0i64..3 * 365 * 86_400,
            now_after_close_secs in -86_400i64..4 * 365 * 86_400,
        ) {
            let closed = t0() + SignedDuration::from_secs(closed_after_secs);
            let retention = SignedDuration::from_secs(retention_secs);
            let now = closed + SignedDuration::from_secs(now_after_close_secs);
            let r = completed(closed);
            prop_assert_eq!(purge_due(&r, retention, now), now - retention >= closed);
            let mut purged = r.clone();
            let event = purged.purge(now).expect("a closed request purges");
            prop_assert!(!event.reason.contains("example.org"));
            prop_assert!(!event.reason.contains("1 Main St"));
            prop_assert!(!purge_due(&purged, retention, now));
        }
    }
}
