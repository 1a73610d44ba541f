//! The conversations of OpenAI-compatible agents, kept by Surfaces.
//!
//! Why this exists: a chat completions server remembers nothing between requests, so each
//! chat's history lives in the store (tree `openai_conversations`, key
//! `<agent id>\0<platform chat id>`), with its snapshots for `!save`/`!load` (tree
//! `openai_snapshots`, key `<agent id>\0<chat>\0<name>`). Unlike rooms and bindings, this
//! cannot be rebuilt from the messenger: it is part of what the data dir's backup must keep.
//!
//! **The budget.** A history is kept, and sent, within `agents[].history_max_messages` and
//! `agents[].history_max_tokens`, dropping the oldest messages first and never starting with
//! a reply whose question was dropped ([`keep_from`]). Tokens are estimated, not counted (the
//! tokenizer depends on the model): one token per [`CHARS_PER_TOKEN`] characters plus
//! [`MESSAGE_OVERHEAD_TOKENS`] per message, close for English prose with common tokenizers and
//! on the generous side for code.
//!
//! **Idempotency.** The last turn's id and reply are kept with the history: a turn retried
//! with the same id (a retry, a resume after a crash) is answered from there, not sent twice.

use serde::{Deserialize, Serialize};

use super::wire::{ChatMessage, Role};
use crate::store::{Store, StoreError};

/// Characters per estimated token.
pub const CHARS_PER_TOKEN: u64 = 4;
/// Estimated tokens each message costs beyond its text (role, separators).
pub const MESSAGE_OVERHEAD_TOKENS: u64 = 4;
/// The tree of conversations.
const CONVERSATIONS_TREE: &str = "openai_conversations";
/// The tree of snapshots.
const SNAPSHOTS_TREE: &str = "openai_snapshots";

/// The estimated tokens of `message`.
pub fn estimate_tokens(message: &ChatMessage) -> u64 {
    let chars = u64::try_from(message.content.chars().count()).unwrap_or(u64::MAX);
    chars.div_ceil(CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS
}

/// Where the part of `history` within the budget starts: the newest messages, at most
/// `max_messages` and `max_tokens` (estimated), not starting with a reply. Pure.
pub fn keep_from(history: &[ChatMessage], max_messages: usize, max_tokens: u64) -> usize {
    let mut start = history.len();
    let mut tokens = 0u64;
    while start > 0 && history.len() - start < max_messages {
        let cost = estimate_tokens(&history[start - 1]);
        if tokens.saturating_add(cost) > max_tokens {
            break;
        }
        tokens += cost;
        start -= 1;
    }
    while start < history.len() && history[start].role == Role::Assistant {
        start += 1;
    }
    start
}

/// The turn answered last in a chat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastTurn {
    /// Its id.
    pub turn_id: String,
    /// Its reply.
    pub reply: String,
}

/// One chat's conversation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Its messages, oldest first, within the budget.
    pub messages: Vec<ChatMessage>,
    /// The last turn answered (for idempotent retries).
    #[serde(default)]
    pub last_turn: Option<LastTurn>,
}

impl Conversation {
    /// The estimated tokens of its messages.
    pub fn tokens(&self) -> u64 {
        self.messages.iter().map(estimate_tokens).sum()
    }
}

/// The conversations of one agent.
#[derive(Clone)]
pub struct Conversations {
    agent: String,
    conversations: sled::Tree,
    snapshots: sled::Tree,
    store: Store,
}

impl std::fmt::Debug for Conversations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversations")
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("\0").into_bytes()
}

fn decode<T: for<'de> Deserialize<'de>>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

fn encode<T: Serialize>(tree: &'static str, key: &[u8], value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

impl Conversations {
    /// The conversations of agent `agent` in `store`.
    pub fn open(store: &Store, agent: &str) -> Result<Self, StoreError> {
        Ok(Self {
            agent: agent.to_owned(),
            conversations: store.db().open_tree(CONVERSATIONS_TREE)?,
            snapshots: store.db().open_tree(SNAPSHOTS_TREE)?,
            store: store.clone(),
        })
    }

    /// The conversation of `chat` (empty when there is none).
    pub fn load(&self, chat: &str) -> Result<Conversation, StoreError> {
        let key = key(&[&self.agent, chat]);
        match self.conversations.get(&key)? {
            Some(bytes) => decode(CONVERSATIONS_TREE, &key, &bytes),
            None => Ok(Conversation::default()),
        }
    }

    /// Stores the conversation of `chat`, durably.
    pub async fn save(&self, chat: &str, conversation: &Conversation) -> Result<(), StoreError> {
        let key = key(&[&self.agent, chat]);
        let bytes = encode(CONVERSATIONS_TREE, &key, conversation)?;
        self.conversations.insert(key, bytes)?;
        self.store.flush().await
    }

    /// Forgets the conversation of `chat` (its snapshots stay), durably.
    pub async fn delete(&self, chat: &str) -> Result<(), StoreError> {
        self.conversations.remove(key(&[&self.agent, chat]))?;
        self.store.flush().await
    }

    /// Saves the conversation of `chat` as snapshot `name` (replacing one of that name);
    /// returns how many messages it holds.
    pub async fn save_snapshot(&self, chat: &str, name: &str) -> Result<u64, StoreError> {
        let mut conversation = self.load(chat)?;
        conversation.last_turn = None;
        let key = key(&[&self.agent, chat, name]);
        let bytes = encode(SNAPSHOTS_TREE, &key, &conversation)?;
        self.snapshots.insert(key, bytes)?;
        self.store.flush().await?;
        Ok(u64::try_from(conversation.messages.len()).unwrap_or(u64::MAX))
    }

    /// Makes snapshot `name` (saved in `from`) the conversation of `chat`; false when there is
    /// no such snapshot.
    pub async fn restore(&self, chat: &str, from: &str, name: &str) -> Result<bool, StoreError> {
        let key = key(&[&self.agent, from, name]);
        let Some(bytes) = self.snapshots.get(&key)? else {
            return Ok(false);
        };
        let conversation: Conversation = decode(SNAPSHOTS_TREE, &key, &bytes)?;
        self.save(chat, &conversation).await?;
        Ok(true)
    }

    /// The names of the snapshots saved from `chat`.
    pub fn snapshots_of(&self, chat: &str) -> Result<Vec<String>, StoreError> {
        let mut prefix = key(&[&self.agent, chat]);
        prefix.push(0);
        self.snapshots
            .scan_prefix(&prefix)
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?[prefix.len()..]).into_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: Role, chars: usize) -> ChatMessage {
        ChatMessage::new(role, "x".repeat(chars))
    }

    #[test]
    fn the_budget_keeps_the_newest_whole_turns() {
        use Role::{Assistant as A, User as U};
        // 36 characters = 9 tokens + 4 overhead = 13 tokens per message.
        let turns = [m(U, 36), m(A, 36), m(U, 36), m(A, 36), m(U, 36)];
        // (name, history, max messages, max tokens, kept from)
        let table: &[(&str, &[ChatMessage], usize, u64, usize)] = &[
            ("all fits", &turns, 10, 1_000, 0),
            ("by messages", &turns, 3, 1_000, 2),
            ("by messages, not from a reply", &turns, 4, 1_000, 2),
            ("by tokens", &turns, 10, 39, 2),
            ("by tokens, not from a reply", &turns, 10, 52, 2),
            ("only the newest", &turns, 1, 1_000, 4),
            ("nothing fits", &turns, 10, 5, 5),
            ("empty", &[], 10, 10, 0),
            ("a lone reply is not kept", &[m(A, 4)], 10, 100, 1),
        ];
        for (name, history, max_messages, max_tokens, expected) in table {
            assert_eq!(
                keep_from(history, *max_messages, *max_tokens),
                *expected,
                "{name}"
            );
        }
    }

    #[test]
    fn estimates_count_characters_not_bytes() {
        assert_eq!(estimate_tokens(&ChatMessage::new(Role::User, "")), 4);
        assert_eq!(estimate_tokens(&ChatMessage::new(Role::User, "abcde")), 6);
        assert_eq!(estimate_tokens(&ChatMessage::new(Role::User, "éééé")), 5);
    }

    #[tokio::test]
    async fn conversations_and_snapshots_survive_a_restart_per_agent() {
        let dir = tempfile::tempdir().unwrap();
        let conversation = Conversation {
            messages: vec![
                ChatMessage::new(Role::User, "hi"),
                ChatMessage::new(Role::Assistant, "hello"),
            ],
            last_turn: Some(LastTurn {
                turn_id: "t1".into(),
                reply: "hello".into(),
            }),
        };
        {
            let store = Store::open(dir.path()).unwrap();
            let a = Conversations::open(&store, "a").unwrap();
            a.save("c1", &conversation).await.unwrap();
            assert_eq!(a.save_snapshot("c1", "before").await.unwrap(), 2);
        }
        let store = Store::open(dir.path()).unwrap();
        let a = Conversations::open(&store, "a").unwrap();
        let b = Conversations::open(&store, "b").unwrap();
        assert_eq!(a.load("c1").unwrap(), conversation);
        assert_eq!(b.load("c1").unwrap(), Conversation::default());
        assert_eq!(a.snapshots_of("c1").unwrap(), ["before"]);
        assert!(
            a.snapshots_of("c").unwrap().is_empty(),
            "a prefix of a chat id"
        );
        assert!(a.restore("c2", "c1", "before").await.unwrap());
        let restored = a.load("c2").unwrap();
        assert_eq!(restored.messages, conversation.messages);
        assert_eq!(restored.last_turn, None);
        assert!(!a.restore("c2", "c1", "nope").await.unwrap());
        a.delete("c1").await.unwrap();
        assert_eq!(a.load("c1").unwrap(), Conversation::default());
    }
}
