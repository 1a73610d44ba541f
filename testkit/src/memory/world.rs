//! The in-memory messenger's state: chats, people's actions, the bot's posts.
//!
//! Why this file exists: both halves of the adapter (outbound [`super::MemorySurface`],
//! inbound [`super::MemoryConnector`]) and the tests read and change one shared state; it
//! lives here, behind one lock, with the operations people perform on it.

use std::collections::{BTreeSet, HashMap, VecDeque};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use surfaces::idmap::IdMap;

use parking_lot::Mutex;
use surfaces::retry::RetryKind;
use surfaces::surface::{
    Binding, Capabilities, ChatFacts, ChatId, FileRef, HomeFacts, HomePrefs, Incoming,
    IncomingBody, IncomingFile, Invite, MessageId, PersonId, SendKey, SurfaceError, Voice,
};
use tokio::sync::{watch, Notify};

/// The surface's name (the store's key for its records and cursor).
pub const SURFACE_NAME: &str = "memory";
/// The domain of ids minted by the world (`@alice:memory`, `!c1:memory`).
const DOMAIN: &str = "memory";

/// What the messenger can do (all of it unless a test says otherwise).
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Its capabilities.
    pub capabilities: Capabilities,
    /// Keep every post of the bot (tests). The benchmark turns it off and counts only.
    pub keep_posts: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            capabilities: Capabilities {
                edits: true,
                chat_state: true,
                homes: true,
                max_message_bytes: None,
            },
            keep_posts: true,
        }
    }
}

/// Failures to inject, consumed in order.
#[derive(Debug, Default)]
pub struct Faults {
    /// The next sends (messages and files) fail with these classifications.
    pub sends: VecDeque<RetryKind>,
    /// Every operation fails with rejected credentials (a revoked token).
    pub revoked: bool,
    /// Chats whose state the bot may not write (as without the power to): storing a binding
    /// or preferences there fails permanently.
    pub unwritable: BTreeSet<ChatId>,
    /// Each decline of an invite takes this long (a slow homeserver).
    pub decline_delay: Option<std::time::Duration>,
}

/// Something a person did, in the order the messenger saw it.
#[derive(Clone, Debug)]
pub enum Event {
    /// A message (text or file).
    Message(Incoming),
    /// An invite of the bot.
    Invite(Invite),
}

/// A post in a chat (by a person or by the bot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Post {
    /// Its id.
    pub id: MessageId,
    /// Who posted it.
    pub sender: PersonId,
    /// What it holds.
    pub body: PostBody,
    /// The message it answers.
    pub reply_to: Option<MessageId>,
    /// The idempotency key it was sent with (bot posts).
    pub key: Option<SendKey>,
    /// Its texts after each edit, oldest first.
    pub edits: Vec<String>,
}

impl Post {
    /// Its text as shown now (the last edit, the markdown, a file's name).
    pub fn text(&self) -> &str {
        if let Some(last) = self.edits.last() {
            return last;
        }
        match &self.body {
            PostBody::Text { markdown, .. } => markdown,
            PostBody::File { name, .. } => name,
        }
    }

    /// Whether the bot said it in its own voice (a notice), not the agent's.
    pub fn is_notice(&self) -> bool {
        matches!(
            self.body,
            PostBody::Text {
                voice: Some(Voice::Bot),
                ..
            }
        )
    }
}

/// What a post holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostBody {
    /// Text; `voice` is set for the bot's posts.
    Text {
        /// The text.
        markdown: String,
        /// Whose voice (bot posts only).
        voice: Option<Voice>,
    },
    /// A file.
    File {
        /// Its name.
        name: String,
        /// Its MIME type.
        mime: String,
        /// Its bytes.
        data: Vec<u8>,
    },
}

/// One chat as the messenger holds it.
#[derive(Clone, Debug, Default)]
pub struct ChatState {
    /// Its display name.
    pub name: Option<String>,
    /// Who created it.
    pub creator: Option<PersonId>,
    /// Its members.
    pub members: BTreeSet<PersonId>,
    /// Pending invites.
    pub invited: BTreeSet<PersonId>,
    /// The binding stored with it.
    pub binding: Option<Binding>,
    /// Set when it is a person's home.
    pub home: Option<HomeFacts>,
    /// The home it belongs to.
    pub parent: Option<ChatId>,
    /// Who wrote its binding, home marker and link to a home: `None`, the bot (a chat
    /// forged by someone else: see [`World::forge_chat`]).
    pub state_sender: Option<PersonId>,
    /// The chats of a home.
    pub children: BTreeSet<ChatId>,
    /// Every post, in order.
    pub posts: Vec<Post>,
    /// Whether the bot shows that it is typing.
    pub typing: bool,
    /// How many times the bot started typing here.
    pub typing_starts: u64,
    /// The last message the bot marked as read.
    pub read_up_to: Option<MessageId>,
    /// Every message the bot marked as read, in order.
    pub receipts: Vec<MessageId>,
}

#[derive(Default)]
pub(super) struct State {
    next: u64,
    pub(super) chats: IdMap<ChatId, ChatState>,
    pub(super) files: HashMap<String, Vec<u8>>,
    pub(super) keys: IdMap<SendKey, MessageId>,
    pub(super) faults: Faults,
}

impl State {
    pub(super) fn mint(&mut self, prefix: char) -> String {
        self.next += 1;
        match prefix {
            '$' => format!("${}", self.next),
            _ => format!("{prefix}c{}:{DOMAIN}", self.next),
        }
    }

    /// The chat the bot is in, or `UnknownChat`.
    pub(super) fn joined(
        &mut self,
        bot: &PersonId,
        chat: &ChatId,
    ) -> Result<&mut ChatState, SurfaceError> {
        match self.chats.get_mut(chat) {
            Some(state) if state.members.contains(bot) => Ok(state),
            _ => Err(SurfaceError::UnknownChat(chat.to_string())),
        }
    }

    /// Fails every operation once the credentials are revoked.
    pub(super) fn check_credentials(&self) -> Result<(), SurfaceError> {
        if self.faults.revoked {
            return Err(SurfaceError::InvalidCredentials(
                "the memory messenger revoked the bot's credentials".to_owned(),
            ));
        }
        Ok(())
    }
}

/// The in-memory messenger. Cloning shares it.
#[derive(Clone)]
pub struct World {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) bot: PersonId,
    pub(super) options: Options,
    pub(super) state: Mutex<State>,
    pub(super) log: Mutex<Vec<Event>>,
    /// The log's length, for the connector to wait on.
    pub(super) logged: watch::Sender<usize>,
    /// Posts by the bot so far (kept or not), those of them not in its own voice (the
    /// agent's replies), and a wake-up for waiters.
    pub(super) bot_posts: AtomicU64,
    pub(super) agent_posts: AtomicU64,
    pub(super) posted: Notify,
}

impl World {
    /// An empty messenger whose bot is `@surfaces:memory`.
    pub fn new(options: Options) -> World {
        let (logged, _) = watch::channel(0);
        World {
            inner: Arc::new(Inner {
                bot: Self::person("surfaces"),
                options,
                state: Mutex::new(State::default()),
                log: Mutex::new(Vec::new()),
                logged,
                bot_posts: AtomicU64::new(0),
                agent_posts: AtomicU64::new(0),
                posted: Notify::new(),
            }),
        }
    }

    /// The id of a person named `name` on this messenger.
    pub fn person(name: &str) -> PersonId {
        PersonId::new(format!("@{name}:{DOMAIN}"))
    }

    /// The bot's id.
    pub fn bot(&self) -> &PersonId {
        &self.inner.bot
    }

    /// The outbound half the core talks to.
    pub fn surface(&self) -> super::MemorySurface {
        super::MemorySurface::new(self.clone())
    }

    /// The inbound half (a connector for one run of the core).
    pub fn connector(&self) -> super::MemoryConnector {
        super::MemoryConnector::new(self.clone())
    }

    /// Changes the injected failures.
    pub fn faults<R>(&self, change: impl FnOnce(&mut Faults) -> R) -> R {
        change(&mut self.inner.state.lock().faults)
    }

    /// `person` opens a direct chat with the bot and invites it.
    pub fn invite_bot(&self, person: &PersonId) -> ChatId {
        self.invite_bot_to(person, true)
    }

    /// `person` opens a group chat (not a direct chat) and invites the bot.
    pub fn invite_bot_to_group(&self, person: &PersonId) -> ChatId {
        self.invite_bot_to(person, false)
    }

    /// A chat `forger` made and bound themselves, carrying `binding` (which may name someone
    /// else as owner, with their chat id) and, if given, a link to `parent`; the bot is in
    /// it (as if it had accepted `forger`'s invite earlier), with `members` beside them.
    pub fn forge_chat(
        &self,
        forger: &PersonId,
        binding: Option<Binding>,
        parent: Option<ChatId>,
        members: &[PersonId],
    ) -> ChatId {
        let mut state = self.inner.state.lock();
        let chat = ChatId::new(state.mint('!'));
        let mut all: BTreeSet<PersonId> = [forger.clone(), self.inner.bot.clone()].into();
        all.extend(members.iter().cloned());
        state.chats.insert(
            chat.clone(),
            ChatState {
                name: Some(format!("forged by {forger}")),
                creator: Some(forger.clone()),
                members: all,
                binding,
                parent,
                state_sender: Some(forger.clone()),
                ..ChatState::default()
            },
        );
        chat
    }

    fn invite_bot_to(&self, person: &PersonId, direct: bool) -> ChatId {
        let chat = {
            let mut state = self.inner.state.lock();
            let chat = ChatId::new(state.mint('!'));
            let entry = state.chats.entry(chat.clone()).or_default();
            entry.creator = Some(person.clone());
            entry.members.insert(person.clone());
            entry.invited.insert(self.inner.bot.clone());
            chat
        };
        self.log(Event::Invite(Invite {
            chat: chat.clone(),
            inviter: person.clone(),
            direct,
            knock: None,
        }));
        chat
    }

    /// `person` says `text` in `chat`; returns the message's id.
    pub fn say(&self, person: &PersonId, chat: &ChatId, text: &str) -> MessageId {
        let id = self.post(
            person,
            chat,
            PostBody::Text {
                markdown: text.to_owned(),
                voice: None,
            },
        );
        self.log(Event::Message(Incoming {
            chat: chat.clone(),
            id: id.clone(),
            sender: person.clone(),
            display_name: None,
            origin_ts: None,
            body: IncomingBody::Text(text.to_owned()),
        }));
        id
    }

    /// `person` edits the message `of` in `chat` to `text` (as a messenger would, the post
    /// shows the new text only if `person` wrote it); returns the edit's own id.
    pub fn edit(&self, person: &PersonId, chat: &ChatId, of: &MessageId, text: &str) -> MessageId {
        let id = {
            let mut state = self.inner.state.lock();
            let id = MessageId::new(state.mint('$'));
            if let Some(post) = state
                .chats
                .get_mut(chat)
                .and_then(|c| c.posts.iter_mut().find(|p| &p.id == of))
                .filter(|p| &p.sender == person)
            {
                post.edits.push(text.to_owned());
            }
            id
        };
        self.log(Event::Message(Incoming {
            chat: chat.clone(),
            id: id.clone(),
            sender: person.clone(),
            display_name: None,
            origin_ts: None,
            body: IncomingBody::Edit {
                of: of.clone(),
                text: text.to_owned(),
            },
        }));
        id
    }

    /// `person` withdraws (redacts) the message `of` in `chat`; returns the redaction's id.
    pub fn redact(&self, person: &PersonId, chat: &ChatId, of: &MessageId) -> MessageId {
        let id = MessageId::new(self.inner.state.lock().mint('$'));
        self.log(Event::Message(Incoming {
            chat: chat.clone(),
            id: id.clone(),
            sender: person.clone(),
            display_name: None,
            origin_ts: None,
            body: IncomingBody::Withdraw { of: of.clone() },
        }));
        id
    }

    /// `person` joins `chat` (invited by its owner, say), so their messages reach the bot.
    pub fn join(&self, person: &PersonId, chat: &ChatId) {
        if let Some(state) = self.inner.state.lock().chats.get_mut(chat) {
            state.invited.remove(person);
            state.members.insert(person.clone());
        }
    }

    /// Many messages at once (one log append): `(person, chat, text)` each; returns their
    /// ids in order. They are not kept as posts (benchmarks: the log is what the bot reads).
    pub fn say_many(
        &self,
        messages: impl IntoIterator<Item = (PersonId, ChatId, String)>,
    ) -> Vec<MessageId> {
        let messages = messages.into_iter();
        // Sized once: 200,000 messages grown by doubling were a tenth of the pipeline
        // benchmark's page faults, inside its timed window.
        let mut events = Vec::with_capacity(messages.size_hint().0);
        let mut ids = Vec::with_capacity(messages.size_hint().0);
        {
            let mut state = self.inner.state.lock();
            for (person, chat, text) in messages {
                let id = MessageId::new(state.mint('$'));
                ids.push(id.clone());
                events.push(Event::Message(Incoming {
                    chat,
                    id,
                    sender: person,
                    display_name: None,
                    origin_ts: None,
                    body: IncomingBody::Text(text),
                }));
            }
        }
        let mut log = self.inner.log.lock();
        log.extend(events);
        self.inner.logged.send_replace(log.len());
        ids
    }

    /// `person` sends a file in `chat`; returns the message's id.
    pub fn send_file(
        &self,
        person: &PersonId,
        chat: &ChatId,
        name: &str,
        mime: &str,
        data: &[u8],
        caption: Option<&str>,
    ) -> MessageId {
        let source = FileRef(format!(
            "mem://{}/{}",
            chat,
            self.inner.state.lock().mint('$')
        ));
        self.inner
            .state
            .lock()
            .files
            .insert(source.0.clone(), data.to_vec());
        let id = self.post(
            person,
            chat,
            PostBody::File {
                name: name.to_owned(),
                mime: mime.to_owned(),
                data: data.to_vec(),
            },
        );
        self.log(Event::Message(Incoming {
            chat: chat.clone(),
            id: id.clone(),
            sender: person.clone(),
            display_name: None,
            origin_ts: None,
            body: IncomingBody::File(IncomingFile {
                name: name.to_owned(),
                mime: Some(mime.to_owned()),
                size: Some(data.len() as u64),
                caption: caption.map(str::to_owned),
                source,
            }),
        }));
        id
    }

    /// A chat as it is now.
    pub fn chat(&self, chat: &ChatId) -> Option<ChatState> {
        self.inner.state.lock().chats.get(chat).cloned()
    }

    /// Every post in `chat`.
    pub fn posts(&self, chat: &ChatId) -> Vec<Post> {
        self.chat(chat).map(|c| c.posts).unwrap_or_default()
    }

    /// The bot's posts in `chat`.
    pub fn bot_posts(&self, chat: &ChatId) -> Vec<Post> {
        let mut posts = self.posts(chat);
        posts.retain(|p| &p.sender == self.bot());
        posts
    }

    /// The bot's posts answering `message` (replies and notices that quote it).
    pub fn answers_to(&self, chat: &ChatId, message: &MessageId) -> Vec<Post> {
        let mut posts = self.bot_posts(chat);
        posts.retain(|p| p.reply_to.as_ref() == Some(message));
        posts
    }

    /// How many posts the bot made anywhere (counted even when they are not kept).
    pub fn bot_post_count(&self) -> u64 {
        self.inner.bot_posts.load(Ordering::Acquire)
    }

    /// How many of them are not notices: the agent's replies (files included).
    pub fn agent_post_count(&self) -> u64 {
        self.inner.agent_posts.load(Ordering::Acquire)
    }

    /// Waits until the bot made at least `n` posts in all.
    pub async fn wait_for_bot_posts(&self, n: u64) {
        self.wait_for_count(n, Self::bot_post_count).await;
    }

    /// Waits until the bot made at least `n` posts that are not notices.
    pub async fn wait_for_agent_posts(&self, n: u64) {
        self.wait_for_count(n, Self::agent_post_count).await;
    }

    async fn wait_for_count(&self, n: u64, count: fn(&World) -> u64) {
        loop {
            let notified = self.inner.posted.notified();
            if count(self) >= n {
                return;
            }
            notified.await;
        }
    }

    /// The chats `person` is in, with the bot (homes excluded), oldest first.
    pub fn chats_of(&self, person: &PersonId) -> Vec<ChatId> {
        let state = self.inner.state.lock();
        let mut chats: Vec<(u64, ChatId)> = state
            .chats
            .iter()
            .filter(|(_, c)| {
                c.home.is_none()
                    && c.members.contains(person)
                    && c.members.contains(&self.inner.bot)
                    && c.binding.is_some()
            })
            .map(|(id, _)| (mint_number(id), id.clone()))
            .collect();
        chats.sort();
        chats.into_iter().map(|(_, id)| id).collect()
    }

    /// The home the bot made for `person`.
    pub fn home_of(&self, person: &PersonId) -> Option<ChatId> {
        let state = self.inner.state.lock();
        state
            .chats
            .iter()
            .find(|(_, c)| c.home.as_ref().is_some_and(|h| &h.owner == person))
            .map(|(id, _)| id.clone())
    }

    /// What the messenger holds about `chat`, as the core reads it.
    pub fn facts(&self, chat: &ChatId) -> Option<ChatFacts> {
        self.inner
            .state
            .lock()
            .chats
            .get(chat)
            .map(|c| facts_of(chat, c, &self.inner.bot))
    }

    /// Sets a chat's state directly (a person or another client writing it).
    pub fn edit_chat<R>(
        &self,
        chat: &ChatId,
        change: impl FnOnce(&mut ChatState) -> R,
    ) -> Option<R> {
        self.inner.state.lock().chats.get_mut(chat).map(change)
    }

    /// Chats made directly in the world, as if the bot had made them in an earlier life
    /// (benchmarks of start-up and memory): one home per owner and `bindings` chats.
    pub fn seed_chats(&self, owner: &PersonId, bindings: Vec<(String, Binding)>) -> Vec<ChatId> {
        let mut state = self.inner.state.lock();
        let bot = self.inner.bot.clone();
        let home = ChatId::new(state.mint('!'));
        let members: BTreeSet<PersonId> = [bot.clone(), owner.clone()].into();
        state.chats.insert(
            home.clone(),
            ChatState {
                name: Some(format!("{owner}'s home")),
                creator: Some(bot.clone()),
                members: members.clone(),
                home: Some(HomeFacts {
                    owner: owner.clone(),
                    prefs: HomePrefs::default(),
                }),
                ..ChatState::default()
            },
        );
        let mut ids = Vec::new();
        for (name, binding) in bindings {
            let id = ChatId::new(state.mint('!'));
            state.chats.insert(
                id.clone(),
                ChatState {
                    name: Some(name),
                    creator: Some(bot.clone()),
                    members: members.clone(),
                    binding: Some(binding),
                    parent: Some(home.clone()),
                    ..ChatState::default()
                },
            );
            ids.push(id);
        }
        if let Some(home_state) = state.chats.get_mut(&home) {
            home_state.children.extend(ids.iter().cloned());
        }
        ids
    }

    /// The log from `from` on.
    pub(super) fn events_from(&self, from: usize, max: usize) -> Vec<Event> {
        let log = self.inner.log.lock();
        let from = from.min(log.len());
        let to = from.saturating_add(max).min(log.len());
        log[from..to].to_vec()
    }

    /// Records a post by `sender` and returns its id.
    fn post(&self, sender: &PersonId, chat: &ChatId, body: PostBody) -> MessageId {
        let mut state = self.inner.state.lock();
        let id = MessageId::new(state.mint('$'));
        let entry = state.chats.entry(chat.clone()).or_default();
        entry.posts.push(Post {
            id: id.clone(),
            sender: sender.clone(),
            body,
            reply_to: None,
            key: None,
            edits: Vec::new(),
        });
        id
    }

    fn log(&self, event: Event) {
        let mut log = self.inner.log.lock();
        log.push(event);
        self.inner.logged.send_replace(log.len());
    }

    /// Counts a post by the bot (`notice`: in its own voice) and wakes waiters.
    pub(super) fn bot_posted(&self, notice: bool) {
        if !notice {
            self.inner.agent_posts.fetch_add(1, Ordering::AcqRel);
        }
        self.inner.bot_posts.fetch_add(1, Ordering::AcqRel);
        self.inner.posted.notify_waiters();
    }
}

/// The number in a minted id (`!c12:memory` → 12), for ordering.
fn mint_number(id: &ChatId) -> u64 {
    id.as_str()
        .trim_start_matches("!c")
        .split(':')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

pub(super) fn facts_of(id: &ChatId, chat: &ChatState, bot: &PersonId) -> ChatFacts {
    let sender =
        |present: bool| present.then(|| chat.state_sender.clone().unwrap_or_else(|| bot.clone()));
    ChatFacts {
        chat: id.clone(),
        name: chat.name.clone(),
        binding: chat.binding.clone(),
        home: chat.home.clone(),
        parent: chat.parent.clone(),
        creator: chat.creator.clone(),
        binding_sender: sender(chat.binding.is_some()),
        home_sender: sender(chat.home.is_some()),
        parent_sender: sender(chat.parent.is_some()),
        members: chat.members.union(&chat.invited).cloned().collect(),
    }
}
