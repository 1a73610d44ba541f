//! Back-pagination: fetching what a sync left out of a room's timeline, with retries.
//!
//! Why this exists: see [`super::catch_up`], which decides; this module pages backwards
//! through `/messages` from the timeline's `prev_batch` (up to the previous sync's token,
//! when there is one) until the scan stops, decrypting as matrix-sdk does. A failed page is
//! retried ([`RetryPolicy::PAGE`]); if it still fails the caller gets the error (nothing of
//! the room is delivered then, so a later attempt keeps the room's order).

use std::time::{SystemTime, UNIX_EPOCH};

use matrix_sdk::{
    deserialized_responses::TimelineEvent,
    room::{Messages, MessagesOptions},
    ruma::{UInt, UserId},
    Room,
};

use super::catch_up::{Bounds, EventFacts, Plan, Scan, Skipped, Stop};
use super::MatrixError;
use crate::crash::{self, FailPoint};
use crate::retry::{retry, RetryPolicy};

/// How a room is caught up.
#[derive(Clone, Debug)]
pub struct CatchUpParams {
    /// The token of the previous sync (the gap ends there), if there is one.
    pub since: Option<String>,
    /// Events per `/messages` request.
    pub page_size: u32,
    /// How old and how many messages are still answered.
    pub bounds: Bounds,
}

/// A room's part of a sync response.
#[derive(Debug, Default)]
pub struct SyncedTimeline {
    /// Its timeline events, oldest first.
    pub events: Vec<TimelineEvent>,
    /// The homeserver left a gap before them.
    pub limited: bool,
    /// Where paging back into that gap starts.
    pub prev_batch: Option<String>,
}

/// A room caught up: what to deliver, what was left out.
#[derive(Debug)]
pub struct RoomCatchUp {
    /// The messages to hand to the core's intake, oldest first.
    pub deliver: Vec<TimelineEvent>,
    /// Messages the bot's replies (seen on the way) answer.
    pub answered: Vec<String>,
    /// Messages the bounds left out.
    pub skipped: Skipped,
    /// Why the scan stopped.
    pub stop: Stop,
    /// `/messages` requests made (0: the sync's timeline was enough).
    pub pages: u32,
    /// Events fetched by those requests.
    pub fetched: usize,
    /// How many of [`RoomCatchUp::deliver`] came from the gap (not from the sync).
    pub backfilled: usize,
}

/// Works out which of a room's events to answer: the sync's timeline and, when it was
/// limited, the gap behind it, paged from its `prev_batch`.
///
/// `handled` tells events the bot already handled (journal); `answerable` the messages it
/// would answer at all (access policy).
pub async fn catch_up_room(
    room: &Room,
    bot: &UserId,
    timeline: SyncedTimeline,
    params: &CatchUpParams,
    handled: &(dyn Fn(&str) -> bool + Sync),
    answerable: &(dyn Fn(&EventFacts) -> bool + Sync),
) -> Result<RoomCatchUp, MatrixError> {
    let SyncedTimeline {
        events: timeline,
        limited,
        prev_batch,
    } = timeline;
    let in_sync = timeline.len();
    let mut events: Vec<Option<TimelineEvent>> = Vec::with_capacity(timeline.len());
    let mut facts: Vec<Option<EventFacts>> = Vec::with_capacity(timeline.len());
    for event in timeline {
        facts.push(facts_of(&event, bot));
        events.push(Some(event));
    }
    let mut scan = Scan::new(&params.bounds);
    let newest_first = facts
        .iter()
        .enumerate()
        .rev()
        .filter_map(|(i, f)| f.as_ref().map(|f| (i, f)));
    let mut stopped = scan.feed(newest_first, handled);
    let (mut pages, mut fetched) = (0u32, 0usize);
    match prev_batch {
        Some(mut from) if limited && !stopped => {
            while !stopped {
                let page = fetch_page(room, &from, params).await?;
                pages += 1;
                fetched += page.chunk.len();
                // A backward page is newest first: append in that order, feed as given.
                let base = facts.len();
                for event in page.chunk {
                    facts.push(facts_of(&event, bot));
                    events.push(Some(event));
                }
                let added: Vec<(usize, &EventFacts)> = facts[base..]
                    .iter()
                    .enumerate()
                    .filter_map(|(i, f)| f.as_ref().map(|f| (base + i, f)))
                    .collect();
                stopped = scan.feed(added, handled);
                match page.end {
                    Some(end) if !stopped && facts.len() > base => from = end,
                    _ => break,
                }
            }
            if !stopped {
                scan.reached_start();
            }
        }
        _ => scan.reached_start(),
    }
    let Plan {
        deliver,
        answered,
        skipped,
        stop,
    } = scan.plan(&params.bounds, now_ms(), answerable);
    let backfilled = deliver.iter().filter(|key| **key >= in_sync).count();
    let deliver = deliver
        .into_iter()
        .filter_map(|key| events.get_mut(key).and_then(Option::take))
        .collect();
    Ok(RoomCatchUp {
        deliver,
        answered,
        skipped,
        stop,
        pages,
        fetched,
        backfilled,
    })
}

/// The facts of a (possibly decrypted) event.
pub fn facts_of(event: &TimelineEvent, bot: &UserId) -> Option<EventFacts> {
    EventFacts::from_json(event.raw().json().get(), bot.as_str())
}

/// One backward page from `from` (towards `params.since`), retried per
/// [`RetryPolicy::PAGE`].
async fn fetch_page(
    room: &Room,
    from: &str,
    params: &CatchUpParams,
) -> Result<Messages, MatrixError> {
    retry(&RetryPolicy::PAGE, "back-pagination", || async {
        if crash::fail(FailPoint::BackfillPage) {
            return Err(MatrixError::Transient {
                context: "paging back through a room (fail point)".to_owned(),
                retry_after: None,
                source: "injected failure".into(),
            });
        }
        let mut options = MessagesOptions::backward().from(from);
        options.to = params.since.clone();
        options.limit = UInt::from(params.page_size);
        room.messages(options)
            .await
            .map_err(|e| MatrixError::from_sdk("paging back through a room", e))
    })
    .await
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
