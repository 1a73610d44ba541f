//! What the bot already sent on Telegram, per send key: Telegram's missing transaction ids.
//!
//! Why this exists: Matrix turns two sends with the same transaction id into one message;
//! the Bot API has nothing like it, so a reply sent again after a crash or a retried
//! request would reach the person twice. The adapter records, per [`SendKey`] (one per
//! message and answer part), the message it became, durably before the send returns; a
//! send whose key is recorded returns the recorded message instead of sending. The window
//! that remains — a crash after Telegram accepted the message and before the record is
//! flushed — is one message wide and is documented in `docs/ARCHITECTURE.md`.
//!
//! Kept in a sled database of the adapter's own (`<data_dir>/telegram/sent`), flushed at
//! every record; old records are dropped after [`KEEP_FOR`] (a key is only ever reused by a
//! retry or a restart, within minutes).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::surface::SendKey;

/// How long a record is kept.
pub const KEEP_FOR: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// One sent message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRecord {
    /// The Telegram chat.
    pub chat: i64,
    /// The message it became.
    pub message: i32,
    /// When it was sent (seconds since the epoch).
    pub at: u64,
}

/// The record of sent messages.
#[derive(Clone, Debug)]
pub struct SentLog {
    tree: sled::Tree,
}

/// Why the record could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("the Telegram sent-message record ({path}): {message}")]
pub struct SentLogError {
    path: String,
    message: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SentLog {
    /// Opens (or creates) the record in `dir`, dropping records older than [`KEEP_FOR`].
    pub fn open(dir: &Path) -> Result<Self, SentLogError> {
        let error = |e: sled::Error| SentLogError {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        let db = sled::Config::new().path(dir).open().map_err(error)?;
        let tree = db.open_tree("sent").map_err(error)?;
        let log = Self { tree };
        log.prune(now().saturating_sub(KEEP_FOR.as_secs()));
        Ok(log)
    }

    /// The message `key` became, if it was sent.
    pub fn get(&self, key: &SendKey) -> Option<SentRecord> {
        match self.tree.get(key.as_str()) {
            Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(record) => Some(record),
                Err(error) => {
                    tracing::error!(%error, %key, "a corrupt record of a sent Telegram message; \
                        treating it as not sent");
                    None
                }
            },
            Ok(None) => None,
            Err(error) => {
                tracing::error!(%error, %key, "cannot read the record of sent Telegram messages; \
                    treating the message as not sent");
                None
            }
        }
    }

    /// Records that `key` became `message` of `chat`, durably.
    pub async fn put(&self, key: &SendKey, chat: i64, message: i32) -> Result<(), SentLogError> {
        let error = |e: String| SentLogError {
            path: "sent".to_owned(),
            message: e,
        };
        let record = SentRecord {
            chat,
            message,
            at: now(),
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| error(e.to_string()))?;
        self.tree
            .insert(key.as_str(), bytes)
            .map_err(|e| error(e.to_string()))?;
        self.tree
            .flush_async()
            .await
            .map(drop)
            .map_err(|e| error(e.to_string()))
    }

    /// Drops records sent before `before` (seconds since the epoch).
    fn prune(&self, before: u64) {
        let mut dropped = 0usize;
        for entry in self.tree.iter() {
            let Ok((key, value)) = entry else { continue };
            let old = serde_json::from_slice::<SentRecord>(&value).map_or(true, |r| r.at < before);
            if old && self.tree.remove(key).is_ok() {
                dropped += 1;
            }
        }
        if dropped > 0 {
            tracing::info!(dropped, "dropped old records of sent Telegram messages");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_recorded_key_survives_reopening_and_old_ones_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = SendKey::new("sfc-abc-0");
        {
            let log = SentLog::open(dir.path()).expect("open");
            assert_eq!(log.get(&key), None);
            log.put(&key, 42, 7).await.expect("put");
        }
        let log = SentLog::open(dir.path()).expect("reopen");
        let record = log.get(&key).expect("kept");
        assert_eq!((record.chat, record.message), (42, 7));
        log.prune(record.at + 1);
        assert_eq!(log.get(&key), None);
    }
}
