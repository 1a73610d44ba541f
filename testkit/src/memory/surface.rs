//! The bot's outbound side of the in-memory messenger: [`Surface`] over a [`World`].
//!
//! Why this file exists: the core speaks to every messenger through [`Surface`]; this is the
//! simplest faithful one. It keeps the contracts a real adapter keeps — sends with a key are
//! idempotent, only chats the bot is in can be written, a revoked credential fails every
//! call, a file past the limit is refused — so the core's behaviour on it is its behaviour.

use async_trait::async_trait;
use surfaces::surface::{
    Binding, Capabilities, ChatFacts, ChatId, FetchError, HomeFacts, HomePrefs, IncomingFile,
    MessageId, NewChat, OutFile, OutMessage, PersonId, SendKey, Surface, SurfaceError, Voice,
};

use super::world::{facts_of, ChatState, Post, PostBody, State, World, SURFACE_NAME};

/// The in-memory messenger as the core sees it.
pub struct MemorySurface {
    world: World,
}

impl MemorySurface {
    pub(super) fn new(world: World) -> Self {
        Self { world }
    }

    /// Runs `f` on the state after the credential check.
    fn with_state<R>(
        &self,
        f: impl FnOnce(&mut State) -> Result<R, SurfaceError>,
    ) -> Result<R, SurfaceError> {
        let mut state = self.world.inner.state.lock();
        state.check_credentials()?;
        f(&mut state)
    }

    /// Posts `body` as the bot (idempotent on `key`).
    fn post(
        &self,
        chat: &ChatId,
        body: PostBody,
        reply_to: Option<MessageId>,
        key: Option<SendKey>,
    ) -> Result<MessageId, SurfaceError> {
        let bot = self.world.bot().clone();
        let keep = self.world.inner.options.keep_posts;
        let notice = matches!(
            body,
            PostBody::Text {
                voice: Some(Voice::Bot),
                ..
            }
        );
        let id = self.with_state(|state| {
            if let Some(kind) = state.faults.sends.pop_front() {
                return Err(SurfaceError::failed(
                    format!("sending to {chat}"),
                    kind,
                    "injected send failure",
                ));
            }
            if let Some(key) = &key {
                if let Some(id) = state.keys.get(key) {
                    return Ok(id.clone());
                }
            }
            let id = MessageId::new(state.mint('$'));
            let room = state.joined(&bot, chat)?;
            if keep {
                room.posts.push(Post {
                    id: id.clone(),
                    sender: bot,
                    body,
                    reply_to,
                    key: key.clone(),
                    edits: Vec::new(),
                });
            }
            if let Some(key) = key {
                state.keys.insert(key, id.clone());
            }
            Ok(id)
        })?;
        self.world.bot_posted(notice);
        Ok(id)
    }

    fn unsupported_unless(&self, capable: bool, what: &'static str) -> Result<(), SurfaceError> {
        if capable {
            Ok(())
        } else {
            Err(SurfaceError::Unsupported(what))
        }
    }

    /// A new chat with the bot and `owner` as members.
    fn new_chat(&self, owner: &PersonId, name: &str) -> Result<(ChatId, ChatState), SurfaceError> {
        let bot = self.world.bot().clone();
        self.with_state(|state| {
            let id = ChatId::new(state.mint('!'));
            let chat = ChatState {
                name: Some(name.to_owned()),
                creator: Some(bot.clone()),
                members: [bot, owner.clone()].into(),
                ..ChatState::default()
            };
            Ok((id, chat))
        })
    }
}

#[async_trait]
impl Surface for MemorySurface {
    fn name(&self) -> &'static str {
        SURFACE_NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.world.inner.options.capabilities
    }

    fn bot(&self) -> &PersonId {
        self.world.bot()
    }

    async fn send(&self, chat: &ChatId, message: OutMessage) -> Result<MessageId, SurfaceError> {
        if let Some(max) = self.capabilities().max_message_bytes {
            if message.markdown.len() > max {
                return Err(SurfaceError::failed(
                    format!("sending to {chat}"),
                    surfaces::retry::RetryKind::Permanent,
                    format!(
                        "message of {} bytes over the limit of {max}",
                        message.markdown.len()
                    ),
                ));
            }
        }
        let body = PostBody::Text {
            markdown: message.markdown,
            voice: Some(message.voice),
        };
        self.post(chat, body, message.reply_to.map(|r| r.message), message.key)
    }

    async fn edit(
        &self,
        chat: &ChatId,
        target: &MessageId,
        message: OutMessage,
    ) -> Result<MessageId, SurfaceError> {
        self.unsupported_unless(self.capabilities().edits, "edit messages")?;
        let bot = self.world.bot().clone();
        self.with_state(|state| {
            let id = MessageId::new(state.mint('$'));
            let room = state.joined(&bot, chat)?;
            let post = room
                .posts
                .iter_mut()
                .find(|p| &p.id == target && p.sender == bot)
                .ok_or_else(|| {
                    SurfaceError::failed(
                        format!("editing {target}"),
                        surfaces::retry::RetryKind::Permanent,
                        "no such message of the bot",
                    )
                })?;
            post.edits.push(message.markdown);
            Ok(id)
        })
    }

    async fn typing(&self, chat: &ChatId, on: bool) {
        let bot = self.world.bot().clone();
        let _ = self.with_state(|state| {
            let room = state.joined(&bot, chat)?;
            if on && !room.typing {
                room.typing_starts += 1;
            }
            room.typing = on;
            Ok(())
        });
    }

    async fn mark_read(&self, chat: &ChatId, message: &MessageId) {
        let bot = self.world.bot().clone();
        let _ = self.with_state(|state| {
            let room = state.joined(&bot, chat)?;
            room.read_up_to = Some(message.clone());
            room.receipts.push(message.clone());
            Ok(())
        });
    }

    async fn fetch_file(&self, file: &IncomingFile, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
        let state = self.world.inner.state.lock();
        let data = state
            .files
            .get(&file.source.0)
            .ok_or_else(|| FetchError::Failed(format!("no file at {}", file.source.0)))?;
        if data.len() as u64 > max_bytes {
            return Err(FetchError::TooLarge { limit: max_bytes });
        }
        Ok(data.clone())
    }

    async fn send_file(
        &self,
        chat: &ChatId,
        file: OutFile,
        key: SendKey,
    ) -> Result<MessageId, SurfaceError> {
        let body = PostBody::File {
            name: file.name,
            mime: file.mime,
            data: file.data,
        };
        self.post(chat, body, None, Some(key))
    }

    async fn accept_invite(&self, chat: &ChatId) -> Result<(), SurfaceError> {
        let bot = self.world.bot().clone();
        self.with_state(|state| {
            let room = state
                .chats
                .get_mut(chat)
                .filter(|c| c.invited.contains(&bot) || c.members.contains(&bot))
                .ok_or_else(|| SurfaceError::UnknownChat(chat.to_string()))?;
            room.invited.remove(&bot);
            room.members.insert(bot);
            Ok(())
        })
    }

    async fn decline_invite(&self, chat: &ChatId) -> Result<(), SurfaceError> {
        let delay = self.world.faults(|f| f.decline_delay);
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let bot = self.world.bot().clone();
        self.with_state(|state| {
            if let Some(room) = state.chats.get_mut(chat) {
                room.invited.remove(&bot);
                room.members.remove(&bot);
            }
            Ok(())
        })
    }

    async fn create_home(&self, owner: &PersonId, name: &str) -> Result<ChatId, SurfaceError> {
        self.unsupported_unless(self.capabilities().homes, "make homes")?;
        let (id, mut chat) = self.new_chat(owner, name)?;
        chat.home = Some(HomeFacts {
            owner: owner.clone(),
            prefs: HomePrefs::default(),
        });
        self.with_state(|state| {
            state.chats.insert(id.clone(), chat);
            Ok(id)
        })
    }

    async fn create_chat(&self, new: NewChat) -> Result<ChatId, SurfaceError> {
        let (id, mut chat) = self.new_chat(&new.owner, &new.name)?;
        let bot = self.world.bot().clone();
        let homes = self.capabilities().homes;
        let chat_state = self.capabilities().chat_state;
        self.with_state(|state| {
            if homes {
                state.joined(&bot, &new.home)?.children.insert(id.clone());
                chat.parent = Some(new.home.clone());
            }
            if chat_state {
                chat.binding = Some(new.binding);
            }
            state.chats.insert(id.clone(), chat);
            Ok(id)
        })
    }

    async fn rename_chat(&self, chat: &ChatId, name: &str) -> Result<(), SurfaceError> {
        let bot = self.world.bot().clone();
        self.with_state(|state| {
            state.joined(&bot, chat)?.name = Some(name.to_owned());
            Ok(())
        })
    }

    async fn detach_chat(&self, home: &ChatId, chat: &ChatId) -> Result<(), SurfaceError> {
        let bot = self.world.bot().clone();
        self.with_state(|state| {
            state.joined(&bot, home)?.children.remove(chat);
            state.joined(&bot, chat)?.parent = None;
            Ok(())
        })
    }

    async fn set_binding(&self, chat: &ChatId, binding: &Binding) -> Result<(), SurfaceError> {
        self.unsupported_unless(self.capabilities().chat_state, "store bindings")?;
        let bot = self.world.bot().clone();
        self.with_state(|state| {
            refuse_unwritable(state, chat)?;
            let room = state.joined(&bot, chat)?;
            room.binding = Some(binding.clone());
            room.state_sender = None;
            Ok(())
        })
    }

    async fn set_home_prefs(
        &self,
        home: &ChatId,
        owner: &PersonId,
        prefs: &HomePrefs,
    ) -> Result<(), SurfaceError> {
        self.unsupported_unless(self.capabilities().homes, "store preferences")?;
        let bot = self.world.bot().clone();
        self.with_state(|state| {
            refuse_unwritable(state, home)?;
            state.joined(&bot, home)?.home = Some(HomeFacts {
                owner: owner.clone(),
                prefs: prefs.clone(),
            });
            Ok(())
        })
    }

    async fn chats(&self) -> Result<Vec<ChatId>, SurfaceError> {
        let bot = self.world.bot().clone();
        self.with_state(|state| {
            Ok(state
                .chats
                .iter()
                .filter(|(_, c)| c.members.contains(&bot))
                .map(|(id, _)| id.clone())
                .collect())
        })
    }

    async fn chat_facts(&self, chat: &ChatId) -> Result<ChatFacts, SurfaceError> {
        let bot = self.world.bot().clone();
        self.with_state(|state| Ok(facts_of(chat, state.joined(&bot, chat)?, &bot)))
    }
}

/// Fails a state write in a chat made unwritable by [`super::Faults::unwritable`], as a
/// homeserver refuses it without the power to.
fn refuse_unwritable(state: &State, chat: &ChatId) -> Result<(), SurfaceError> {
    if state.faults.unwritable.contains(chat) {
        return Err(SurfaceError::failed(
            format!("writing the state of {chat}"),
            surfaces::retry::RetryKind::Permanent,
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the bot lacks the power to",
            ),
        ));
    }
    Ok(())
}
