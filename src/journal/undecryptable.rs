//! The journal's record of messages the bot cannot read yet (see
//! [`crate::surface::undecryptable`]): held until the adapter reads them or they are older
//! than the journal's retention. Staged like the rest of the journal, so the intake makes
//! them durable in the same flush as the cursor that moved past them.
//!
//! Layout: tree `journal_undecryptable`, key `<surface>\0<message id>`, value the
//! [`Undecryptable`] as JSON.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{corrupt, Journal};
use crate::store::{encode, StoreError};
use crate::surface::{MessageId, Undecryptable};

/// The tree.
pub(super) const TREE: &str = "journal_undecryptable";

/// What happened to unreadable messages since start-up (read at scrape time).
#[derive(Debug, Default)]
pub struct UndecryptableCounts {
    /// Messages held because they could not be read.
    pub held: AtomicU64,
    /// Held messages read later (their key arrived).
    pub decrypted: AtomicU64,
    /// Held messages given up on after the grace period (the person was told).
    pub given_up: AtomicU64,
}

impl UndecryptableCounts {
    /// `(held, decrypted, given up)` now.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.held.load(Ordering::Relaxed),
            self.decrypted.load(Ordering::Relaxed),
            self.given_up.load(Ordering::Relaxed),
        )
    }
}

fn key(surface: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(surface.len() + 1 + id.len());
    key.extend_from_slice(surface.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

impl Journal {
    /// Holds a message `surface` cannot read yet (staged; [`Journal::commit`] makes it
    /// durable). False, and nothing changes, when it is already held, pending or answered.
    pub fn stage_undecryptable(
        &self,
        surface: &str,
        message: &Undecryptable,
    ) -> Result<bool, StoreError> {
        let key = key(surface, message.id.as_str());
        if self.undecryptable.contains_key(&key)? || self.is_known(message.id.as_str())? {
            return Ok(false);
        }
        self.put_undecryptable(&key, message)?;
        self.undecryptable_counts
            .held
            .fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Records that `surface` gave up waiting for a held message's key (staged); false
    /// when it is not held or was given up before.
    pub fn stage_given_up(&self, surface: &str, id: &MessageId) -> Result<bool, StoreError> {
        let key = key(surface, id.as_str());
        let Some(mut message) = self.held(&key)? else {
            return Ok(false);
        };
        if message.given_up {
            return Ok(false);
        }
        message.given_up = true;
        self.put_undecryptable(&key, &message)?;
        self.undecryptable_counts
            .given_up
            .fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Releases a held message `surface` could read at last (staged); false when it was not
    /// held.
    pub fn stage_decrypted(&self, surface: &str, id: &MessageId) -> Result<bool, StoreError> {
        let released = self
            .undecryptable
            .remove(key(surface, id.as_str()))?
            .is_some();
        if released {
            self.undecryptable_counts
                .decrypted
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(released)
    }

    /// The messages held for `surface`, oldest first.
    pub fn undecryptable(&self, surface: &str) -> Result<Vec<Undecryptable>, StoreError> {
        let mut held = self
            .undecryptable
            .scan_prefix(key(surface, ""))
            .map(|item| {
                let (key, bytes) = item?;
                serde_json::from_slice::<Undecryptable>(&bytes).map_err(|e| corrupt(TREE, &key, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        held.sort_by(|a, b| (a.since_ms, &a.id).cmp(&(b.since_ms, &b.id)));
        Ok(held)
    }

    /// `(waiting, given up)`: held messages of every surface now. An unreadable record is
    /// counted as waiting (it is logged where it is read).
    pub fn undecryptable_now(&self) -> (usize, usize) {
        let (mut waiting, mut given_up) = (0, 0);
        for (_, bytes) in self.undecryptable.iter().flatten() {
            match serde_json::from_slice::<Undecryptable>(&bytes) {
                Ok(message) if message.given_up => given_up += 1,
                _ => waiting += 1,
            }
        }
        (waiting, given_up)
    }

    /// What happened to unreadable messages since start-up.
    pub fn undecryptable_counts(&self) -> &UndecryptableCounts {
        &self.undecryptable_counts
    }

    /// Drops held messages first seen before `cutoff_ms` (staged); returns how many.
    pub(super) fn prune_undecryptable(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        let mut old = Vec::new();
        for item in self.undecryptable.iter() {
            let (key, bytes) = item?;
            match serde_json::from_slice::<Undecryptable>(&bytes) {
                Ok(message) if message.since_ms > cutoff_ms => {}
                Ok(message) => {
                    tracing::warn!(room_id = %message.chat, event_id = %message.id,
                        sender = %message.sender, "dropping a message that could not be \
                        decrypted for the whole journal retention");
                    old.push(key);
                }
                Err(error) => {
                    tracing::warn!(%error, key = %String::from_utf8_lossy(&key),
                        "dropping an unreadable record of an undecryptable message");
                    old.push(key);
                }
            }
        }
        for key in &old {
            self.undecryptable.remove(key)?;
        }
        Ok(old.len())
    }

    fn held(&self, key: &[u8]) -> Result<Option<Undecryptable>, StoreError> {
        self.undecryptable
            .get(key)?
            .map(|bytes| serde_json::from_slice(&bytes).map_err(|e| corrupt(TREE, key, e)))
            .transpose()
    }

    fn put_undecryptable(&self, key: &[u8], message: &Undecryptable) -> Result<(), StoreError> {
        let bytes = encode(TREE, message.id.as_str(), message)?;
        self.undecryptable.insert(key, bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::journal::Journal;
    use crate::store::Store;
    use crate::surface::{ChatId, MessageId, PersonId, Undecryptable};

    fn message(id: &str, since_ms: u64) -> Undecryptable {
        Undecryptable {
            chat: ChatId::new("!room"),
            id: MessageId::new(id),
            sender: PersonId::new("@p:x"),
            since_ms,
            given_up: false,
            payload: format!("{{\"event_id\":\"{id}\"}}"),
        }
    }

    #[tokio::test]
    async fn held_given_up_and_released_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let journal = Journal::open(&Store::open(dir.path()).unwrap()).unwrap();
            let now = super::super::now_ms();
            assert!(journal
                .stage_undecryptable("matrix", &message("$b", now))
                .unwrap());
            assert!(journal
                .stage_undecryptable("matrix", &message("$a", now - 1))
                .unwrap());
            assert!(!journal
                .stage_undecryptable("matrix", &message("$a", now))
                .unwrap());
            // Another messenger's messages are its own.
            assert!(journal
                .stage_undecryptable("other", &message("$c", now))
                .unwrap());
            // A message already journaled is not held.
            journal.stage("!room", "$d", "@p:x", "hi").unwrap();
            assert!(!journal
                .stage_undecryptable("matrix", &message("$d", now))
                .unwrap());
            assert!(journal
                .stage_given_up("matrix", &MessageId::new("$b"))
                .unwrap());
            assert!(!journal
                .stage_given_up("matrix", &MessageId::new("$b"))
                .unwrap());
            assert!(!journal
                .stage_given_up("matrix", &MessageId::new("$zz"))
                .unwrap());
            journal.commit().await.unwrap();
            assert_eq!(journal.undecryptable_counts().snapshot(), (3, 0, 1));
        }
        let journal = Journal::open(&Store::open(dir.path()).unwrap()).unwrap();
        let held = journal.undecryptable("matrix").unwrap();
        let ids: Vec<(&str, bool)> = held.iter().map(|m| (m.id.as_str(), m.given_up)).collect();
        assert_eq!(
            ids,
            [("$a", false), ("$b", true)],
            "oldest first, state kept"
        );
        assert_eq!(journal.undecryptable_now(), (2, 1));
        assert!(journal
            .stage_decrypted("matrix", &MessageId::new("$b"))
            .unwrap());
        assert!(!journal
            .stage_decrypted("matrix", &MessageId::new("$b"))
            .unwrap());
        assert_eq!(journal.undecryptable_now(), (2, 0));
        assert_eq!(journal.undecryptable_counts().snapshot(), (0, 1, 0));
    }

    #[tokio::test]
    async fn held_messages_older_than_the_retention_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&Store::open(dir.path()).unwrap()).unwrap();
        let now = super::super::now_ms();
        let retention = crate::journal::DONE_RETENTION;
        let too_old = now - u64::try_from(retention.as_millis()).unwrap() - 1;
        journal
            .stage_undecryptable("matrix", &message("$old", too_old))
            .unwrap();
        journal
            .stage_undecryptable("matrix", &message("$new", now))
            .unwrap();
        journal.prune_done(retention).await.unwrap();
        let held = journal.undecryptable("matrix").unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].id.as_str(), "$new");
    }
}
