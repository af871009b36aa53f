//! Evidence bundles: one request's record and every event of its trail, in
//! a file a third party checks with a public key alone.
//!
//! The audit trail's HMAC chain ([`crate::store::audit`]) proves integrity
//! to whoever holds the audit key, which never leaves the service. A
//! bundle carries its own proof instead: a chain of SHA-256 links over the
//! request and the events, each link signed with an Ed25519 evidence key,
//! and a signed head that fixes the number of events. The public keys are
//! published as a file shaped like a JWKS (RFC 8037 `OKP` keys), so
//! verifying needs neither the service nor a secret.
//!
//! **The format** (`gdpr-intake evidence bundle v1`), a JSON object:
//! `format`; `request` (the record: its non-personal fields, and personal
//! ones only when the export asked for them); `events`, each
//! `{"event": {…}, "link": <hex>, "signature": <base64url>}`, one per
//! line; `request_seal` (`link_0` and its signature); `head` (`events`,
//! `link`, `signature`); `key_id`; `exported_at`. With `canon(v)` the value's JSON with object keys sorted
//! and no white space (strings escaped as JSON escapes them):
//!
//! - `link_0 = SHA-256("gdpr-intake evidence v1 request\0" || canon(request))`
//! - `link_i = SHA-256("gdpr-intake evidence v1 event\0" || link_{i-1} || canon(event_i))`
//! - the request seal's signature is over `"gdpr-intake evidence v1 record\0" || link_0`
//! - event `i`'s signature is over `"gdpr-intake evidence v1 link\0" || link_i`
//! - the head's over `"gdpr-intake evidence v1 head\0" || link_n || n (u64, big-endian)`.
//!
//! Events are numbered from 1 by their `sequence`. [`verify`] names the
//! first event that is altered (its link or signature does not hold),
//! removed (a sequence skipped, or events cut from the end: the head's
//! count), or inserted (it does not hold, yet the next event chains on as
//! if it were not there).
//!
//! **The keys.** `--evidence-key-file` holds one Ed25519 private key per
//! line (its 32-byte seed, base64); the first signs, the others stay only
//! so that `audit public-keys` still publishes them. A key's id is derived
//! from its public key, so a verifier can check it too.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::keyfile::{self, KeyFileError};

/// What a bundle's `format` says.
pub const FORMAT: &str = "gdpr-intake evidence bundle v1";
/// The name of the development key file `serve` creates in the data
/// directory when no key file is configured.
pub const DEV_EVIDENCE_KEY_FILE: &str = "evidence.key";

const SEED_BYTES: usize = 32;
const REQUEST_LABEL: &[u8] = b"gdpr-intake evidence v1 request\0";
const EVENT_LABEL: &[u8] = b"gdpr-intake evidence v1 event\0";
const LINK_LABEL: &[u8] = b"gdpr-intake evidence v1 link\0";
const RECORD_LABEL: &[u8] = b"gdpr-intake evidence v1 record\0";
const HEAD_LABEL: &[u8] = b"gdpr-intake evidence v1 head\0";
const KEY_ID_LABEL: &str = "gdpr-intake evidence key id";

/// The signing keys: the first signs. Cheap to clone; its `Debug` shows
/// the key ids only.
#[derive(Clone)]
pub struct EvidenceKey(Arc<[Signer]>);

struct Signer {
    id: String,
    pair: Ed25519KeyPair,
}

impl fmt::Debug for EvidenceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.0.iter().map(|s| s.id.as_str()).collect();
        write!(f, "EvidenceKey({})", ids.join(", "))
    }
}

/// The id of an evidence key, from its public key: the first 6 bytes of
/// SHA-256 of a fixed label and the key, in hex.
pub fn key_id(public_key: &[u8]) -> String {
    keyfile::key_id(KEY_ID_LABEL, public_key)
}

/// The id of the key whose seed is `seed` (32 bytes: the file's check
/// comes first).
fn seed_id(seed: &[u8]) -> String {
    Ed25519KeyPair::from_seed_unchecked(seed)
        .map(|pair| key_id(pair.public_key().as_ref()))
        .unwrap_or_default()
}

/// The evidence ring's file: Ed25519 seeds of 32 bytes.
const FILE: keyfile::Spec = keyfile::Spec {
    ring: "evidence",
    wants: "exactly 32 (an Ed25519 seed)",
    fresh_len: SEED_BYTES,
    accept: |k| k.len() == SEED_BYTES,
    id_of: seed_id,
};

/// Why an evidence key file cannot be used. Names the file, the line or
/// the key id, never what it holds.
pub type EvidenceKeyError = KeyFileError;

impl EvidenceKey {
    /// A ring of Ed25519 keys from their 32-byte seeds, the first signing;
    /// `None` when empty or a seed is not 32 bytes.
    pub fn from_seeds(seeds: &[&[u8]]) -> Option<Self> {
        let signers = seeds
            .iter()
            .map(|seed| {
                let pair = Ed25519KeyPair::from_seed_unchecked(seed).ok()?;
                (seed.len() == SEED_BYTES).then(|| Signer {
                    id: key_id(pair.public_key().as_ref()),
                    pair,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        (!signers.is_empty()).then(|| Self(signers.into()))
    }

    /// Reads a key file: one seed per line in base64, the first signing;
    /// blank lines and `#` comments ignored.
    pub fn from_file(path: &Path) -> Result<Self, EvidenceKeyError> {
        Self::from_keys(&keyfile::read(path, FILE)?, path)
    }

    /// The development key in `data_dir`, created (readable by its owner
    /// only) if missing; and whether it was created.
    pub fn ensure_dev(data_dir: &Path) -> Result<(Self, bool), EvidenceKeyError> {
        let path = data_dir.join(DEV_EVIDENCE_KEY_FILE);
        let (seeds, created) = keyfile::ensure_dev(&path, FILE)?;
        Ok((Self::from_keys(&seeds, &path)?, created))
    }

    /// The ring of the seeds a file held (checked there).
    fn from_keys(seeds: &[Vec<u8>], path: &Path) -> Result<Self, EvidenceKeyError> {
        let slices: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
        Self::from_seeds(&slices).ok_or_else(|| EvidenceKeyError::Empty {
            ring: FILE.ring,
            path: path.to_owned(),
        })
    }

    /// The id of the key that signs.
    pub fn signing_id(&self) -> &str {
        &self.0[0].id
    }

    /// Every public key, as a JWKS-shaped document (RFC 8037 `OKP`,
    /// `Ed25519`, `x` in base64url), the signing key first.
    pub fn public_keys(&self) -> Value {
        let keys: Vec<Value> = self
            .0
            .iter()
            .map(|s| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "use": "sig",
                    "alg": "EdDSA",
                    "kid": s.id,
                    "x": URL_SAFE_NO_PAD.encode(s.pair.public_key().as_ref()),
                })
            })
            .collect();
        json!({ "keys": keys })
    }

    fn sign(&self, label: &[u8], bytes: &[u8]) -> String {
        let mut message = Vec::with_capacity(label.len() + bytes.len());
        message.extend_from_slice(label);
        message.extend_from_slice(bytes);
        URL_SAFE_NO_PAD.encode(self.0[0].pair.sign(&message).as_ref())
    }
}

/// One event of a trail as a bundle records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub sequence: i64,
    pub event_type: String,
    /// Microseconds since the Unix epoch.
    pub time: i64,
    pub actor_id: String,
    pub actor_role: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub reason: String,
    pub task: Option<uuid::Uuid>,
}

impl EventRecord {
    fn to_json(&self) -> Value {
        let time = jiff::Timestamp::from_microsecond(self.time)
            .map(|t| t.to_string())
            .unwrap_or_default();
        json!({
            "sequence": self.sequence,
            "type": self.event_type,
            "time": time,
            "time_us": self.time,
            "actor": self.actor_id,
            "actor_role": self.actor_role,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "reason": self.reason,
            "task": self.task.map(|t| format!("tasks/{t}")),
        })
    }
}

/// `value` as JSON with object keys sorted and no white space.
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn request_link(request: &Value) -> [u8; 32] {
    Sha256::new()
        .chain_update(REQUEST_LABEL)
        .chain_update(canonical(request))
        .finalize()
        .into()
}

fn event_link(prev: &[u8; 32], event: &Value) -> [u8; 32] {
    Sha256::new()
        .chain_update(EVENT_LABEL)
        .chain_update(prev)
        .chain_update(canonical(event))
        .finalize()
        .into()
}

/// What the head's signature covers: the last link, the number of events,
/// when the bundle was exported and the id of the key that signed it (each
/// string behind its length), so that none of them can be changed alone.
fn head_message(link: &[u8; 32], events: u64, exported_at: &str, key_id: &str) -> Vec<u8> {
    let mut m = link.to_vec();
    m.extend_from_slice(&events.to_be_bytes());
    for s in [exported_at, key_id] {
        m.extend_from_slice(&(s.len() as u64).to_be_bytes());
        m.extend_from_slice(s.as_bytes());
    }
    m
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A bundle of `request` (its record, built by the caller) and `events`,
/// signed with `key` at `exported_at`: the file's text, one event a line.
pub fn build(
    request: Value,
    events: &[EventRecord],
    key: &EvidenceKey,
    exported_at: jiff::Timestamp,
) -> String {
    let mut link = request_link(&request);
    let seal = json!({
        "link": hex(&link),
        "signature": key.sign(RECORD_LABEL, &link),
    });
    let mut lines = Vec::with_capacity(events.len());
    for event in events {
        let event = event.to_json();
        link = event_link(&link, &event);
        lines.push(json!({
            "event": event,
            "link": hex(&link),
            "signature": key.sign(LINK_LABEL, &link),
        }));
    }
    let exported_at = exported_at.to_string();
    let message = head_message(&link, events.len() as u64, &exported_at, key.signing_id());
    let head = json!({
        "events": events.len(),
        "link": hex(&link),
        "signature": key.sign(HEAD_LABEL, &message),
    });
    render(
        key.signing_id(),
        &exported_at,
        &request,
        &seal,
        &lines,
        &head,
    )
}

/// The bundle's text: its fields in a fixed order, one a line, each value
/// in canonical JSON, the events one a line. [`verify`] renders what it
/// parsed again and requires the same text, so a bundle holds each field
/// once, as written.
fn render(
    key_id: &str,
    exported_at: &str,
    request: &Value,
    seal: &Value,
    events: &[Value],
    head: &Value,
) -> String {
    let field = |name: &str, value: &Value| format!("  \"{name}\": {}", canonical(value));
    let events_block = if events.is_empty() {
        "  \"events\": []".to_owned()
    } else {
        let lines: Vec<String> = events
            .iter()
            .map(|e| format!("    {}", canonical(e)))
            .collect();
        format!("  \"events\": [\n{}\n  ]", lines.join(",\n"))
    };
    format!(
        "{{\n{},\n{},\n{},\n{},\n{},\n{},\n{}\n}}\n",
        field("format", &json!(FORMAT)),
        field("key_id", &json!(key_id)),
        field("exported_at", &json!(exported_at)),
        field("request", request),
        field("request_seal", seal),
        events_block,
        field("head", head),
    )
}

/// Public keys a verifier trusts, by id.
#[derive(Clone, Debug, Default)]
pub struct PublicKeys(Vec<(String, Vec<u8>)>);

impl PublicKeys {
    /// Reads the document [`EvidenceKey::public_keys`] writes. Each key's
    /// id is computed again from the key; a `kid` that does not match it is
    /// refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| format!("not a JSON key set: {e}"))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("no \"keys\" array")?;
        let mut out = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let field = |name: &str| key.get(name).and_then(Value::as_str);
            if field("kty") != Some("OKP") || field("crv") != Some("Ed25519") {
                continue;
            }
            let x = field("x")
                .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
                .filter(|x| x.len() == 32)
                .ok_or_else(|| format!("key {i}: \"x\" is not a 32-byte base64url key"))?;
            let id = key_id(&x);
            if let Some(kid) = field("kid")
                && kid != id
            {
                return Err(format!(
                    "key {i}: kid {kid} is not the id of its key ({id})"
                ));
            }
            out.push((id, x));
        }
        if out.is_empty() {
            return Err("no Ed25519 key in the set".to_owned());
        }
        Ok(Self(out))
    }

    fn get(&self, id: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, x)| x.as_slice())
    }
}

/// What a bundle that verifies holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The request's `name`.
    pub request: String,
    pub events: u64,
    pub key_id: String,
}

/// Why a bundle does not verify: the first problem, naming the event
/// where there is one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("not an evidence bundle: {0}")]
    Malformed(String),
    #[error("event {0} is malformed (line {1} of the bundle)")]
    MalformedEvent(u64, usize),
    #[error("signed with evidence key {0}, which the public keys do not hold")]
    UnknownKey(String),
    #[error(
        "the request's record does not hold (altered, or its seal not signed by the key named)"
    )]
    RequestAltered,
    #[error("event {0} was altered (its link or signature does not hold)")]
    Altered(u64),
    #[error("event {0} was removed")]
    Removed(u64),
    #[error("event {0} was inserted (it is not part of the signed chain)")]
    Inserted(u64),
    #[error("events after {0} were removed (the signed head counts {1})")]
    Truncated(u64, u64),
    #[error("the head's signature does not hold")]
    HeadAltered,
}

fn verify_signature(public: &[u8], label: &[u8], bytes: &[u8], signature: &str) -> bool {
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let mut message = label.to_vec();
    message.extend_from_slice(bytes);
    UnparsedPublicKey::new(&ED25519, public)
        .verify(&message, &signature)
        .is_ok()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// One event line as read: its record, stated link and signature.
struct Line<'a> {
    event: &'a Value,
    link: Option<[u8; 32]>,
    signature: &'a str,
}

impl<'a> Line<'a> {
    fn read(v: &'a Value) -> Option<Self> {
        Some(Self {
            event: v.get("event")?,
            link: v.get("link").and_then(Value::as_str).and_then(unhex),
            signature: v.get("signature").and_then(Value::as_str)?,
        })
    }

    fn sequence(&self) -> Option<u64> {
        self.event.get("sequence").and_then(Value::as_u64)
    }

    /// A `{link, signature}` pair: the request seal.
    fn read_seal(v: &'a Value) -> Option<([u8; 32], &'a str)> {
        Some((
            v.get("link").and_then(Value::as_str).and_then(unhex)?,
            v.get("signature").and_then(Value::as_str)?,
        ))
    }

    /// Whether it chains from `prev` and its signature holds.
    fn holds(&self, prev: &[u8; 32], public: &[u8]) -> bool {
        self.holds_as(self.event, prev, public)
    }

    /// Whether it would chain from `prev` with its sequence one less.
    fn holds_renumbered(&self, prev: &[u8; 32], public: &[u8]) -> bool {
        let mut event = self.event.clone();
        match self.sequence() {
            Some(s) if s > 1 => event["sequence"] = json!(s - 1),
            _ => return false,
        }
        self.holds_as(&event, prev, public)
    }

    fn holds_as(&self, event: &Value, prev: &[u8; 32], public: &[u8]) -> bool {
        let link = event_link(prev, event);
        self.link == Some(link) && verify_signature(public, LINK_LABEL, &link, self.signature)
    }
}

/// Checks a bundle's text against `keys`.
pub fn verify(text: &str, keys: &PublicKeys) -> Result<Verified, BundleError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| malformed_at(text, &e))?;
    let text_field = |name: &str| doc.get(name).and_then(Value::as_str);
    if text_field("format") != Some(FORMAT) {
        return Err(BundleError::Malformed(format!(
            "its format is not {FORMAT:?}"
        )));
    }
    let key_id = text_field("key_id")
        .ok_or_else(|| BundleError::Malformed("no key_id".to_owned()))?
        .to_owned();
    let public = keys
        .get(&key_id)
        .ok_or_else(|| BundleError::UnknownKey(key_id.clone()))?;
    let request = doc
        .get("request")
        .ok_or_else(|| BundleError::Malformed("no request".to_owned()))?;
    let name = request
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let events = doc
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| BundleError::Malformed("no events array".to_owned()))?;
    let head = doc
        .get("head")
        .ok_or_else(|| BundleError::Malformed("no head".to_owned()))?;
    let exported_at = text_field("exported_at")
        .ok_or_else(|| BundleError::Malformed("no exported_at".to_owned()))?;
    let seal_value = doc
        .get("request_seal")
        .ok_or_else(|| BundleError::Malformed("no request_seal".to_owned()))?;
    // Exactly as written: each field once, in its place (a JSON reader
    // keeps one of two copies of a key, a person may read the other).
    let rendered = render(&key_id, exported_at, request, seal_value, events, head);
    if rendered.trim_end_matches('\n') != text.trim_end_matches(['\n', '\r']) {
        return Err(layout_error(text, &rendered));
    }

    let lines: Vec<Option<Line<'_>>> = events.iter().map(Line::read).collect();
    let mut link = request_link(request);
    let sealed = doc
        .get("request_seal")
        .and_then(Line::read_seal)
        .is_some_and(|(stated, signature)| {
            stated == link && verify_signature(public, RECORD_LABEL, &link, signature)
        });
    if !sealed {
        return Err(BundleError::RequestAltered);
    }
    let mut expected: u64 = 1;
    for (i, line) in lines.iter().enumerate() {
        let Some(line) = line else {
            return Err(BundleError::Altered(expected));
        };
        match line.sequence() {
            Some(s) if s > expected => return Err(BundleError::Removed(expected)),
            Some(s) if s < expected => return Err(BundleError::Inserted(i as u64 + 1)),
            None => return Err(BundleError::Altered(expected)),
            Some(_) => {}
        }
        if line.holds(&link, public) {
            link = event_link(&link, line.event);
            expected += 1;
            continue;
        }
        // Inserted: the next event chains on from the one before as if this
        // one were not there, once given back its own number.
        if let Some(Some(next)) = lines.get(i + 1)
            && next.holds_renumbered(&link, public)
        {
            return Err(BundleError::Inserted(expected));
        }
        return Err(BundleError::Altered(expected));
    }
    let count = head.get("events").and_then(Value::as_u64);
    let signature = head.get("signature").and_then(Value::as_str).unwrap_or("");
    let n = expected - 1;
    let message = head_message(&link, n, exported_at, &key_id);
    match count {
        Some(count) if count == n && verify_signature(public, HEAD_LABEL, &message, signature) => {
            Ok(Verified {
                request: name,
                events: n,
                key_id,
            })
        }
        Some(count) if count > n => Err(BundleError::Truncated(n, count)),
        _ => Err(BundleError::HeadAltered),
    }
}

/// A JSON error placed: inside the events, the event on that line.
fn malformed_at(text: &str, e: &serde_json::Error) -> BundleError {
    placed(text, e.line()).unwrap_or_else(|| BundleError::Malformed(e.to_string()))
}

/// Where `text` first differs from the layout it should have.
fn layout_error(text: &str, rendered: &str) -> BundleError {
    let line = text
        .lines()
        .zip(rendered.lines())
        .position(|(a, b)| a != b)
        .map_or_else(
            || text.lines().count().min(rendered.lines().count()) + 1,
            |p| p + 1,
        );
    placed(text, line).unwrap_or_else(|| {
        BundleError::Malformed(format!(
            "line {line} is not as the bundle's layout has it (a field twice, out of place or \
             respaced)"
        ))
    })
}

/// The event on line `line` (from 1) of `text`, if the line is an event's.
fn placed(text: &str, line: usize) -> Option<BundleError> {
    let first = text
        .lines()
        .position(|l| l.trim_start().starts_with("\"events\": ["))?
        + 2;
    let last = text
        .lines()
        .position(|l| l.trim_start().starts_with("\"head\":"))?
        .checked_sub(1)?;
    (first..=last)
        .contains(&line)
        .then(|| BundleError::MalformedEvent((line - first + 1) as u64, line))
}

/// The `request` record of a bundle from its fields: `name` first, then
/// whatever the caller puts in `fields`.
pub fn record(name: &str, fields: Map<String, Value>) -> Value {
    let mut map = Map::new();
    map.insert("name".to_owned(), Value::String(name.to_owned()));
    map.extend(fields);
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;

    fn key(seed: u8) -> EvidenceKey {
        EvidenceKey::from_seeds(&[&[seed; 32]]).unwrap()
    }

    fn event(sequence: i64, reason: &str) -> EventRecord {
        EventRecord {
            sequence,
            event_type: "submitted".to_owned(),
            time: 1_767_225_600_000_000 + sequence,
            actor_id: "svc-crm".to_owned(),
            actor_role: "controller".to_owned(),
            from_state: None,
            to_state: "in_progress".to_owned(),
            reason: reason.to_owned(),
            task: None,
        }
    }

    fn bundle(n: i64) -> String {
        let mut fields = Map::new();
        fields.insert("state".to_owned(), json!("completed"));
        let events: Vec<EventRecord> = (1..=n).map(|s| event(s, &format!("r{s}"))).collect();
        build(
            record("dataSubjectRequests/1", fields),
            &events,
            &key(1),
            jiff::Timestamp::UNIX_EPOCH,
        )
    }

    fn keys() -> PublicKeys {
        PublicKeys::parse(&key(1).public_keys().to_string()).unwrap()
    }

    /// The bundle's lines, with line `i` of the events (from 0) replaced.
    fn edit_events(text: &str, f: impl Fn(&mut Vec<String>)) -> String {
        let all: Vec<String> = text.lines().map(str::to_owned).collect();
        let start = all
            .iter()
            .position(|l| l.contains("\"events\": ["))
            .unwrap()
            + 1;
        let end = all
            .iter()
            .position(|l| l.trim() == "],")
            .unwrap_or_else(|| all.iter().position(|l| l.trim() == "]").unwrap());
        let mut events: Vec<String> = all[start..end]
            .iter()
            .map(|l| l.trim().trim_end_matches(',').to_owned())
            .collect();
        f(&mut events);
        let body: Vec<String> = events.iter().map(|e| format!("    {e}")).collect();
        let mut out = all[..start].to_vec();
        out.push(body.join(",\n"));
        out.extend_from_slice(&all[end..]);
        out.join("\n")
    }

    #[test]
    fn an_exported_bundle_verifies_with_the_public_key_alone() {
        let text = bundle(4);
        let verified = verify(&text, &keys()).unwrap();
        assert_eq!(
            verified,
            Verified {
                request: "dataSubjectRequests/1".to_owned(),
                events: 4,
                key_id: key(1).signing_id().to_owned(),
            }
        );
        assert_eq!(
            text.lines().filter(|l| l.contains("{\"event\":")).count(),
            4
        );
    }

    #[test]
    fn every_byte_of_every_event_counts() {
        let text = bundle(3);
        // Every letter or digit inside each event's record, changed.
        for (n, line) in text.lines().enumerate() {
            let Some(start) = line.find("{\"event\":") else {
                continue;
            };
            let sequence = text
                .lines()
                .take(n)
                .filter(|l| l.contains("{\"event\":"))
                .count()
                + 1;
            let record_end = line.find(",\"link\"").unwrap();
            for at in start + 10..record_end {
                let c = line.as_bytes()[at];
                if !c.is_ascii_alphanumeric() {
                    continue;
                }
                let swapped = if c == b'7' {
                    b'8'
                } else if c.is_ascii_digit() {
                    b'7'
                } else if c == b'x' {
                    b'y'
                } else {
                    b'x'
                };
                let mut bytes = text.clone().into_bytes();
                let offset: usize = text.lines().take(n).map(|l| l.len() + 1).sum::<usize>() + at;
                bytes[offset] = swapped;
                let tampered = String::from_utf8(bytes).unwrap();
                let found = verify(&tampered, &keys()).expect_err("caught");
                assert!(
                    matches!(
                        found,
                        BundleError::Altered(s) | BundleError::MalformedEvent(s, _) | BundleError::Removed(s) | BundleError::Inserted(s)
                            if s == sequence as u64
                    ),
                    "byte {at} of event {sequence}: {found:?}"
                );
            }
        }
    }

    #[test]
    fn removed_inserted_and_cut_events_are_named() {
        let text = bundle(4);
        let removed = edit_events(&text, |e| {
            e.remove(1);
        });
        assert_eq!(verify(&removed, &keys()), Err(BundleError::Removed(2)));
        let cut = edit_events(&text, |e| {
            e.pop();
        });
        assert_eq!(verify(&cut, &keys()), Err(BundleError::Truncated(3, 4)));
        // A forged event with the next sequence, the later ones renumbered.
        let inserted = edit_events(&text, |e| {
            let forged = e[1].replace("\"reason\":\"r2\"", "\"reason\":\"forged\"");
            e.insert(2, forged);
            for (i, line) in e.iter_mut().enumerate().skip(3) {
                *line = line.replace(
                    &format!("\"sequence\":{}", i),
                    &format!("\"sequence\":{}", i + 1),
                );
            }
            e[2] = e[2].replace("\"sequence\":2", "\"sequence\":3");
        });
        assert_eq!(verify(&inserted, &keys()), Err(BundleError::Inserted(3)));
        // A duplicate of an event, sequence and all.
        let duplicated = edit_events(&text, |e| {
            let copy = e[0].clone();
            e.insert(1, copy);
        });
        assert_eq!(verify(&duplicated, &keys()), Err(BundleError::Inserted(2)));
        // The record of the request.
        let altered = text.replace("\"state\":\"completed\"", "\"state\":\"refused\"");
        assert_eq!(verify(&altered, &keys()), Err(BundleError::RequestAltered));
    }

    #[test]
    fn the_time_of_export_and_the_layout_are_bound() {
        let text = bundle(2);
        let redated = text.replace("1970-01-01T00:00:00Z", "2030-01-01T00:00:00Z");
        assert_ne!(redated, text);
        assert_eq!(verify(&redated, &keys()), Err(BundleError::HeadAltered));
        // A key twice: a reader keeps one copy, a person may read the other.
        let doubled = edit_events(&text, |e| {
            e[1] = e[1].replacen(
                "\"reason\":\"r2\"",
                "\"reason\":\"forged\",\"reason\":\"r2\"",
                1,
            );
        });
        assert!(matches!(
            verify(&doubled, &keys()),
            Err(BundleError::MalformedEvent(2, _))
        ));
        let respaced = text.replacen("\"format\": ", "\"format\":  ", 1);
        assert!(matches!(
            verify(&respaced, &keys()),
            Err(BundleError::Malformed(_))
        ));
        // Without its last line break, as some editors save it: as written.
        assert_eq!(verify(text.trim_end(), &keys()).map(|v| v.events), Ok(2));
    }

    #[test]
    fn an_unknown_key_or_a_forged_kid_fails() {
        let other = PublicKeys::parse(&key(2).public_keys().to_string()).unwrap();
        assert_eq!(
            verify(&bundle(2), &other),
            Err(BundleError::UnknownKey(key(1).signing_id().to_owned()))
        );
        // A set naming key 2's public key with key 1's id is refused.
        let mut doc = key(2).public_keys();
        doc["keys"][0]["kid"] = json!(key(1).signing_id());
        assert!(PublicKeys::parse(&doc.to_string()).is_err());
        // Claimed for another key: its signatures do not hold.
        let text = bundle(2).replace(key(1).signing_id(), key(2).signing_id());
        let both = PublicKeys::parse(&key(2).public_keys().to_string()).unwrap();
        assert_eq!(verify(&text, &both), Err(BundleError::RequestAltered));
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_space() {
        let v: Value =
            serde_json::from_str(r#"{ "b": [1, {"d": null, "c": "é\n"}], "a": true }"#).unwrap();
        assert_eq!(canonical(&v), r#"{"a":true,"b":[1,{"c":"é\n","d":null}]}"#);
    }

    #[test]
    fn key_files_are_read_as_rings() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = EvidenceKey::ensure_dev(dir.path()).unwrap();
        assert!(created);
        let (again, created) = EvidenceKey::ensure_dev(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(first.signing_id(), again.signing_id());
        assert_eq!(
            format!("{first:?}"),
            format!("EvidenceKey({})", first.signing_id())
        );
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "# a comment\nnot base64\n").unwrap();
        assert!(matches!(
            EvidenceKey::from_file(&bad),
            Err(EvidenceKeyError::Invalid { line: 2, .. })
        ));
    }
}
