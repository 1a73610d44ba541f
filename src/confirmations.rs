//! Pending confirmations: "are you sure?" questions waiting for `!yes` / `!no`.
//!
//! Keyed by (person, room): a `!yes` from someone else, or in another room, confirms
//! nothing. Persisted in sled (flushed), so a confirmation survives a restart; each one
//! expires (config `confirmations.ttl_secs`) and the sweeper tells the room. Both the
//! bot's own questions (`!archive`) and the agent's (`confirm` events of a turn) use it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::store::{encode, Store, StoreError};

/// The sled tree holding pending confirmations.
const TREE: &str = "confirmations";

/// What a confirmation will do once answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pending {
    /// Archive the room.
    Archive,
    /// Answer the agent's `confirm` event, continuing its turn.
    Agent {
        /// The agent's confirmation id.
        confirm_id: String,
        /// The turn it belongs to.
        turn_id: String,
        /// The platform chat of the turn.
        chat_id: String,
        /// The agent.
        agent_id: String,
        /// The question, as the agent asked it.
        prompt: String,
    },
}

/// A stored confirmation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The room.
    pub room_id: String,
    /// The person who must answer.
    pub person: String,
    /// What happens on `!yes`.
    pub pending: Pending,
    /// When it expires (ms since the epoch).
    pub expires_ms: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn key(person: &str, room_id: &str) -> Vec<u8> {
    // A NUL cannot occur in Matrix ids: the pair cannot be forged by either part.
    let mut k = person.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(room_id.as_bytes());
    k
}

/// The confirmation table. Cheap to clone.
#[derive(Clone)]
pub struct Confirmations {
    tree: sled::Tree,
    store: Store,
    ttl: Duration,
}

impl Confirmations {
    /// Opens the table; confirmations live `ttl`.
    pub fn open(store: &Store, ttl: Duration) -> Result<Self, StoreError> {
        Ok(Self {
            tree: store.db().open_tree(TREE)?,
            store: store.clone(),
            ttl,
        })
    }

    /// How long a confirmation lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Asks `person` in `room_id` (replacing any earlier question of theirs there).
    pub async fn ask(
        &self,
        room_id: &str,
        person: &str,
        pending: Pending,
    ) -> Result<(), StoreError> {
        let confirmation = Confirmation {
            room_id: room_id.to_owned(),
            person: person.to_owned(),
            pending,
            expires_ms: now_ms()
                .saturating_add(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)),
        };
        let bytes = encode(TREE, &format!("{person}/{room_id}"), &confirmation)?;
        self.tree.insert(key(person, room_id), bytes)?;
        self.store.flush().await
    }

    /// The live (unexpired) confirmation of `person` in `room_id`, if any.
    pub fn get(&self, room_id: &str, person: &str) -> Result<Option<Confirmation>, StoreError> {
        let Some(bytes) = self.tree.get(key(person, room_id))? else {
            return Ok(None);
        };
        let c: Confirmation = decode(&bytes, person, room_id)?;
        Ok((c.expires_ms > now_ms()).then_some(c))
    }

    /// Every live (unexpired) confirmation asked in `room_id` (for the ops endpoint's room
    /// page; a scan of the table, which holds one entry per person and room at most).
    pub fn of_room(&self, room_id: &str) -> Result<Vec<Confirmation>, StoreError> {
        let now = now_ms();
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (key, bytes) = item?;
            let c: Confirmation =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                    tree: TREE,
                    key: String::from_utf8_lossy(&key).into_owned(),
                    message: e.to_string(),
                })?;
            if c.room_id == room_id && c.expires_ms > now {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Takes (removes and returns) the live confirmation of `person` in `room_id`.
    pub async fn take(
        &self,
        room_id: &str,
        person: &str,
    ) -> Result<Option<Confirmation>, StoreError> {
        let found = self.get(room_id, person)?;
        if found.is_some() {
            self.tree.remove(key(person, room_id))?;
            self.store.flush().await?;
        }
        Ok(found)
    }

    /// Removes and returns every expired confirmation.
    pub async fn take_expired(&self) -> Result<Vec<Confirmation>, StoreError> {
        let now = now_ms();
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (k, bytes) = item?;
            match serde_json::from_slice::<Confirmation>(&bytes) {
                Ok(c) if c.expires_ms <= now => {
                    self.tree.remove(&k)?;
                    out.push(c);
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "dropping an unreadable confirmation");
                    self.tree.remove(&k)?;
                }
            }
        }
        if !out.is_empty() {
            self.store.flush().await?;
        }
        Ok(out)
    }
}

fn decode(bytes: &[u8], person: &str, room_id: &str) -> Result<Confirmation, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree: TREE,
        key: format!("{person}/{room_id}"),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keyed_by_person_and_room_and_persistent() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let c = Confirmations::open(&store, Duration::from_secs(600)).unwrap();
            c.ask("!r", "@a:x", Pending::Archive).await.unwrap();
            assert!(c.get("!r", "@b:x").unwrap().is_none(), "another person");
            assert!(c.get("!other", "@a:x").unwrap().is_none(), "another room");
        }
        let store = Store::open(dir.path()).unwrap();
        let c = Confirmations::open(&store, Duration::from_secs(600)).unwrap();
        let got = c
            .take("!r", "@a:x")
            .await
            .unwrap()
            .expect("survives reopen");
        assert_eq!(got.pending, Pending::Archive);
        assert!(c.take("!r", "@a:x").await.unwrap().is_none(), "taken once");
        c.ask("!r", "@a:x", Pending::Archive).await.unwrap();
        c.ask("!r", "@b:x", Pending::Archive).await.unwrap();
        c.ask("!other", "@a:x", Pending::Archive).await.unwrap();
        let mut people: Vec<String> = c
            .of_room("!r")
            .unwrap()
            .into_iter()
            .map(|c| c.person)
            .collect();
        people.sort();
        assert_eq!(people, ["@a:x", "@b:x"], "the room's, not the other's");
    }

    #[tokio::test]
    async fn expired_ones_are_swept_not_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = Confirmations::open(&store, Duration::ZERO).unwrap();
        c.ask("!r", "@a:x", Pending::Archive).await.unwrap();
        assert!(c.get("!r", "@a:x").unwrap().is_none());
        let swept = c.take_expired().await.unwrap();
        assert_eq!(swept.len(), 1);
        assert!(c.take_expired().await.unwrap().is_empty());
    }
}
