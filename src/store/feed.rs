//! The change feed: every event of a tenant, in one order that a reader can
//! follow page by page and resume from any point without missing or
//! repeating an event.
//!
//! Each event has a [`FeedPosition`]. On SQLite it is the event's row
//! number, given in commit order (one writer at a time). On PostgreSQL,
//! where replicas write at once, it is the writing transaction's id, then
//! the request and the event's sequence in it; a page reads only below the
//! oldest transaction still running, where nothing can be added any more
//! (see `migrations/postgres/0007_change_feed.sql`). An event therefore
//! shows in the feed once its transaction, and every transaction older
//! than it, has ended.

use uuid::Uuid;

use crate::domain::request::RequestEvent;

/// Where an event stands in the feed; positions compare in feed order.
/// The default is before the first event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeedPosition {
    /// The writing transaction (PostgreSQL); 0 on SQLite, and for events
    /// stored before the feed existed.
    pub transaction: u64,
    /// The event's request (PostgreSQL); nil on SQLite.
    pub request: Uuid,
    /// The event's sequence in its request (PostgreSQL), or its row number
    /// (SQLite).
    pub number: i64,
}

/// One event of the feed and where it stands.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEntry {
    pub at: FeedPosition,
    pub event: RequestEvent,
}
