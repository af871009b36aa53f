//! The tamper-evident audit trail: every request's events form a chain of
//! HMAC-SHA256 values, keyed with a secret the database never holds.
//!
//! Each event stores `hash = HMAC(key, prev || fields)`, where `prev` is the
//! hash of the request's previous event ([`GENESIS`] for the first) and
//! `fields` the event's canonical encoding ([`EventFields`]). The request
//! row keeps `audit_head = HMAC(key, "head" || request id || sequence ||
//! hash)` of its last event, so that removing events from the end of a
//! trail is caught too. Someone with write access to the database but not
//! the key can read every hash but compute none: any event changed, removed,
//! inserted or moved breaks the chain at that event.
//!
//! **The key ring.** `--audit-key-file` holds one key per line (base64 of
//! at least 32 random bytes; blank lines and `#` comments ignored); the
//! first chains new events, every key verifies what it chained. Each
//! stored hash and head names the key that made it, as
//! `<key id>.<64 hex digits>` (the id derived from the key as the data
//! key's is, under another label); hashes written before key ids are bare
//! hex and are checked against every key of the ring. The MAC covers the
//! hash bytes, not the id: an id changed to another key's makes the event
//! fail to verify like any other alteration. So a trail may be chained
//! under several keys, one after the other, and verifies as long as the
//! ring holds each of them; [`super::keys::check_rings`] refuses to serve
//! with a ring that lacks a key some trail needs.
//!
//! Not covered: a request deleted with its whole trail (nothing is left to
//! check), and an attacker who holds the key.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::domain::request::NAME_PREFIX;
pub use crate::evidence::EventRecord;
use crate::keyfile::{self, KeyFileError};

type HmacSha256 = Hmac<Sha256>;

/// The `prev` of a request's first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// The name of the development key file `serve` creates in the data
/// directory when no key file is configured.
pub const DEV_AUDIT_KEY_FILE: &str = "audit.key";

/// Shortest key accepted, in bytes.
const MIN_KEY_BYTES: usize = 32;
/// Hex digits of an audit key id.
pub const AUDIT_KEY_ID_LEN: usize = keyfile::ID_LEN;

/// The keys of the chain: a primary, which chains new events, and older
/// keys, which still verify what they chained. Cheap to clone; its `Debug`
/// shows the key ids, nothing of the keys.
#[derive(Clone)]
pub struct AuditKey(Arc<[AuditEntry]>);

struct AuditEntry {
    id: Arc<str>,
    secret: Box<[u8]>,
}

impl AuditEntry {
    fn new(secret: &[u8]) -> Self {
        Self {
            id: audit_key_id(secret).into(),
            secret: secret.into(),
        }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length; the error is unreachable.
        match HmacSha256::new_from_slice(&self.secret) {
            Ok(mac) => mac,
            Err(_) => unreachable_hmac(),
        }
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditKey({})", self.ids().join(", "))
    }
}

/// The id of audit key `secret`: names it in stored hashes without
/// telling anything of it.
fn audit_key_id(secret: &[u8]) -> String {
    keyfile::key_id("gdpr-intake audit key id", secret)
}

/// Why an audit key file cannot be used. Says which file, never what it
/// holds.
pub type AuditKeyError = KeyFileError;

/// The audit ring's file: keys of at least 32 bytes.
const FILE: keyfile::Spec = keyfile::Spec {
    ring: "audit",
    wants: "at least 32",
    fresh_len: MIN_KEY_BYTES,
    accept: |k| k.len() >= MIN_KEY_BYTES,
    id_of: audit_key_id,
};

impl AuditKey {
    /// A ring of one key, from raw bytes; `None` if shorter than 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Self::ring(&[bytes])
    }

    /// A ring of `keys`, the first the primary; `None` when empty, or when
    /// a key is shorter than 32 bytes or comes twice.
    pub fn ring(keys: &[&[u8]]) -> Option<Self> {
        let mut entries: Vec<AuditEntry> = Vec::with_capacity(keys.len());
        for key in keys {
            if key.len() < MIN_KEY_BYTES {
                return None;
            }
            let entry = AuditEntry::new(key);
            if entries.iter().any(|e| e.id == entry.id) {
                return None;
            }
            entries.push(entry);
        }
        (!entries.is_empty()).then(|| Self(entries.into()))
    }

    /// The primary key's id: the key new events are chained with.
    pub fn primary_id(&self) -> &str {
        &self.primary().id
    }

    /// Every key id of the ring, the primary first.
    pub fn ids(&self) -> Vec<&str> {
        self.0.iter().map(|e| &*e.id).collect()
    }

    /// The primary key's id, shared: what every event chained with it
    /// stores.
    pub fn primary_key_id(&self) -> Arc<str> {
        self.primary().id.clone()
    }

    fn primary(&self) -> &AuditEntry {
        // A ring is never empty (`ring` refuses it).
        &self.0[0]
    }

    fn entry(&self, id: &str) -> Option<&AuditEntry> {
        self.0.iter().find(|e| &*e.id == id)
    }

    /// Reads a key file: one key per line (at least 32 bytes in base64),
    /// the first the primary; blank lines and lines starting with `#`
    /// ignored.
    pub fn from_file(path: &Path) -> Result<Self, AuditKeyError> {
        let keys = keyfile::read(path, FILE)?;
        Self::from_keys(&keys, path)
    }

    /// The development key in `data_dir`, created (readable by its owner
    /// only) if missing. Returns the key and whether it was created.
    pub fn ensure_dev(data_dir: &Path) -> Result<(Self, bool), AuditKeyError> {
        let path = data_dir.join(DEV_AUDIT_KEY_FILE);
        let (keys, created) = keyfile::ensure_dev(&path, FILE)?;
        Ok((Self::from_keys(&keys, &path)?, created))
    }

    /// The ring of the keys a file held (checked there).
    fn from_keys(keys: &[Vec<u8>], path: &Path) -> Result<Self, AuditKeyError> {
        let slices: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        Self::ring(&slices).ok_or_else(|| AuditKeyError::Empty {
            ring: FILE.ring,
            path: path.to_owned(),
        })
    }
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    // Never called: `new_from_slice` accepts every key length for HMAC.
    // Falls back to the empty key rather than panicking in a write path.
    <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default())
}

/// An event as the chain covers it: every column of `request_events` but
/// the hash, as stored.
#[derive(Clone, Copy, Debug)]
pub struct EventFields<'a> {
    pub controller_id: &'a str,
    pub request: Uuid,
    pub sequence: i64,
    pub event_type: &'a str,
    /// Microseconds since the Unix epoch.
    pub time: i64,
    pub actor_id: &'a str,
    pub actor_role: &'a str,
    pub from_state: Option<&'a str>,
    pub to_state: &'a str,
    pub reason: &'a str,
    pub task: Option<Uuid>,
}

fn put_str(mac: &mut HmacSha256, s: &str) {
    // Length-prefixed, so that no two different field lists encode alike.
    mac.update(&(s.len() as u64).to_be_bytes());
    mac.update(s.as_bytes());
}

fn put_opt_str(mac: &mut HmacSha256, s: Option<&str>) {
    match s {
        None => mac.update(&[0]),
        Some(s) => {
            mac.update(&[1]);
            put_str(mac, s);
        }
    }
}

/// `HMAC(key, prev || canonical encoding of fields)`, with the ring's
/// primary key.
pub fn event_hash(key: &AuditKey, prev: &[u8; 32], f: &EventFields<'_>) -> [u8; 32] {
    event_mac(key.primary(), prev, f)
}

fn event_mac(key: &AuditEntry, prev: &[u8; 32], f: &EventFields<'_>) -> [u8; 32] {
    let mut mac = key.mac();
    mac.update(b"gdpr-intake audit event v1\0");
    mac.update(prev);
    put_str(&mut mac, f.controller_id);
    mac.update(f.request.as_bytes());
    mac.update(&f.sequence.to_be_bytes());
    put_str(&mut mac, f.event_type);
    mac.update(&f.time.to_be_bytes());
    put_str(&mut mac, f.actor_id);
    put_str(&mut mac, f.actor_role);
    put_opt_str(&mut mac, f.from_state);
    put_str(&mut mac, f.to_state);
    put_str(&mut mac, f.reason);
    match f.task {
        None => mac.update(&[0]),
        Some(task) => {
            mac.update(&[1]);
            mac.update(task.as_bytes());
        }
    }
    mac.finalize().into_bytes().into()
}

/// The head of request `request`'s trail whose last event is `sequence`
/// with `hash`, with the ring's primary key.
pub fn head_hash(key: &AuditKey, request: Uuid, sequence: i64, hash: &[u8; 32]) -> [u8; 32] {
    head_mac(key.primary(), request, sequence, hash)
}

fn head_mac(key: &AuditEntry, request: Uuid, sequence: i64, hash: &[u8; 32]) -> [u8; 32] {
    let mut mac = key.mac();
    mac.update(b"gdpr-intake audit head v1\0");
    mac.update(request.as_bytes());
    mac.update(&sequence.to_be_bytes());
    mac.update(hash);
    mac.finalize().into_bytes().into()
}

/// Lower-case hex, as the hashes are stored.
pub fn to_hex(bytes: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A hash or head as stored: `<key id>.<hex>`, naming the key that made
/// it.
pub fn stamp(key_id: &str, bytes: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(key_id.len() + 1 + 64);
    s.push_str(key_id);
    s.push('.');
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A stored hash or head back to the id of its key (`None` for one
/// written before key ids) and its bytes; `None` if it is neither form.
pub fn parse_stamped(s: &str) -> Option<(Option<&str>, [u8; 32])> {
    match s.split_once('.') {
        None => Some((None, from_hex(s)?)),
        Some((id, hex)) if is_key_id(id) => Some((Some(id), from_hex(hex)?)),
        Some(_) => None,
    }
}

fn is_key_id(s: &str) -> bool {
    s.len() == AUDIT_KEY_ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A stored hash back to bytes; `None` if it is not 64 hex digits.
pub fn from_hex(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// One stored event with its hash, as `audit verify` reads it: the event
/// as an evidence bundle records it, and the hash that chains it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub record: EventRecord,
    /// As stored: `<key id>.<hex>`, or bare hex before key ids.
    pub hash: String,
}

/// One request's trail as stored: its head and every event in sequence
/// order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditTrail {
    pub id: Uuid,
    pub controller_id: String,
    pub head: Option<String>,
    pub events: Vec<StoredEvent>,
}

impl AuditTrail {
    fn fields<'a>(&'a self, e: &'a StoredEvent, sequence: i64) -> EventFields<'a> {
        let e = &e.record;
        EventFields {
            controller_id: &self.controller_id,
            request: self.id,
            sequence,
            event_type: &e.event_type,
            time: e.time,
            actor_id: &e.actor_id,
            actor_role: &e.actor_role,
            from_state: e.from_state.as_deref(),
            to_state: &e.to_state,
            reason: &e.reason,
            task: e.task,
        }
    }
}

/// What is wrong with a trail, at its first broken event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The event's fields or hash were changed.
    Altered,
    /// The event with this sequence is missing.
    Removed,
    /// Events after this sequence were removed (or the head was changed).
    TruncatedAfter,
    /// The event was not written by the service.
    Inserted,
    /// The event was written with another sequence, `was`.
    Reordered { was: i64 },
    /// The request has no events at all.
    Empty,
    /// The event (or the head, at the last event) names a key the ring
    /// lacks, so it cannot be checked.
    UnknownKey { id: String },
}

/// The first broken event of a request's trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// `dataSubjectRequests/{id}`.
    pub request: String,
    pub sequence: i64,
    pub problem: Problem,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (request, seq) = (&self.request, self.sequence);
        match &self.problem {
            Problem::Altered => write!(
                f,
                "{request}: event {seq} was altered (its fields or hash do not match the chain)"
            ),
            Problem::Removed => write!(f, "{request}: event {seq} was removed"),
            Problem::TruncatedAfter => write!(
                f,
                "{request}: events after {seq} were removed (the trail's head does not match)"
            ),
            Problem::Inserted => write!(
                f,
                "{request}: event {seq} was inserted (it is not part of the chain)"
            ),
            Problem::Reordered { was } => write!(
                f,
                "{request}: event {seq} was reordered (it was written as event {was})"
            ),
            Problem::Empty => write!(f, "{request}: every event was removed"),
            Problem::UnknownKey { id } => write!(
                f,
                "{request}: event {seq} was chained with audit key {id}, which the ring lacks \
                 (add it to the audit key file to check this trail)"
            ),
        }
    }
}

/// What a stored hash or head says of the keys it may have been made with.
enum KeysFor<'k> {
    /// It is neither form of a stored hash.
    Unparsed,
    /// It names a key the ring lacks.
    Missing(String),
    /// Its bytes, and the key it names, or, for one written before key
    /// ids, every key of the ring.
    Found([u8; 32], Vec<&'k AuditEntry>),
}

fn keys_for<'k>(ring: &'k AuditKey, stored: &str) -> KeysFor<'k> {
    match parse_stamped(stored) {
        None => KeysFor::Unparsed,
        Some((None, bytes)) => KeysFor::Found(bytes, ring.0.iter().collect()),
        Some((Some(id), bytes)) => match ring.entry(id) {
            Some(entry) => KeysFor::Found(bytes, vec![entry]),
            None => KeysFor::Missing(id.to_owned()),
        },
    }
}

/// Checks one trail against the ring; the first problem found, if any.
pub fn verify_trail(ring: &AuditKey, trail: &AuditTrail) -> Option<Finding> {
    let finding = |sequence, problem| {
        Some(Finding {
            request: format!("{NAME_PREFIX}{}", trail.id),
            sequence,
            problem,
        })
    };
    let mut prev = GENESIS;
    let mut expected = 1;
    for (i, event) in trail.events.iter().enumerate() {
        if event.record.sequence != expected {
            // Sequences only grow (the primary key and the ordering), so a
            // jump means the expected one is gone.
            return finding(expected, Problem::Removed);
        }
        let (stored, keys) = match keys_for(ring, &event.hash) {
            KeysFor::Unparsed => return finding(event.record.sequence, Problem::Altered),
            KeysFor::Missing(id) => {
                return finding(event.record.sequence, Problem::UnknownKey { id });
            }
            KeysFor::Found(bytes, keys) => (bytes, keys),
        };
        let fields = trail.fields(event, event.record.sequence);
        if keys.iter().any(|k| event_mac(k, &prev, &fields) == stored) {
            prev = stored;
            expected += 1;
            continue;
        }
        return finding(
            event.record.sequence,
            classify(&keys, trail, i, &prev, ring),
        );
    }
    let Some(last) = trail.events.last() else {
        return finding(0, Problem::Empty);
    };
    match trail.head.as_deref().map(|h| keys_for(ring, h)) {
        Some(KeysFor::Found(head, keys))
            if keys
                .iter()
                .any(|k| head_mac(k, trail.id, last.record.sequence, &prev) == head) =>
        {
            None
        }
        Some(KeysFor::Missing(id)) => finding(last.record.sequence, Problem::UnknownKey { id }),
        _ => finding(last.record.sequence, Problem::TruncatedAfter),
    }
}

/// Why event `i`, which does not follow from `prev` under any of `keys`
/// (those its hash names), is broken.
fn classify(
    keys: &[&AuditEntry],
    trail: &AuditTrail,
    i: usize,
    prev: &[u8; 32],
    ring: &AuditKey,
) -> Problem {
    let event = &trail.events[i];
    let Some((_, stored)) = parse_stamped(&event.hash) else {
        return Problem::Altered;
    };
    // Moved: the event is intact for another sequence, after GENESIS or
    // after some other event of the trail.
    let mut prevs: Vec<[u8; 32]> = vec![GENESIS];
    prevs.extend(
        trail
            .events
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, e)| parse_stamped(&e.hash).map(|(_, h)| h)),
    );
    let last = trail.events.last().map_or(0, |e| e.record.sequence);
    for was in (1..=last).filter(|s| *s != event.record.sequence) {
        let fields = trail.fields(event, was);
        if keys
            .iter()
            .any(|k| prevs.iter().any(|p| event_mac(k, p, &fields) == stored))
        {
            return Problem::Reordered { was };
        }
    }
    // Inserted: the chain continues past it as if it were not there.
    let follows = |stored: &str, check: &dyn Fn(&AuditEntry) -> [u8; 32]| matches!(keys_for(ring, stored), KeysFor::Found(bytes, keys) if keys.iter().any(|k| check(k) == bytes));
    match trail.events.get(i + 1) {
        Some(next) => {
            let fields = trail.fields(next, next.record.sequence - 1);
            if follows(&next.hash, &|k| event_mac(k, prev, &fields)) {
                return Problem::Inserted;
            }
        }
        None => {
            if let Some(head) = trail.head.as_deref()
                && follows(head, &|k| {
                    head_mac(k, trail.id, event.record.sequence - 1, prev)
                })
            {
                return Problem::Inserted;
            }
        }
    }
    Problem::Altered
}

/// What `audit verify` saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub requests: u64,
    pub events: u64,
    /// The first broken trail's first problem; `None` if all are intact.
    pub finding: Option<Finding>,
}

/// Walks every request's trail, `page` requests at a time in id order,
/// and stops at the first problem.
pub async fn verify(store: &dyn Store, ring: &AuditKey, page: u32) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let mut after = None;
    loop {
        let trails = store.audit_trails(after, page.max(1)).await?;
        let Some(last) = trails.last() else {
            return Ok(report);
        };
        after = Some(last.id);
        for trail in &trails {
            report.requests += 1;
            report.events += trail.events.len() as u64;
            if let Some(finding) = verify_trail(ring, trail) {
                report.finding = Some(finding);
                return Ok(report);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use std::fs;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    fn key() -> AuditKey {
        AuditKey::from_bytes(&[7; 32]).unwrap()
    }

    fn event(sequence: i64, reason: &str) -> StoredEvent {
        StoredEvent {
            record: EventRecord {
                sequence,
                event_type: "submitted".to_owned(),
                time: 1_000 + sequence,
                actor_id: "a".to_owned(),
                actor_role: "controller".to_owned(),
                from_state: None,
                to_state: "in_progress".to_owned(),
                reason: reason.to_owned(),
                task: None,
            },
            hash: String::new(),
        }
    }

    /// A trail of `n` events chained with `key()`, stored as before key
    /// ids (bare hex).
    fn trail(n: i64) -> AuditTrail {
        let mut t = AuditTrail {
            id: Uuid::from_u128(1),
            controller_id: "acme".to_owned(),
            head: None,
            events: Vec::new(),
        };
        let mut prev = GENESIS;
        for s in 1..=n {
            let mut e = event(s, &format!("r{s}"));
            let h = event_hash(&key(), &prev, &t.fields(&e, s));
            e.hash = to_hex(&h);
            t.events.push(e);
            prev = h;
        }
        t.head = Some(to_hex(&head_hash(&key(), t.id, n, &prev)));
        t
    }

    /// A trail whose event `s` (from 1) is chained with the primary of
    /// `keys[s - 1]`, each hash naming its key; the head with the last's.
    fn rotated_trail(keys: &[&AuditKey]) -> AuditTrail {
        let mut t = AuditTrail {
            id: Uuid::from_u128(2),
            controller_id: "acme".to_owned(),
            head: None,
            events: Vec::new(),
        };
        let mut prev = GENESIS;
        for (s, key) in (1..).zip(keys) {
            let mut e = event(s, &format!("r{s}"));
            let h = event_hash(key, &prev, &t.fields(&e, s));
            e.hash = stamp(key.primary_id(), &h);
            t.events.push(e);
            prev = h;
        }
        let (n, last) = (keys.len() as i64, keys[keys.len() - 1]);
        t.head = Some(stamp(last.primary_id(), &head_hash(last, t.id, n, &prev)));
        t
    }

    fn problem(t: &AuditTrail) -> Option<(i64, Problem)> {
        verify_trail(&key(), t).map(|f| (f.sequence, f.problem))
    }

    #[test]
    fn an_intact_trail_verifies() {
        assert_eq!(problem(&trail(4)), None);
    }

    #[test]
    fn another_key_fails() {
        let other = AuditKey::from_bytes(&[8; 32]).unwrap();
        assert!(verify_trail(&other, &trail(2)).is_some());
    }

    #[test]
    fn each_kind_of_tampering_is_named() {
        let mut t = trail(4);
        t.events[1].record.reason = "changed".to_owned();
        assert_eq!(problem(&t), Some((2, Problem::Altered)));

        let mut t = trail(4);
        t.events.remove(1);
        assert_eq!(problem(&t), Some((2, Problem::Removed)));

        let mut t = trail(4);
        t.events.pop();
        assert_eq!(problem(&t), Some((3, Problem::TruncatedAfter)));

        let mut t = trail(4);
        let mut forged = event(5, "forged");
        forged.hash = to_hex(&[1; 32]);
        t.events.push(forged);
        assert_eq!(problem(&t), Some((5, Problem::Inserted)));

        let mut t = trail(4);
        t.events.swap(1, 2);
        t.events[1].record.sequence = 2;
        t.events[2].record.sequence = 3;
        assert_eq!(problem(&t), Some((2, Problem::Reordered { was: 3 })));

        let mut t = trail(1);
        t.events.clear();
        assert_eq!(problem(&t), Some((0, Problem::Empty)));
    }

    #[test]
    fn a_trail_chained_under_two_keys_verifies_with_both_in_the_ring() {
        let old = AuditKey::from_bytes(&[7; 32]).unwrap();
        let new = AuditKey::from_bytes(&[9; 32]).unwrap();
        let t = rotated_trail(&[&old, &old, &new, &new]);
        for ring in [
            AuditKey::ring(&[&[9; 32], &[7; 32]]).unwrap(),
            AuditKey::ring(&[&[7; 32], &[9; 32]]).unwrap(),
        ] {
            assert_eq!(verify_trail(&ring, &t), None);
            let mut altered = t.clone();
            altered.events[2].record.reason = "changed".to_owned();
            let found = verify_trail(&ring, &altered).unwrap();
            assert_eq!((found.sequence, found.problem), (3, Problem::Altered));
            let mut altered = t.clone();
            altered.events[0].record.reason = "changed".to_owned();
            let found = verify_trail(&ring, &altered).unwrap();
            assert_eq!((found.sequence, found.problem), (1, Problem::Altered));
            // The key id swapped for the other key's: still an alteration.
            let mut swapped = t.clone();
            let hash = swapped.events[1].hash.split_once('.').unwrap().1.to_owned();
            swapped.events[1].hash = format!("{}.{hash}", new.primary_id());
            let found = verify_trail(&ring, &swapped).unwrap();
            assert_eq!((found.sequence, found.problem), (2, Problem::Altered));
            let mut truncated = t.clone();
            truncated.events.pop();
            let found = verify_trail(&ring, &truncated).unwrap();
            assert_eq!(
                (found.sequence, found.problem),
                (3, Problem::TruncatedAfter)
            );
        }
        // Without the old key the first event cannot be checked, and says
        // which key it needs.
        let found = verify_trail(&new, &t).unwrap();
        assert!(found.to_string().contains(old.primary_id()));
        assert_eq!(
            (found.sequence, found.problem),
            (
                1,
                Problem::UnknownKey {
                    id: old.primary_id().to_owned()
                }
            )
        );
        // A trail from before key ids still verifies once the ring grew.
        let legacy = trail(3);
        let grown = AuditKey::ring(&[&[9; 32], &[7; 32]]).unwrap();
        assert_eq!(verify_trail(&grown, &legacy), None);
        let mut moved = rotated_trail(&[&old, &new, &new]);
        moved.events.swap(1, 2);
        moved.events[1].record.sequence = 2;
        moved.events[2].record.sequence = 3;
        let found = verify_trail(&grown, &moved).unwrap();
        assert_eq!(
            (found.sequence, found.problem),
            (2, Problem::Reordered { was: 3 })
        );
    }

    #[test]
    fn stamped_hashes_parse_back() {
        let h = [0x5a; 32];
        let s = stamp("0123456789ab", &h);
        assert_eq!(parse_stamped(&s), Some((Some("0123456789ab"), h)));
        assert_eq!(parse_stamped(&to_hex(&h)), Some((None, h)));
        assert_eq!(parse_stamped("0123456789AB.00"), None);
        assert_eq!(parse_stamped(&format!("short.{}", to_hex(&h))), None);
    }

    #[test]
    fn hex_round_trips() {
        let h = [0xab; 32];
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex("zz"), None);
    }

    #[test]
    fn key_files_are_checked_and_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = AuditKey::ensure_dev(dir.path()).unwrap();
        assert!(created);
        let (again, created) = AuditKey::ensure_dev(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(first.ids(), again.ids());
        let short = dir.path().join("short");
        fs::write(&short, STANDARD.encode([1u8; 8])).unwrap();
        assert!(matches!(
            AuditKey::from_file(&short),
            Err(AuditKeyError::Invalid { line: 1, .. })
        ));
        assert_eq!(
            format!("{first:?}"),
            format!("AuditKey({})", first.primary_id())
        );
        let ring = dir.path().join("ring");
        let (a, b) = (STANDARD.encode([1u8; 32]), STANDARD.encode([2u8; 40]));
        fs::write(&ring, format!("# newest first\n{b}\n\n{a}\n")).unwrap();
        let read = AuditKey::from_file(&ring).unwrap();
        assert_eq!(
            read.ids(),
            vec![audit_key_id(&[2; 40]), audit_key_id(&[1; 32])]
        );
        fs::write(&ring, format!("{a}\n{a}\n")).unwrap();
        assert!(matches!(
            AuditKey::from_file(&ring),
            Err(AuditKeyError::Duplicate { id, .. }) if id == audit_key_id(&[1; 32])
        ));
        fs::write(&ring, "# nothing\n").unwrap();
        assert!(matches!(
            AuditKey::from_file(&ring),
            Err(AuditKeyError::Empty { .. })
        ));
    }
}
