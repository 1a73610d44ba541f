//! Our own `/sync` loop.
//!
//! matrix-sdk's `Client::sync*` loops sleep up to one second after a sync
//! that returned quickly, so a bot built on them answers about a second
//! late. This loop calls [`Client::sync_once`] back to back with the
//! returned `next_batch`, with **no delay between successful syncs**; it
//! backs off ([`RetryPolicy::SYNC`]: exponential, with jitter, honouring a
//! rate limit) only after errors, and resets on success. It stops
//! with `Ok` when the shutdown future completes and with
//! [`MatrixError::InvalidToken`] when the homeserver rejects the token.
//!
//! Health: the loop updates a shared [`SyncHealth`] (atomics) with the time
//! of the last successful sync and the number of consecutive failures, so
//! the ops layer can say "sync alive and recent" without talking to the
//! loop.
//!
//! Sync token: matrix-sdk saves each response's `next_batch` in its state
//! store while processing the response, and
//! `SyncSettings::default()`'s token (`SyncToken::ReusePrevious`) continues
//! from the stored one. [`initial_sync`] relies on that: after a restart it
//! resumes where the previous run stopped instead of downloading everything
//! again; on a fresh store it does a full initial sync. [`run_sync_loop`]
//! then passes each `next_batch` explicitly. Because the token is stored
//! while the response is processed, a crash after that point does not
//! redeliver the response: callers that must not lose a message need their
//! own record of what they handled.
//!
//! Our own cursor: matrix-sdk stores each response's token while it processes
//! the response, before the caller has journaled its messages, so a crash in
//! between would lose them. The loop therefore starts from a token the caller
//! gives (its own durable cursor) and moves on to a response's `next_batch`
//! only after the caller's handler succeeded for it; a failed handler gets
//! the same range again after a pause: the very response, kept in a
//! [`PendingResponse`], not a new `/sync` from the same token. matrix-sdk drops a
//! response whose `next_batch` it already holds ("Got the same sync response
//! twice"), so when nothing happened on the homeserver in between, a second
//! `/sync` of the range came back empty and the messages of a gap that could
//! not be fetched were never read again. The slot outlives the loop (a
//! restarted loop handles it first).
//!
//! The filter ([`bot_filter`]): a timeline limit chosen for a bot, uploaded
//! once and reused by name. Without it Synapse sends 10 events per room and
//! leaves a gap behind them (see `catch_up`).
//!
//! Event handlers registered with `Client::add_event_handler` run inside
//! `sync_once`, so they also see the initial sync's timeline: register them
//! after [`initial_sync`] to avoid answering old history.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use matrix_sdk::{
    config::{SyncSettings, SyncToken},
    ruma::api::client::{
        filter::{FilterDefinition, RoomEventFilter},
        sync::sync_events::v3::Filter,
    },
    ruma::UInt,
    store::{StateStoreDataKey, StateStoreDataValue},
    sync::SyncResponse,
    Client,
};
use parking_lot::Mutex;
use tracing::{debug, info, warn};

use super::MatrixError;
use crate::retry::RetryPolicy;
pub use crate::surface::health::{CatchUpCounters, SyncHealth};

/// How long the homeserver may hold a `/sync` open when nothing happens.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// The initial sync returns at once: it only catches up.
const INITIAL_SYNC_TIMEOUT: Duration = Duration::ZERO;

/// Name prefix of the bot's stored sync filter (the timeline limit is appended, so a new
/// limit uploads a new filter).
const FILTER_NAME_PREFIX: &str = "surfaces-bot-v1-timeline-";

/// Parameters of the sync loop.
#[derive(Clone, Debug)]
pub struct SyncLoopSettings {
    /// Long-poll timeout of each `/sync`.
    pub timeout: Duration,
    /// The filter of every `/sync` ([`bot_filter`]), if any.
    pub filter: Option<Filter>,
}

impl Default for SyncLoopSettings {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_SYNC_TIMEOUT,
            filter: None,
        }
    }
}

impl SyncLoopSettings {
    /// Settings of one `/sync` from `token` (`None`: a full sync from the start, never the
    /// token matrix-sdk stored on its own, which may be ahead of what the caller handled).
    fn sync_settings(&self, timeout: Duration, token: Option<&str>) -> SyncSettings {
        let mut settings = SyncSettings::default()
            .timeout(timeout)
            .token(SyncToken::from_optional_token(token.map(str::to_owned)));
        if let Some(filter) = &self.filter {
            settings = settings.filter(filter.clone());
        }
        settings
    }
}

/// The filter definition of the bot's syncs: at most `timeline_limit` timeline events per
/// room (the rest is paged in by catch-up). Members are not lazy-loaded: end-to-end
/// encryption needs every member's devices, and a bot's rooms are small.
pub fn bot_filter_definition(timeline_limit: u32) -> FilterDefinition {
    let mut timeline = RoomEventFilter::default();
    timeline.limit = Some(UInt::from(timeline_limit));
    let mut filter = FilterDefinition::default();
    filter.room.timeline = timeline;
    filter
}

/// The bot's sync filter, uploaded once (matrix-sdk keeps its id by name) and reused.
pub async fn bot_filter(client: &Client, timeline_limit: u32) -> Result<Filter, MatrixError> {
    let name = format!("{FILTER_NAME_PREFIX}{timeline_limit}");
    let id = client
        .get_or_upload_filter(&name, bot_filter_definition(timeline_limit))
        .await
        .map_err(|e| MatrixError::from_sdk("uploading the sync filter", e))?;
    Ok(Filter::FilterId(id))
}

/// One successful sync, handed to the loop's callback.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    /// What the homeserver sent (already processed into matrix-sdk's store;
    /// timeline events are decrypted where possible).
    pub response: SyncResponse,
    /// How long the `/sync` request (and its processing) took.
    pub elapsed: Duration,
    /// The first response of the run ([`initial_sync`]'s), handed to the loop
    /// because it was not handled in full; the loop's own syncs are never first.
    pub first: bool,
}

/// A response the caller could not handle in full, and the token it continued from.
#[derive(Debug, Clone)]
pub struct Unhandled {
    /// The response, as the loop's callback got it.
    pub outcome: SyncOutcome,
    /// The token it continued from.
    pub since: Option<String>,
}

/// Where [`run_sync_loop`] keeps a response its callback could not handle in full, to hand
/// it over again after a pause (see the module docs for why not a new `/sync`). Shared:
/// a loop started with it filled handles that response first.
#[derive(Debug, Clone, Default)]
pub struct PendingResponse(Arc<Mutex<Option<Unhandled>>>);

impl PendingResponse {
    /// Keeps `unhandled` for the next round.
    pub fn keep(&self, unhandled: Unhandled) {
        *self.0.lock() = Some(unhandled);
    }

    fn take(&self) -> Option<Unhandled> {
        self.0.lock().take()
    }

    fn is_some(&self) -> bool {
        self.0.lock().is_some()
    }
}

/// The result of [`initial_sync`].
#[derive(Debug)]
pub struct InitialSync {
    /// Token to start [`run_sync_loop`] from once this response is handled.
    pub next_batch: String,
    /// The token this sync continued from (the caller's cursor, else the one
    /// matrix-sdk stored); `None` for a first, full sync.
    pub since: Option<String>,
    /// `true` when the sync continued from a token stored by a previous run,
    /// so its timeline holds only what arrived while the bot was down (a
    /// caller may choose to answer those); `false` for a first, full sync
    /// whose timeline is old history that must not be answered.
    pub resumed: bool,
    /// The response itself.
    pub response: SyncResponse,
}

/// The first sync of a run: catches up at once (no long poll) and returns
/// the token to continue from. It continues from `cursor` (the caller's own
/// durable record of what it handled), else from the sync token stored by
/// matrix-sdk in a previous run, else it is a full initial sync (see
/// [`InitialSync::resumed`]).
///
/// One attempt: on a retryable error ([`MatrixError::is_retryable`]) the
/// caller waits and calls again.
pub async fn initial_sync(
    client: &Client,
    health: &SyncHealth,
    cursor: Option<&str>,
    settings: &SyncLoopSettings,
) -> Result<InitialSync, MatrixError> {
    let since = match cursor {
        Some(cursor) => Some(cursor.to_owned()),
        None => stored_sync_token(client).await,
    };
    let resumed = since.is_some();
    match client
        .sync_once(settings.sync_settings(INITIAL_SYNC_TIMEOUT, since.as_deref()))
        .await
    {
        Ok(response) => {
            health.record_success();
            info!(resumed, own_cursor = cursor.is_some(), "initial sync done");
            Ok(InitialSync {
                next_batch: response.next_batch.clone(),
                since,
                resumed,
                response,
            })
        }
        Err(error) => {
            health.record_failure();
            Err(MatrixError::from_sdk("the initial sync", error))
        }
    }
}

async fn stored_sync_token(client: &Client) -> Option<String> {
    match client
        .state_store()
        .get_kv_data(StateStoreDataKey::SyncToken)
        .await
    {
        Ok(Some(StateStoreDataValue::SyncToken(token))) => Some(token),
        Ok(_) => None,
        Err(error) => {
            warn!(%error, "cannot read the stored sync token");
            None
        }
    }
}

/// Syncs until `shutdown` completes (returns `Ok`) or the token is rejected
/// (returns [`MatrixError::InvalidToken`]). Starts from `since` (normally the
/// caller's cursor; `None`: a full sync), after handing over the response kept in
/// `pending`, if any (after a pause: it failed just before).
///
/// Awaits `on_synced` after every successful sync, with no pause before the
/// next one when it succeeds. When it fails, the same response is handed over
/// again after a backoff (the token does not move past what the caller could not
/// handle; the response waits in `pending`). Sync errors are logged, counted in
/// `health` and retried after a backoff too.
pub async fn run_sync_loop<F, Fut, E, S>(
    client: &Client,
    since: Option<String>,
    pending: &PendingResponse,
    settings: &SyncLoopSettings,
    health: &SyncHealth,
    mut on_synced: F,
    shutdown: S,
) -> Result<(), MatrixError>
where
    F: FnMut(SyncOutcome, Option<String>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
    S: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    let mut token = since;
    let mut failed_rounds: u32 = 0;
    if pending.is_some() {
        failed_rounds = 1;
        let delay = sync_delay(failed_rounds, crate::retry::RetryKind::Network);
        info!(delay_ms = delay.as_millis() as u64,
            "a sync response is still to be handled in full; handling the same range again after a pause");
        if !pause(&mut shutdown, delay).await {
            return Ok(());
        }
    }
    loop {
        let (outcome, from) = match pending.take() {
            Some(unhandled) => (unhandled.outcome, unhandled.since),
            None => {
                let sync_settings = settings.sync_settings(settings.timeout, token.as_deref());
                let started = Instant::now();
                let result = tokio::select! {
                    biased;
                    () = &mut shutdown => {
                        info!("sync loop stopping");
                        return Ok(());
                    }
                    result = client.sync_once(sync_settings) => result,
                };
                match result {
                    Ok(response) => {
                        health.record_success();
                        let outcome = SyncOutcome {
                            response,
                            elapsed: started.elapsed(),
                            first: false,
                        };
                        (outcome, token.clone())
                    }
                    Err(error) => {
                        let error = MatrixError::from_sdk("syncing", error);
                        if error.is_invalid_token() {
                            health.record_failure();
                            warn!(%error, "sync loop stopping: the access token was rejected");
                            return Err(error);
                        }
                        let failures = health.record_failure();
                        let delay = sync_delay(failures, error.retry_kind());
                        warn!(%error, failures, delay_ms = delay.as_millis() as u64,
                            "sync failed; retrying after a pause");
                        if !pause(&mut shutdown, delay).await {
                            return Ok(());
                        }
                        continue;
                    }
                }
            }
        };
        let next = outcome.response.next_batch.clone();
        let kept = Unhandled {
            outcome: outcome.clone(),
            since: from.clone(),
        };
        match on_synced(outcome, from).await {
            Ok(()) => {
                token = Some(next);
                failed_rounds = 0;
            }
            Err(error) => {
                failed_rounds = failed_rounds.saturating_add(1);
                let delay = sync_delay(failed_rounds, crate::retry::RetryKind::Network);
                warn!(%error, failed_rounds, delay_ms = delay.as_millis() as u64,
                    "a sync response could not be handled in full; handling the same range again after a pause");
                pending.keep(kept);
                if !pause(&mut shutdown, delay).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Waits `delay`, or until `shutdown` completes (then `false`, logged).
async fn pause<S: Future<Output = ()>>(
    shutdown: &mut std::pin::Pin<&mut S>,
    delay: Duration,
) -> bool {
    tokio::select! {
        biased;
        () = shutdown.as_mut() => {
            info!("sync loop stopping");
            false
        }
        () = tokio::time::sleep(delay) => {
            debug!("syncing again");
            true
        }
    }
}

/// The wait before syncing again after `failures` failures in a row: the sync loop never
/// gives up, so a permanent error is waited out like a network one.
fn sync_delay(failures: u32, kind: crate::retry::RetryKind) -> Duration {
    let kind = match kind {
        crate::retry::RetryKind::Permanent => crate::retry::RetryKind::Network,
        other => other,
    };
    RetryPolicy::SYNC
        .delay(failures, kind, fastrand::f64())
        .unwrap_or(RetryPolicy::SYNC.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_delays_stay_within_the_policy_and_never_give_up() {
        use crate::retry::RetryKind;
        for failures in [1, 2, 8, 1_000, u32::MAX] {
            for kind in [
                RetryKind::Network,
                RetryKind::Permanent,
                RetryKind::Transient { retry_after: None },
            ] {
                let delay = sync_delay(failures, kind);
                assert!(
                    delay <= RetryPolicy::SYNC.max,
                    "{failures} {kind:?} {delay:?}"
                );
                assert!(
                    delay >= RetryPolicy::SYNC.base / 2,
                    "{failures} {kind:?} {delay:?}"
                );
            }
        }
        let asked = |secs| RetryKind::Transient {
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(sync_delay(1, asked(5)), Duration::from_secs(5));
        assert_eq!(
            sync_delay(1, asked(3_600)),
            RetryPolicy::SYNC.max_retry_after
        );
    }

    #[test]
    fn the_filter_limits_the_timeline() {
        let filter = bot_filter_definition(50);
        assert_eq!(filter.room.timeline.limit, Some(UInt::from(50u32)));
        let json = serde_json::to_value(&filter).unwrap();
        assert_eq!(json["room"]["timeline"]["limit"], 50, "{json}");
    }

    #[test]
    fn health_tracks_success_and_failures() {
        let health = SyncHealth::new();
        assert_eq!(health.last_success(), None);
        assert!(!health.is_recent(Duration::from_secs(60)));
        assert_eq!(health.record_failure(), 1);
        assert_eq!(health.record_failure(), 2);
        assert_eq!(health.consecutive_failures(), 2);
        health.record_success();
        assert_eq!(health.consecutive_failures(), 0);
        assert_eq!(health.successes(), 1);
        assert!(health.last_success().is_some());
        assert!(health.is_recent(Duration::from_secs(60)));
    }

    #[tokio::test]
    async fn loop_stops_on_shutdown_even_without_a_server() {
        // Nothing listens on this port: every sync fails with a network
        // error; the loop must back off and still stop promptly.
        let client = Client::builder()
            .homeserver_url("http://127.0.0.1:9")
            .build()
            .await
            .unwrap();
        client
            .restore_session(matrix_sdk::authentication::matrix::MatrixSession {
                meta: matrix_sdk::SessionMeta {
                    user_id: "@bot:example.org".try_into().unwrap(),
                    device_id: "DEV".into(),
                },
                tokens: matrix_sdk::SessionTokens {
                    access_token: "t".into(),
                    refresh_token: None,
                },
            })
            .await
            .unwrap();
        let health = SyncHealth::new();
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let shutdown = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let settings = SyncLoopSettings {
            timeout: Duration::from_millis(10),
            filter: None,
        };
        let stopper = async {
            // Let it fail at least once.
            while health.consecutive_failures() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = tx.send(true);
        };
        let pending = PendingResponse::default();
        let run = run_sync_loop(
            &client,
            None,
            &pending,
            &settings,
            &health,
            |_, _| async { Ok::<(), String>(()) },
            shutdown,
        );
        let (result, ()) = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(run, stopper)
        })
        .await
        .expect("the loop did not stop");
        assert!(result.is_ok(), "{result:?}");
        assert!(health.consecutive_failures() >= 1);
        assert!(health.last_success().is_none());
    }
}
