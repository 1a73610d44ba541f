//! What a messenger holds about the bot's chats: bindings and homes.
//!
//! Why this exists: the messenger, not the store, is the source of truth wherever it can
//! hold state (Matrix room state). A chat's [`Binding`] says which agent and upstream
//! conversation it belongs to and whose it is; a person's home (a Space on Matrix) holds
//! their [`HomePrefs`]. Reconciliation reads [`ChatFacts`] and rebuilds the store from
//! them; a messenger without chat state keeps bindings in the store alone. Anyone with
//! enough power in a chat can write such state, so the facts also say who wrote each piece
//! and who is in the chat: reconciliation trusts only what the bot itself wrote.

use serde::{Deserialize, Serialize};

use super::ids::{ChatId, PersonId};

/// The chat ↔ agent binding (Matrix: the `org.surfaces.room` state event).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The agent the chat talks to.
    pub agent_id: String,
    /// The upstream conversation (`docs/agent-api.md`'s `{chat}`).
    #[serde(default)]
    pub platform_chat_id: String,
    /// Whose chat it is.
    pub owner: String,
    /// Its number among the owner's chats.
    #[serde(default)]
    pub chat_index: u32,
    /// Archived chats answer with a notice only.
    #[serde(default)]
    pub archived: bool,
}

/// A person's preferences, kept in their home (Matrix: in the Space's
/// `org.surfaces.space` state event), so they survive the loss of the store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomePrefs {
    /// The agent new chats start with (`!agent <id>`); `None`: the default agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_agent: Option<String>,
}

/// What the messenger says about one chat the bot is in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatFacts {
    /// The chat.
    pub chat: ChatId,
    /// Its name, if any.
    pub name: Option<String>,
    /// Its binding, if it is one of the bot's chats.
    pub binding: Option<Binding>,
    /// Its owner and their preferences, if it is a person's home the bot made.
    pub home: Option<HomeFacts>,
    /// The home it belongs to (Matrix: `m.space.parent`), if any.
    pub parent: Option<ChatId>,
    /// Who created the chat (Matrix: the sender of `m.room.create`), if known.
    pub creator: Option<PersonId>,
    /// Who wrote the binding (Matrix: the sender of `org.surfaces.room`).
    pub binding_sender: Option<PersonId>,
    /// Who wrote the home marker (Matrix: the sender of `org.surfaces.space`).
    pub home_sender: Option<PersonId>,
    /// Who wrote the link to the home (Matrix: the sender of the chosen `m.space.parent`).
    pub parent_sender: Option<PersonId>,
    /// Who is in the chat or invited to it (the owner must be one of them).
    pub members: Vec<PersonId>,
}

/// A home the bot made for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HomeFacts {
    /// Whose home it is.
    pub owner: PersonId,
    /// Their preferences.
    pub prefs: HomePrefs,
}

/// A chat to create in a person's home.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewChat {
    /// The person's home.
    pub home: ChatId,
    /// The person (invited, and given power over the chat below the bot's).
    pub owner: PersonId,
    /// Its name.
    pub name: String,
    /// Its binding (stored with the chat where the messenger can).
    pub binding: Binding,
}
