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
//! Not covered: a request deleted with its whole trail (nothing is left to
//! check), and an attacker who holds the key.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::domain::request::NAME_PREFIX;

type HmacSha256 = Hmac<Sha256>;

/// The `prev` of a request's first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// The name of the development key file `serve` creates in the data
/// directory when no key file is configured.
pub const DEV_AUDIT_KEY_FILE: &str = "audit.key";

/// Shortest key accepted, in bytes.
const MIN_KEY_BYTES: usize = 32;

/// The secret that keys the chain. Cheap to clone; its `Debug` shows
/// nothing of it.
#[derive(Clone)]
pub struct AuditKey(Arc<[u8]>);

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

/// Why a key file cannot be used. Says which file, never what it holds.
#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    #[error("cannot {action} the audit key file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the audit key file {path} must hold at least {MIN_KEY_BYTES} random bytes in base64")]
    Invalid { path: PathBuf },
}

impl AuditKey {
    /// A key from raw bytes; `None` if shorter than 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (bytes.len() >= MIN_KEY_BYTES).then(|| Self(Arc::from(bytes)))
    }

    /// A fresh random key: only ever written to a file first
    /// ([`AuditKey::ensure_dev`]), so that no store is keyed with one that
    /// is gone when the process ends.
    fn random() -> Self {
        let mut bytes = [0u8; MIN_KEY_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self(Arc::from(&bytes[..]))
    }

    /// Reads a key file: at least 32 bytes, base64 (standard alphabet),
    /// surrounding whitespace ignored.
    pub fn from_file(path: &Path) -> Result<Self, AuditKeyError> {
        let text = fs::read_to_string(path).map_err(|source| AuditKeyError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })?;
        STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|bytes| Self::from_bytes(&bytes))
            .ok_or_else(|| AuditKeyError::Invalid {
                path: path.to_owned(),
            })
    }

    /// The development key in `data_dir`, created (readable by its owner
    /// only) if missing. Returns the key and whether it was created.
    pub fn ensure_dev(data_dir: &Path) -> Result<(Self, bool), AuditKeyError> {
        let path = data_dir.join(DEV_AUDIT_KEY_FILE);
        let io = |action| {
            let path = path.clone();
            move |source| AuditKeyError::Io {
                action,
                path,
                source,
            }
        };
        fs::create_dir_all(data_dir).map_err(io("create the directory of"))?;
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(mut file) => {
                let key = Self::random();
                let mut text = STANDARD.encode(&key.0);
                text.push('\n');
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io("write"))?;
                Ok((key, true))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Self::from_file(&path).map(|key| (key, false))
            }
            Err(e) => Err(io("create")(e)),
        }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length; the error is unreachable.
        match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable_hmac(),
        }
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

/// `HMAC(key, prev || canonical encoding of fields)`.
pub fn event_hash(key: &AuditKey, prev: &[u8; 32], f: &EventFields<'_>) -> [u8; 32] {
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
/// with `hash`.
pub fn head_hash(key: &AuditKey, request: Uuid, sequence: i64, hash: &[u8; 32]) -> [u8; 32] {
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

/// One stored event with its hash, as `audit verify` reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub sequence: i64,
    pub event_type: String,
    pub time: i64,
    pub actor_id: String,
    pub actor_role: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub reason: String,
    pub task: Option<Uuid>,
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
        }
    }
}

/// Checks one trail; the first problem found, if any.
pub fn verify_trail(key: &AuditKey, trail: &AuditTrail) -> Option<Finding> {
    let finding = |sequence, problem| {
        Some(Finding {
            request: format!("{NAME_PREFIX}{}", trail.id),
            sequence,
            problem,
        })
    };
    let head = trail.head.as_deref().and_then(from_hex);
    let mut prev = GENESIS;
    let mut expected = 1;
    for (i, event) in trail.events.iter().enumerate() {
        if event.sequence != expected {
            // Sequences only grow (the primary key and the ordering), so a
            // jump means the expected one is gone.
            return finding(expected, Problem::Removed);
        }
        let stored = from_hex(&event.hash);
        let computed = event_hash(key, &prev, &trail.fields(event, event.sequence));
        if stored == Some(computed) {
            prev = computed;
            expected += 1;
            continue;
        }
        return finding(event.sequence, classify(key, trail, i, &prev, head));
    }
    let Some(last) = trail.events.last() else {
        return finding(0, Problem::Empty);
    };
    if head != Some(head_hash(key, trail.id, last.sequence, &prev)) {
        return finding(last.sequence, Problem::TruncatedAfter);
    }
    None
}

/// Why event `i`, which does not follow from `prev`, is broken.
fn classify(
    key: &AuditKey,
    trail: &AuditTrail,
    i: usize,
    prev: &[u8; 32],
    head: Option<[u8; 32]>,
) -> Problem {
    let event = &trail.events[i];
    let Some(stored) = from_hex(&event.hash) else {
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
            .filter_map(|(_, e)| from_hex(&e.hash)),
    );
    let last = trail.events.last().map_or(0, |e| e.sequence);
    for was in (1..=last).filter(|s| *s != event.sequence) {
        let fields = trail.fields(event, was);
        if prevs.iter().any(|p| event_hash(key, p, &fields) == stored) {
            return Problem::Reordered { was };
        }
    }
    // Inserted: the chain continues past it as if it were not there.
    match trail.events.get(i + 1) {
        Some(next) => {
            let fields = trail.fields(next, next.sequence - 1);
            if from_hex(&next.hash) == Some(event_hash(key, prev, &fields)) {
                return Problem::Inserted;
            }
        }
        None => {
            if head == Some(head_hash(key, trail.id, event.sequence - 1, prev)) {
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
pub async fn verify(store: &dyn Store, key: &AuditKey, page: u32) -> Result<Report, StoreError> {
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
            if let Some(finding) = verify_trail(key, trail) {
                report.finding = Some(finding);
                return Ok(report);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;

    fn key() -> AuditKey {
        AuditKey::from_bytes(&[7; 32]).unwrap()
    }

    fn event(sequence: i64, reason: &str) -> StoredEvent {
        StoredEvent {
            sequence,
            event_type: "submitted".to_owned(),
            time: 1_000 + sequence,
            actor_id: "a".to_owned(),
            actor_role: "controller".to_owned(),
            from_state: None,
            to_state: "in_progress".to_owned(),
            reason: reason.to_owned(),
            task: None,
            hash: String::new(),
        }
    }

    /// A trail of `n` events chained with `key()`.
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
        t.events[1].reason = "changed".to_owned();
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
        t.events[1].sequence = 2;
        t.events[2].sequence = 3;
        assert_eq!(problem(&t), Some((2, Problem::Reordered { was: 3 })));

        let mut t = trail(1);
        t.events.clear();
        assert_eq!(problem(&t), Some((0, Problem::Empty)));
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
        assert_eq!(first.0, again.0);
        let short = dir.path().join("short");
        fs::write(&short, STANDARD.encode([1u8; 8])).unwrap();
        assert!(matches!(
            AuditKey::from_file(&short),
            Err(AuditKeyError::Invalid { .. })
        ));
        assert_eq!(format!("{first:?}"), "AuditKey(..)");
    }
}
