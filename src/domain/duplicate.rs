//! Duplicate requests. A subject who asks a controller again for what an
//! open request of theirs already asks must not make every processor do
//! the work twice: the new request is stored, final at once, naming the
//! open one it repeats, and gets no tasks.
//!
//! A new request repeats an earlier one when both are the same
//! controller's, about the same subject (`external_id`), of the same type
//! (a rectification: with the same corrections too), the earlier one is
//! open, and the two were received at most the window apart. The open one
//! is usually received first; it may have been received after the new one
//! when the new one is submitted late, or when submissions race: their
//! receipt times (each taken when its call is accepted, on whichever
//! replica) need not follow the order their commits take. Either way the
//! subject asked twice, and only the request stored first goes on, so that
//! of submissions racing for one subject exactly one stays open. The
//! store decides this inside the
//! submission's commit, against the open requests it holds and the
//! requests committed with it ([`find_originals`]); this module only
//! decides.

use std::cmp::Reverse;

use jiff::SignedDuration;
use uuid::Uuid;

use super::request::{
    Actor, DataSubjectRequest, EventType, NAME_PREFIX, NewEvent, RequestType, State,
};

/// How far back an open request makes a new one its duplicate, unless
/// configured: 30 days.
pub const DEFAULT_WINDOW: SignedDuration = SignedDuration::from_hours(30 * 24);

/// Whether `new` repeats `earlier`, stored before it, within `window`:
/// same controller, subject and type (a rectification: and the same
/// corrections), `earlier` open, and the two received at most `window`
/// apart.
pub fn repeats(
    new: &DataSubjectRequest,
    earlier: &DataSubjectRequest,
    window: SignedDuration,
) -> bool {
    new.id != earlier.id
        && !earlier.state.is_final()
        && new.controller_id == earlier.controller_id
        && new.subject.external_id == earlier.subject.external_id
        && new.request_type == earlier.request_type
        && (new.request_type != RequestType::Rectification
            || new.corrections == earlier.corrections)
        && new.received_at.duration_since(earlier.received_at).abs() <= window
}

/// The request a new one repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Original {
    /// The `n`th of the stored open requests.
    Stored(usize),
    /// The `n`th of the new requests, itself no duplicate.
    New(usize),
}

/// For each of the `new` requests (each with its window), the request it
/// repeats, if any. The new requests are taken in order of receipt (those
/// received at the same time in the order given); each repeats the
/// latest-received `stored` request it repeats, or else the
/// latest-received new request before it that is no duplicate itself.
/// So of requests that repeat one another, exactly one is no duplicate.
pub fn find_originals(
    new: &[(&DataSubjectRequest, SignedDuration)],
    stored: &[DataSubjectRequest],
) -> Vec<Option<Original>> {
    let mut order: Vec<usize> = (0..new.len()).collect();
    order.sort_by_key(|&i| new[i].0.received_at);
    let mut found = vec![None; new.len()];
    // The new requests that are no duplicates, in order of receipt.
    let mut kept: Vec<usize> = Vec::new();
    for i in order {
        let (request, window) = new[i];
        let in_store = stored
            .iter()
            .enumerate()
            .filter(|(_, s)| repeats(request, s, window))
            .max_by_key(|(n, s)| (s.received_at, Reverse(*n)))
            .map(|(n, _)| Original::Stored(n));
        found[i] = in_store.or_else(|| {
            kept.iter()
                .rev()
                .find(|&&k| repeats(request, new[k].0, window))
                .map(|&k| Original::New(k))
        });
        if found[i].is_none() {
            kept.push(i);
        }
    }
    found
}

/// Turns `request`, new and not stored yet, into the duplicate of
/// `original`: final at once, with no tasks, no pause of its clock and
/// closed when it was accepted (so that the retention purge takes its
/// personal data in time). Returns its only event, attributed to `actor`,
/// who submitted it.
pub fn store_as_duplicate(
    request: &mut DataSubjectRequest,
    original: Uuid,
    actor: &Actor,
) -> NewEvent {
    request.state = State::Duplicate;
    request.duplicate_of = Some(original);
    request.close_time = Some(request.create_time);
    request.clock_pauses.clear();
    request.unrouted = false;
    NewEvent {
        event_type: EventType::DuplicateStored,
        time: request.create_time,
        actor: actor.clone(),
        from_state: None,
        to_state: State::Duplicate,
        reason: format!(
            "the same request is open as {NAME_PREFIX}{original}: stored without tasks"
        ),
        task: None,
    }
}

/// The event on `original` that `duplicate` repeats it; its state does
/// not change.
pub fn duplicate_received(
    original: &DataSubjectRequest,
    duplicate: &DataSubjectRequest,
    actor: &Actor,
) -> NewEvent {
    NewEvent {
        event_type: EventType::DuplicateReceived,
        time: duplicate.create_time,
        actor: actor.clone(),
        from_state: Some(original.state),
        to_state: original.state,
        reason: format!(
            "the same request came again: stored as duplicate {NAME_PREFIX}{}",
            duplicate.id
        ),
        task: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::age::AgePolicy;
    use crate::domain::input::{RawSubject, RawSubmission, Submission, accept};
    use jiff::Timestamp;
    use proptest::prelude::*;

    fn t0() -> Timestamp {
        "2026-03-10T09:00:00Z".parse().expect("valid")
    }

    fn hours(n: i64) -> SignedDuration {
        SignedDuration::from_hours(n)
    }

    fn actor() -> Actor {
        Actor {
            id: "controller@acme".into(),
            role: "controller".into(),
        }
    }

    /// A request of `controller` about `subject`, received at `received`.
    fn request(
        controller: &str,
        subject: &str,
        request_type: RequestType,
        correction: &str,
        received: Timestamp,
    ) -> DataSubjectRequest {
        let raw = RawSubmission {
            request_id: Uuid::new_v4().to_string(),
            request_type: Some(request_type),
            subject: Some(RawSubject {
                external_id: subject.into(),
                email: "a@example.org".into(),
                date_of_birth: Some((1985, 1, 1)),
                country: "DE".into(),
                subdivision: String::new(),
            }),
            received_at: Some((received.as_second(), 0)),
            corrections: if request_type == RequestType::Rectification {
                [("address".to_owned(), correction.to_owned())].into()
            } else {
                Default::default()
            },
            ..Default::default()
        };
        let now = received.max(t0());
        let s = Submission::parse(raw, now).expect("valid submission");
        let fp = s.fingerprint();
        accept(
            s,
            controller,
            Uuid::now_v7(),
            fp,
            &AgePolicy::default(),
            &actor(),
            now,
        )
        .expect("accepted")
        .0
    }

    fn access(subject: &str, received: Timestamp) -> DataSubjectRequest {
        request("acme", subject, RequestType::Access, "", received)
    }

    #[test]
    fn the_same_subject_type_and_controller_within_the_window_repeats() {
        let earlier = access("cust-1", t0());
        let new = access("cust-1", t0() + hours(24));
        assert!(repeats(&new, &earlier, DEFAULT_WINDOW));
        // Anything different is another request.
        assert!(!repeats(&access("cust-2", t0()), &earlier, DEFAULT_WINDOW));
        let erasure = request("acme", "cust-1", RequestType::Erasure, "", t0());
        assert!(!repeats(&erasure, &earlier, DEFAULT_WINDOW));
        let other = request("other", "cust-1", RequestType::Access, "", t0());
        assert!(!repeats(&other, &earlier, DEFAULT_WINDOW));
        // A request does not repeat itself.
        assert!(!repeats(&earlier, &earlier, DEFAULT_WINDOW));
    }

    #[test]
    fn the_window_is_inclusive_on_either_side() {
        let earlier = access("cust-1", t0());
        let second = SignedDuration::from_secs(1);
        for (received, repeated) in [
            (t0() + DEFAULT_WINDOW, true),
            (t0() + DEFAULT_WINDOW + second, false),
            (t0(), true),
            // Received before the open one (submitted late, or racing it).
            (t0() - hours(1), true),
            (t0() - DEFAULT_WINDOW, true),
            (t0() - DEFAULT_WINDOW - second, false),
        ] {
            let new = access("cust-1", received);
            assert_eq!(
                repeats(&new, &earlier, DEFAULT_WINDOW),
                repeated,
                "{received}"
            );
        }
    }

    #[test]
    fn only_an_open_request_is_repeated() {
        let mut earlier = access("cust-1", t0());
        let new = access("cust-1", t0() + hours(1));
        for state in State::ALL {
            earlier.state = state;
            assert_eq!(
                repeats(&new, &earlier, DEFAULT_WINDOW),
                !state.is_final(),
                "{state:?}"
            );
        }
    }

    #[test]
    fn a_rectification_repeats_only_the_same_corrections() {
        let rect = |c: &str, at| request("acme", "cust-1", RequestType::Rectification, c, at);
        let earlier = rect("1 Main St", t0());
        assert!(repeats(
            &rect("1 Main St", t0() + hours(2)),
            &earlier,
            DEFAULT_WINDOW
        ));
        assert!(!repeats(
            &rect("2 High St", t0() + hours(2)),
            &earlier,
            DEFAULT_WINDOW
        ));
    }

    #[test]
    fn a_stored_open_request_is_preferred_then_the_latest() {
        let old = access("cust-1", t0());
        let recent = access("cust-1", t0() + hours(5));
        let new_a = access("cust-1", t0() + hours(6));
        let new_b = access("cust-1", t0() + hours(7));
        let found = find_originals(
            &[(&new_b, DEFAULT_WINDOW), (&new_a, DEFAULT_WINDOW)],
            &[old.clone(), recent.clone()],
        );
        assert_eq!(
            found,
            [Some(Original::Stored(1)), Some(Original::Stored(1))]
        );
        // Without a stored one, the first received is kept and the other
        // repeats it, whatever order they come in.
        let found = find_originals(&[(&new_b, DEFAULT_WINDOW), (&new_a, DEFAULT_WINDOW)], &[]);
        assert_eq!(found, [Some(Original::New(1)), None]);
        // Out of the window, nothing repeats.
        let found = find_originals(&[(&new_b, hours(0)), (&new_a, hours(0))], &[old, recent]);
        assert_eq!(found, [None, None]);
    }

    #[test]
    fn a_duplicate_is_final_without_pauses_and_names_its_original() {
        let original = access("cust-1", t0());
        let mut new = access("cust-1", t0() + hours(1));
        new.clock_pauses = vec![crate::domain::request::ClockPause::at_submission(
            new.received_at,
            State::InProgress,
        )];
        let event = store_as_duplicate(&mut new, original.id, &actor());
        assert_eq!(new.state, State::Duplicate);
        assert_eq!(new.duplicate_of, Some(original.id));
        assert_eq!(new.close_time, Some(new.create_time));
        assert!(new.clock_pauses.is_empty());
        assert_eq!(event.event_type, EventType::DuplicateStored);
        assert_eq!((event.from_state, event.to_state), (None, State::Duplicate));
        assert!(event.reason.contains(&original.id.to_string()));
        let received = duplicate_received(&original, &new, &actor());
        assert_eq!(received.event_type, EventType::DuplicateReceived);
        assert_eq!(
            (received.from_state, received.to_state),
            (Some(original.state), original.state)
        );
        assert!(received.reason.contains(&new.id.to_string()));
        // Neither names the subject.
        for e in [event, received] {
            assert!(!e.reason.contains("cust-1") && !e.reason.contains('@'));
        }
    }

    /// A request out of a small space: two controllers, two subjects, two
    /// types, two corrections, receipts a few hours apart, any state.
    fn any_request() -> impl Strategy<Value = DataSubjectRequest> {
        (
            0..2usize,
            0..2usize,
            prop_oneof![Just(RequestType::Access), Just(RequestType::Rectification)],
            0..2usize,
            0..96i64,
            0..State::ALL.len(),
        )
            .prop_map(|(c, s, t, k, h, state)| {
                let mut r = request(
                    ["acme", "globex"][c],
                    ["cust-1", "cust-2"][s],
                    t,
                    ["1 Main St", "2 High St"][k],
                    t0() + hours(h),
                );
                r.state = State::ALL[state];
                r
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every duplicate names a request it repeats that is kept or
        /// stored; every request kept repeats nothing stored and no request
        /// kept before it: of requests that repeat one another, one stays
        /// open.
        #[test]
        fn exactly_one_of_a_repeated_request_stays_open(
            mut new in proptest::collection::vec(any_request(), 0..12),
            stored in proptest::collection::vec(any_request(), 0..6),
            window_hours in 0..72i64,
        ) {
            // New requests are open when they arrive.
            for r in &mut new {
                if r.state.is_final() {
                    r.state = State::InProgress;
                }
            }
            let window = hours(window_hours);
            let with: Vec<_> = new.iter().map(|r| (r, window)).collect();
            let found = find_originals(&with, &stored);
            prop_assert_eq!(found.len(), new.len());
            for (i, f) in found.iter().enumerate() {
                match f {
                    Some(Original::Stored(n)) => {
                        prop_assert!(repeats(&new[i], &stored[*n], window));
                    }
                    Some(Original::New(k)) => {
                        prop_assert!(found[*k].is_none());
                        prop_assert!(repeats(&new[i], &new[*k], window));
                    }
                    None => {
                        prop_assert!(stored.iter().all(|s| !repeats(&new[i], s, window)));
                        for (k, g) in found.iter().enumerate() {
                            if g.is_none() {
                                prop_assert!(!repeats(&new[i], &new[k], window));
                            }
                        }
                    }
                }
            }
        }
    }
}
