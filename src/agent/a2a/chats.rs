//! What Surfaces remembers of each chat with an A2A agent.
//!
//! Why this file exists: an A2A agent keeps the conversation (the `contextId` is the room's
//! platform chat id), but two things live on Surfaces' side and must survive a restart:
//! the task waiting for the person's answer (`input-required`: their next message, or
//! `!yes`/`!no`, continues it), and the task each turn started (a turn retried or resumed
//! after a crash follows that task instead of sending the message twice). Tree `a2a_chats`,
//! key `<agent id>\0<platform chat id>`.

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// The tree.
const TREE: &str = "a2a_chats";

/// The task a turn started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnTask {
    /// The turn (the message id sent).
    pub turn_id: String,
    /// The task.
    pub task_id: String,
}

/// One chat's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatState {
    /// The task waiting for the person's answer.
    #[serde(default)]
    pub waiting_task: Option<String>,
    /// The task the latest turn started.
    #[serde(default)]
    pub last_turn: Option<TurnTask>,
}

impl ChatState {
    /// The task `turn_id` started, if it is the latest turn.
    pub fn task_of(&self, turn_id: &str) -> Option<&str> {
        self.last_turn
            .as_ref()
            .filter(|t| t.turn_id == turn_id)
            .map(|t| t.task_id.as_str())
    }
}

/// The chats of one agent.
#[derive(Clone)]
pub struct A2aChats {
    agent: String,
    tree: sled::Tree,
    store: Store,
}

impl std::fmt::Debug for A2aChats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("A2aChats")
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

impl A2aChats {
    /// The chats of agent `agent` in `store`.
    pub fn open(store: &Store, agent: &str) -> Result<Self, StoreError> {
        Ok(Self {
            agent: agent.to_owned(),
            tree: store.db().open_tree(TREE)?,
            store: store.clone(),
        })
    }

    fn key(&self, chat: &str) -> Vec<u8> {
        format!("{}\0{chat}", self.agent).into_bytes()
    }

    /// The state of `chat` (empty when there is none).
    pub fn load(&self, chat: &str) -> Result<ChatState, StoreError> {
        let key = self.key(chat);
        match self.tree.get(&key)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                tree: TREE,
                key: String::from_utf8_lossy(&key).into_owned(),
                message: e.to_string(),
            }),
            None => Ok(ChatState::default()),
        }
    }

    /// Stores the state of `chat`; durable once [`A2aChats::flush`] returns.
    pub fn put(&self, chat: &str, state: &ChatState) -> Result<(), StoreError> {
        let key = self.key(chat);
        let bytes = serde_json::to_vec(state).map_err(|e| StoreError::Encode {
            tree: TREE,
            key: String::from_utf8_lossy(&key).into_owned(),
            message: e.to_string(),
        })?;
        self.tree.insert(key, bytes)?;
        Ok(())
    }

    /// Stores the state of `chat`, durably.
    pub async fn save(&self, chat: &str, state: &ChatState) -> Result<(), StoreError> {
        self.put(chat, state)?;
        self.flush().await
    }

    /// Makes the writes so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.store.flush().await
    }

    /// Forgets `chat`, durably.
    pub async fn delete(&self, chat: &str) -> Result<(), StoreError> {
        self.tree.remove(self.key(chat))?;
        self.store.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chat_state_survives_a_reopen() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("cannot make a temporary directory")
        };
        let state = ChatState {
            waiting_task: Some("t2".into()),
            last_turn: Some(TurnTask {
                turn_id: "turn-1".into(),
                task_id: "t1".into(),
            }),
        };
        {
            let store = Store::open(dir.path()).ok();
            let chats = store.as_ref().and_then(|s| A2aChats::open(s, "a").ok());
            let Some(chats) = chats else {
                panic!("cannot open the store")
            };
            assert!(chats.save("chat-1", &state).await.is_ok());
            assert_eq!(chats.load("chat-2").ok(), Some(ChatState::default()));
        }
        let store = Store::open(dir.path()).ok();
        let chats = store.as_ref().and_then(|s| A2aChats::open(s, "a").ok());
        let loaded = chats.as_ref().and_then(|c| c.load("chat-1").ok());
        assert_eq!(loaded.as_ref(), Some(&state));
        assert_eq!(
            loaded.as_ref().and_then(|s| s.task_of("turn-1")),
            Some("t1")
        );
        assert_eq!(loaded.as_ref().and_then(|s| s.task_of("turn-2")), None);
        let other_agent = store.as_ref().and_then(|s| A2aChats::open(s, "b").ok());
        assert_eq!(
            other_agent.and_then(|c| c.load("chat-1").ok()),
            Some(ChatState::default())
        );
        if let Some(chats) = chats {
            assert!(chats.delete("chat-1").await.is_ok());
            assert_eq!(chats.load("chat-1").ok(), Some(ChatState::default()));
        }
    }
}
