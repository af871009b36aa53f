//! Opaque page tokens (AIP-158). A token carries the position after which
//! the next page starts and the filters it was issued for; anything else is
//! rejected as INVALID_ARGUMENT.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use uuid::Uuid;

use super::error::ApiError;
use crate::service::{Cursor, FeedPosition, RequestFilter};

/// Page size when the caller sends 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page size.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Checks `page_size`: 0 means the default, negative or too large is an error.
pub fn page_size(size: i32, field: &str) -> Result<u32, ApiError> {
    match u32::try_from(size) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(n) if n <= MAX_PAGE_SIZE => Ok(n),
        _ => Err(ApiError::invalid(
            field,
            format!("must be between 0 and {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})"),
        )),
    }
}

fn filter_key(f: &RequestFilter) -> String {
    format!(
        "{}.{}",
        f.state.map_or("", |s| s.as_str()),
        f.request_type.map_or("", |t| t.as_str())
    )
}

fn bad_token() -> ApiError {
    ApiError::invalid(
        "page_token",
        "is not a token returned by this call with the same filters; start again with an empty token",
    )
}

fn decode(token: &str) -> Result<String, ApiError> {
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad_token())?;
    String::from_utf8(bytes).map_err(|_| bad_token())
}

/// Token for the page after `cursor` of a listing of `kind` (requests,
/// routes, tasks…) made with filters summed up in `filter`.
pub fn encode_cursor(kind: &str, cursor: &Cursor, filter: &str) -> String {
    let raw = format!(
        "{kind}|{}|{}|{filter}",
        cursor.create_time.as_microsecond(),
        cursor.id
    );
    URL_SAFE_NO_PAD.encode(raw)
}

/// Inverse of [`encode_cursor`]; kind and filters must be the same.
pub fn decode_cursor(kind: &str, token: &str, filter: &str) -> Result<Option<Cursor>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let raw = decode(token)?;
    // The filter part may itself contain `|`: split off the fixed fields.
    let mut parts = raw.splitn(4, '|');
    let (Some(k), Some(micros), Some(id), Some(f)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_token());
    };
    if k != kind || f != filter {
        return Err(bad_token());
    }
    let micros: i64 = micros.parse().map_err(|_| bad_token())?;
    let create_time = Timestamp::from_microsecond(micros).map_err(|_| bad_token())?;
    let id = Uuid::try_parse(id).map_err(|_| bad_token())?;
    Ok(Some(Cursor { create_time, id }))
}

/// Token for the page after `cursor`, listed with `filter`.
pub fn encode_requests_token(cursor: &Cursor, filter: &RequestFilter) -> String {
    encode_cursor("r1", cursor, &filter_key(filter))
}

/// Inverse of [`encode_requests_token`]; the filter must be the same.
pub fn decode_requests_token(
    token: &str,
    filter: &RequestFilter,
) -> Result<Option<Cursor>, ApiError> {
    decode_cursor("r1", token, &filter_key(filter))
}

/// Token for the page after the processor `last_id`.
pub fn encode_key_token(kind: &str, last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}|{last_id}"))
}

/// Inverse of [`encode_key_token`].
pub fn decode_key_token(kind: &str, token: &str) -> Result<Option<String>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let raw = decode(token)?;
    match raw.split_once('|') {
        Some((k, id)) if k == kind && !id.is_empty() => Ok(Some(id.to_owned())),
        _ => Err(bad_token()),
    }
}

/// Token for the events of request `id` after `sequence`.
pub fn encode_events_token(id: Uuid, sequence: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("e1|{id}|{sequence}"))
}

/// Inverse of [`encode_events_token`]; the request must be the same.
pub fn decode_events_token(token: &str, id: Uuid) -> Result<i64, ApiError> {
    if token.is_empty() {
        return Ok(0);
    }
    let raw = decode(token)?;
    let mut parts = raw.split('|');
    let (Some("e1"), Some(token_id), Some(seq), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_token());
    };
    if Uuid::try_parse(token_id).ok() != Some(id) {
        return Err(bad_token());
    }
    seq.parse::<i64>()
        .ok()
        .filter(|s| *s >= 0)
        .ok_or_else(bad_token)
}

/// The cursors of one tenant's change feed: a position, and a tag of the
/// tenant, so that a cursor of another tenant's feed is recognised (and
/// refused) rather than read as a position in the caller's. The tag is
/// worked out once per call, not once per event.
pub struct FeedCursors {
    tag: String,
}

impl FeedCursors {
    pub fn for_tenant(tenant: &str) -> Self {
        Self {
            tag: tenant_tag(tenant),
        }
    }

    /// The cursor of the event at `at`.
    pub fn encode(&self, at: FeedPosition) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "f1|{}|{}|{}|{}",
            self.tag,
            at.transaction,
            at.request.simple(),
            at.number
        ))
    }

    /// Inverse of [`Self::encode`]; empty is the start of the feed.
    pub fn decode(&self, cursor: &str) -> Result<FeedPosition, ApiError> {
        if cursor.is_empty() {
            return Ok(FeedPosition::default());
        }
        let bad = || {
            ApiError::invalid(
                "cursor",
                "is not a cursor of the caller's change feed; pass back a cursor this feed returned, or none to start from its first event",
            )
        };
        let raw = URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(bad)?;
        let mut parts = raw.split('|');
        let (Some("f1"), Some(tag), Some(transaction), Some(request), Some(number), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        if tag != self.tag {
            return Err(bad());
        }
        let transaction = transaction.parse::<u64>().map_err(|_| bad())?;
        let request = Uuid::try_parse(request).map_err(|_| bad())?;
        let number = number
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(bad)?;
        Ok(FeedPosition {
            transaction,
            request,
            number,
        })
    }
}

/// A cursor of `tenant`'s feed at `at` ([`FeedCursors::encode`]).
pub fn encode_feed_cursor(tenant: &str, at: FeedPosition) -> String {
    FeedCursors::for_tenant(tenant).encode(at)
}

/// A position in `tenant`'s feed ([`FeedCursors::decode`]).
pub fn decode_feed_cursor(cursor: &str, tenant: &str) -> Result<FeedPosition, ApiError> {
    FeedCursors::for_tenant(tenant).decode(cursor)
}

/// The first eight bytes of the SHA-256 of a tenant id, in hex: enough to
/// tell tenants' cursors apart without writing the id into every cursor.
fn tenant_tag(tenant: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(tenant.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::request::State;

    #[test]
    fn request_tokens_round_trip_and_bind_the_filter() {
        let cursor = Cursor {
            create_time: Timestamp::from_microsecond(1_700_000_000_123_456).expect("valid"),
            id: Uuid::new_v4(),
        };
        let filter = RequestFilter {
            state: Some(State::InProgress),
            request_type: None,
        };
        let token = encode_requests_token(&cursor, &filter);
        assert_eq!(
            decode_requests_token(&token, &filter).expect("valid"),
            Some(cursor)
        );
        assert!(decode_requests_token(&token, &RequestFilter::default()).is_err());
        assert_eq!(
            decode_requests_token("", &filter).expect("empty is first page"),
            None
        );
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let f = RequestFilter::default();
        for bad in [
            "x",
            "!!!",
            "cjF8MXwy",
            &URL_SAFE_NO_PAD.encode("r1|abc|def|."),
        ] {
            assert!(decode_requests_token(bad, &f).is_err(), "{bad}");
        }
        let id = Uuid::new_v4();
        assert_eq!(
            decode_events_token(&encode_events_token(id, 7), id).expect("valid"),
            7
        );
        assert!(decode_events_token(&encode_events_token(id, 7), Uuid::new_v4()).is_err());
        assert!(decode_events_token(&URL_SAFE_NO_PAD.encode(format!("e1|{id}|-1")), id).is_err());
        let c = Cursor {
            create_time: Timestamp::UNIX_EPOCH,
            id,
        };
        let t = encode_cursor("t1", &c, "a|b");
        assert_eq!(decode_cursor("t1", &t, "a|b").expect("valid"), Some(c));
        assert!(
            decode_cursor("r1", &t, "a|b").is_err(),
            "another listing's token"
        );
        assert_eq!(
            decode_key_token("p1", &encode_key_token("p1", "acme")).expect("valid"),
            Some("acme".into())
        );
        assert!(decode_key_token("p1", &encode_key_token("x1", "acme")).is_err());
    }

    #[test]
    fn feed_cursors_round_trip_and_belong_to_one_tenant() {
        let at = FeedPosition {
            transaction: 1_234_567_890_123,
            request: Uuid::new_v4(),
            number: 42,
        };
        let cursor = encode_feed_cursor("acme", at);
        assert_eq!(decode_feed_cursor(&cursor, "acme").expect("valid"), at);
        assert_eq!(
            decode_feed_cursor("", "acme").expect("empty is the start"),
            FeedPosition::default()
        );
        let foreign = decode_feed_cursor(&cursor, "globex").expect_err("another tenant's");
        assert!(
            matches!(&foreign, ApiError::InvalidArgument(v) if v[0].field == "cursor"),
            "{foreign:?}"
        );
        let tag = tenant_tag("acme");
        let id = Uuid::new_v4().simple();
        assert!(
            decode_feed_cursor(
                &URL_SAFE_NO_PAD.encode(format!("f1|{tag}|1|{id}|2")),
                "acme"
            )
            .is_ok()
        );
        for bad in [
            "x".to_owned(),
            "!!!".to_owned(),
            encode_events_token(Uuid::new_v4(), 3),
            URL_SAFE_NO_PAD.encode(format!("f1|{tag}|1|{id}")),
            URL_SAFE_NO_PAD.encode(format!("f1|{tag}|1|{id}|2|3")),
            URL_SAFE_NO_PAD.encode(format!("f1|{tag}|-1|{id}|2")),
            URL_SAFE_NO_PAD.encode(format!("f1|{tag}|1|{id}|-2")),
            URL_SAFE_NO_PAD.encode(format!("f1|{tag}|1|nope|2")),
            URL_SAFE_NO_PAD.encode(format!("f2|{tag}|1|{id}|2")),
        ] {
            assert!(decode_feed_cursor(&bad, "acme").is_err(), "{bad}");
        }
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0, "page_size").expect("default"), 100);
        assert_eq!(page_size(1000, "page_size").expect("max"), 1000);
        assert!(page_size(1001, "page_size").is_err());
        assert!(page_size(-1, "page_size").is_err());
    }
}
