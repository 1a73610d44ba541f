//! The seam between the core and a messenger: the [`Surface`] trait and its vocabulary.
//!
//! Why this module exists: a person talks to the platform's agents "through any messenger
//! without changing the core". The core — intake, room actors, commands, router, journal,
//! agent connections — knows nothing but this module; each messenger is an adapter that
//! implements it (`crate::matrix` for Matrix; an in-memory one in `surfaces-testkit` for
//! tests and the pipeline benchmark). The split follows the mature bridge frameworks:
//! the adapter owns the wire (sync loops, event formats, encryption, media, retries of its
//! own transport) and hands the core ordered, typed events; the core owns the decisions
//! (who may talk, what is a command, what is journaled, what an agent is asked).
//!
//! Three halves:
//! - **outbound** ([`Surface`]): say, edit, show typing, mark read, fetch and post files,
//!   provision homes and chats, store and read bindings;
//! - **inbound** ([`Inbound`], implemented by the core): the adapter delivers messages in
//!   each chat's order, with the cursor they were read up to, and hears which messages the
//!   core has already handled (catch-up after down time);
//! - **lifecycle** ([`Connector`]): start-up (catch up with the messenger so reconciliation
//!   reads current facts), then going live under the core's supervisor.
//!
//! What a messenger lacks is declared in [`Capabilities`], never assumed.

pub mod binding;
pub mod encryption;
pub mod error;
pub mod health;
pub mod ids;
pub mod message;
pub mod undecryptable;

use std::sync::Arc;

use async_trait::async_trait;

pub use self::binding::{Binding, ChatFacts, HomeFacts, HomePrefs, NewChat};
pub use self::error::{BoxError, SurfaceError};
pub use self::ids::{turn_id_for, AnswerPart, ChatId, MessageId, PersonId, SendKey};
pub use self::message::{
    FetchError, FileRef, Incoming, IncomingBody, IncomingFile, OutFile, OutMessage, ReplyTo, Voice,
};
pub use self::undecryptable::Undecryptable;

/// What a messenger can do. The core adapts to what is missing: no edits → no streaming
/// (the final reply only); no chat state → the store is the source of truth for bindings;
/// no homes → a person's chats are not grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The bot can edit what it sent.
    pub edits: bool,
    /// Bindings are stored with the chat (reconciliation rebuilds the store from them).
    pub chat_state: bool,
    /// A person's chats live in a home the bot makes (a Space).
    pub homes: bool,
    /// The longest message the messenger accepts, in bytes of text (`None`: no known limit).
    pub max_message_bytes: Option<usize>,
}

/// What the core needs from a messenger (outbound). Every method is safe to retry when its
/// error says so ([`crate::retry::Retryable`]); sends with a [`SendKey`] are idempotent.
#[async_trait]
pub trait Surface: Send + Sync + 'static {
    /// A short stable name (`matrix`, `memory`): the store's key for its records and cursor,
    /// and a metrics label.
    fn name(&self) -> &'static str;

    /// What it can do.
    fn capabilities(&self) -> Capabilities;

    /// The bot's own identity on it.
    fn bot(&self) -> &PersonId;

    /// Says something in a chat; returns the message's id.
    async fn send(&self, chat: &ChatId, message: OutMessage) -> Result<MessageId, SurfaceError>;

    /// Replaces the text of a message the bot sent (needs [`Capabilities::edits`]).
    async fn edit(
        &self,
        chat: &ChatId,
        target: &MessageId,
        message: OutMessage,
    ) -> Result<MessageId, SurfaceError>;

    /// Shows (or hides) that the bot is working on an answer. Best effort: failures are
    /// logged by the adapter, never returned (typing is cosmetic).
    async fn typing(&self, chat: &ChatId, on: bool);

    /// Marks `message` as read by the bot. Best effort, like [`Surface::typing`].
    async fn mark_read(&self, chat: &ChatId, message: &MessageId);

    /// Downloads a file a person sent, refusing past `max_bytes` without keeping more.
    async fn fetch_file(&self, file: &IncomingFile, max_bytes: u64) -> Result<Vec<u8>, FetchError>;

    /// Posts a file in a chat (as an image, audio, video or plain file by its MIME type).
    async fn send_file(
        &self,
        chat: &ChatId,
        file: OutFile,
        key: SendKey,
    ) -> Result<MessageId, SurfaceError>;

    /// Joins a chat the bot was invited to.
    async fn accept_invite(&self, chat: &ChatId) -> Result<(), SurfaceError>;

    /// Declines an invite (leaves the chat).
    async fn decline_invite(&self, chat: &ChatId) -> Result<(), SurfaceError>;

    /// Makes `owner` a home named `name` (needs [`Capabilities::homes`]).
    async fn create_home(&self, owner: &PersonId, name: &str) -> Result<ChatId, SurfaceError>;

    /// Makes a chat in a person's home, bound as `chat.binding`, and invites them.
    async fn create_chat(&self, chat: NewChat) -> Result<ChatId, SurfaceError>;

    /// Renames a chat.
    async fn rename_chat(&self, chat: &ChatId, name: &str) -> Result<(), SurfaceError>;

    /// Takes a chat out of its home (archiving).
    async fn detach_chat(&self, home: &ChatId, chat: &ChatId) -> Result<(), SurfaceError>;

    /// Stores a chat's binding with the chat (needs [`Capabilities::chat_state`]).
    async fn set_binding(&self, chat: &ChatId, binding: &Binding) -> Result<(), SurfaceError>;

    /// Stores a person's preferences in their home (needs [`Capabilities::homes`]).
    async fn set_home_prefs(
        &self,
        home: &ChatId,
        owner: &PersonId,
        prefs: &HomePrefs,
    ) -> Result<(), SurfaceError>;

    /// The chats the bot is in (from what the adapter already knows: no requests).
    async fn chats(&self) -> Result<Vec<ChatId>, SurfaceError>;

    /// What the messenger holds about one of them.
    async fn chat_facts(&self, chat: &ChatId) -> Result<ChatFacts, SurfaceError>;

    /// The bot's end-to-end encryption keys, for a person to compare out of band (`None`
    /// where the messenger does not encrypt end to end).
    async fn encryption_identity(&self) -> Option<encryption::EncryptionIdentity> {
        None
    }

    /// What people should know this messenger cannot do here (markdown, for `!help`; e.g.
    /// Telegram without topics holds one conversation per private chat).
    fn help_note(&self) -> Option<&'static str> {
        None
    }
}

/// An invite of the bot to a chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invite {
    /// The chat.
    pub chat: ChatId,
    /// Who invited the bot.
    pub inviter: PersonId,
    /// Whether the inviter marked it as a direct chat with the bot (Matrix: `is_direct` on
    /// the invite); only such a chat can become a person's way in (onboarding).
    pub direct: bool,
    /// The message that asked, where every message to the bot in its home is a request of
    /// its own (Telegram): each is answered. `None`: a standing invite the messenger repeats
    /// (Matrix), answered once per chat.
    pub knock: Option<MessageId>,
}

/// Messages read from a messenger, to be accepted together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The messages, in each chat's order (chats may interleave).
    pub messages: Vec<Incoming>,
    /// Messages the adapter found already answered (the bot's replies to them are in the
    /// messenger): recorded as answered, never delivered — except those the journal holds
    /// pending, which their rooms resume (the reply may be a live reply cut short).
    pub answered: Vec<MessageId>,
    /// Where the adapter has read up to, stored in the same durable write as the messages
    /// (`None`: do not move the cursor, e.g. when part of the range must be read again).
    pub cursor: Option<String>,
    /// Messages the adapter cannot read yet ([`undecryptable`]): held in the journal (a
    /// message already held, journaled or answered is left as it is).
    pub undecryptable: Vec<Undecryptable>,
    /// Held messages the adapter gave up waiting for (their person was told): still held.
    pub given_up: Vec<MessageId>,
    /// Held messages the adapter could read at last (they are among `messages`, or were
    /// not messages for the core): no longer held.
    pub decrypted: Vec<MessageId>,
}

/// Why a batch was not accepted durably.
#[derive(Debug, thiserror::Error)]
#[error("cannot accept the messages durably: {0}")]
pub struct DeliveryError(#[from] pub crate::store::StoreError);

/// What an adapter needs from the core (inbound). Implemented by the runtime's intake.
#[async_trait]
pub trait Inbound: Send + Sync + 'static {
    /// Whether the bot manages `chat` (only managed chats are caught up).
    fn is_managed(&self, chat: &ChatId) -> bool;

    /// Whether the bot has handled `message` (journaled or answered).
    fn is_handled(&self, message: &MessageId) -> bool;

    /// Whether the bot answers `person` at all (access policy).
    fn serves(&self, person: &PersonId) -> bool;

    /// Accepts messages read from `surface`: durably journaled (with the cursor) when this
    /// returns `Ok`, then handed to their chats' actors in order. Messages seen before are
    /// not accepted twice.
    async fn deliver(&self, surface: &Arc<dyn Surface>, batch: Batch) -> Result<(), DeliveryError>;

    /// The cursor `surface` stored with its last accepted batch.
    fn cursor(&self, surface: &str) -> Result<Option<String>, crate::store::StoreError>;

    /// The messages `surface` could not read yet and the core still holds for it.
    fn undecryptable(&self, surface: &str) -> Result<Vec<Undecryptable>, crate::store::StoreError>;

    /// The bot was invited to a chat.
    fn invited(&self, surface: &Arc<dyn Surface>, invite: Invite);
}

/// Asks the whole process to stop (a problem no restart can fix, such as rejected
/// credentials), with an exit code for the operator's supervisor.
#[derive(Clone, Debug)]
pub struct Stopper(tokio::sync::mpsc::UnboundedSender<FatalStop>);

/// Why the process must stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatalStop {
    /// The process's exit code.
    pub code: u8,
    /// What the operator must do.
    pub reason: String,
}

impl Stopper {
    /// A stopper and the receiving end the runtime watches.
    pub fn new() -> (Self, tokio::sync::mpsc::UnboundedReceiver<FatalStop>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Stops the process with `code`.
    pub fn stop(&self, code: u8, reason: impl Into<String>) {
        let _ = self.0.send(FatalStop {
            code,
            reason: reason.into(),
        });
    }
}

/// Exit code of the process when a messenger rejects the bot's credentials (systemd's
/// `RestartPreventExitStatus=3`: restarting cannot help).
pub const EXIT_INVALID_CREDENTIALS: u8 = 3;

/// Becomes `true` when the process is shutting down: inbound loops stop reading.
pub type Shutdown = tokio::sync::watch::Receiver<bool>;

/// A messenger's lifecycle, driven by the runtime.
#[async_trait]
pub trait Connector: Send {
    /// Its outbound half.
    fn surface(&self) -> Arc<dyn Surface>;

    /// How its inbound loop is doing (for `/status`, `/readyz` and `/metrics`).
    fn health(&self) -> Arc<health::SyncHealth>;

    /// The supervised actor running its inbound loop, if it runs one: readiness wants it
    /// running (a loop without an actor is judged by its health alone).
    fn reader(&self) -> Option<actors::ActorId> {
        None
    }

    /// Start-up, before reconciliation: catch up with the messenger so that
    /// [`Surface::chats`] and [`Surface::chat_facts`] are current (Matrix: the first sync).
    /// Invites seen on the way go to `inbound`; messages wait for [`Connector::go_live`].
    async fn prepare(&mut self, inbound: Arc<dyn Inbound>) -> Result<(), SurfaceError>;

    /// Goes live (reconciled, the chats' actors running): delivers what start-up read,
    /// then keeps reading, as supervised actors under `supervisor`. A problem no restart
    /// can fix goes to `stopper`.
    async fn go_live(
        self: Box<Self>,
        inbound: Arc<dyn Inbound>,
        supervisor: actors::SupervisorHandle,
        stopper: Stopper,
        shutdown: Shutdown,
    ) -> Result<(), SurfaceError>;
}
