//! Onboarding and new chats: a person invites the bot; the bot builds their home and chats.
//!
//! Invites and `!new` are handled one at a time (`ctx.wait`), so two invites from the same
//! person can never race into two homes. The home's id is written to the store the moment
//! the home exists, so a second invite, or a restart, finds it and never creates another.
//! Only invites worth joining reach it (a direct chat from an allowed person: the intake
//! declines the others beside it, see [`super::invites`]); the access check is repeated
//! here as a safeguard. Everything goes
//! through the chat's messenger ([`Surface`]): on Matrix a home is a Space and a chat a
//! room in it; a messenger without homes uses the direct chat as the home.

use std::collections::HashSet;
use std::sync::Arc;

use actix::{Actor, AsyncContext, Context, Handler, Message, WrapFuture};
use actors::{ChildCtx, ChildHandle};

use super::directory::RoomStarter;
use super::room::Chat;
use super::router::{AgentRoute, DefaultAgent, MintChatId, RouteTable, Router};
use crate::config::AccessPolicy;
use crate::store::{RoomRecord, Store, UserRecord};
use crate::surface::{Binding, ChatId, MessageId, NewChat, PersonId, Surface, SurfaceError};
use crate::texts;

/// What the provisioner needs.
#[derive(Clone)]
pub struct ProvisionDeps {
    /// The store.
    pub store: Store,
    /// Who may use the bot.
    pub access: AccessPolicy,
    /// The router (default agent, chat ids).
    pub router: ChildHandle<Router>,
    /// The agents' routes.
    pub routes: RouteTable,
    /// Starts the actor of a new chat.
    pub rooms: RoomStarter,
    /// Chats one person may have (`limits.max_chats_per_person`; 0: no cap).
    pub max_chats_per_person: u32,
}

/// The provisioner actor.
pub struct Provisioner {
    deps: ProvisionDeps,
    /// Invites already handled in this incarnation (messengers repeat pending ones).
    seen: HashSet<(String, ChatId, Option<MessageId>)>,
    _ctx: ChildCtx,
}

impl Provisioner {
    /// A fresh incarnation.
    pub fn new(deps: ProvisionDeps, ctx: ChildCtx) -> Self {
        Self {
            deps,
            seen: HashSet::new(),
            _ctx: ctx,
        }
    }
}

impl Actor for Provisioner {
    type Context = Context<Self>;
}
actors::supervised_actor!(Provisioner);

/// `!new`: a new chat in the person's home, bound to their selected agent. Answers with the
/// chat and its agent's id.
#[derive(Message)]
#[rtype(result = "Result<(ChatId, String), NewChatError>")]
pub struct NewChatRequest {
    /// The person's messenger.
    pub surface: Arc<dyn Surface>,
    /// The person.
    pub person: PersonId,
    /// The chat's name, if they gave one.
    pub name: Option<String>,
}

/// Why `!new` could not make a chat (shown to the person).
#[derive(Debug, thiserror::Error)]
pub enum NewChatError {
    /// The person has no home yet.
    #[error("no home")]
    NoSpace,
    /// Their selected agent is not configured any more.
    #[error("agent {0} is gone")]
    AgentGone(String),
    /// They have as many chats as `limits.max_chats_per_person` allows.
    #[error("already {0} chats")]
    TooManyChats(u32),
    /// The messenger cannot hold another chat for the person (Telegram without topics).
    #[error("the messenger cannot {0}")]
    Unsupported(&'static str),
    /// Anything else (logged).
    #[error("{0}")]
    Failed(String),
}

impl Handler<NewChatRequest> for Provisioner {
    type Result = actix::ResponseActFuture<Self, Result<(ChatId, String), NewChatError>>;

    fn handle(&mut self, msg: NewChatRequest, _: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        // Through the same serialized path as onboarding (ResponseActFuture waits its turn).
        Box::pin(
            async move { new_chat(&deps, msg.surface, &msg.person, msg.name).await }
                .into_actor(self),
        )
    }
}

async fn new_chat(
    deps: &ProvisionDeps,
    surface: Arc<dyn Surface>,
    person: &PersonId,
    name: Option<String>,
) -> Result<(ChatId, String), NewChatError> {
    let failed = |e: &dyn std::fmt::Display| NewChatError::Failed(e.to_string());
    let mut user = deps
        .store
        .user(person.as_str())
        .map_err(|e| failed(&e))?
        .ok_or(NewChatError::NoSpace)?;
    let home = user
        .space_id
        .clone()
        .map(ChatId::new)
        .ok_or(NewChatError::NoSpace)?;
    let cap = deps.max_chats_per_person;
    if cap > 0 {
        let open = deps
            .store
            .rooms_of(person.as_str())
            .map_err(|e| failed(&e))?
            .iter()
            .filter(|room| !room.archived)
            .count();
        if open >= cap as usize {
            tracing::info!(person = %person, open, "!new refused: limits.max_chats_per_person");
            return Err(NewChatError::TooManyChats(cap));
        }
    }
    let route = match &user.selected_agent {
        Some(agent_id) => deps
            .routes
            .get(agent_id)
            .cloned()
            .ok_or_else(|| NewChatError::AgentGone(agent_id.clone()))?,
        None => default_route(deps).await.map_err(|e| failed(&e))?,
    };
    let chat = create_chat(deps, &surface, &mut user, &home, person, &route, name)
        .await
        .map_err(|e| {
            if let Some(SurfaceError::Unsupported(what)) = e.downcast_ref::<SurfaceError>() {
                tracing::info!(person = %person, what, "!new refused: the messenger cannot make the chat");
                return NewChatError::Unsupported(what);
            }
            tracing::error!(error = %e, person = %person, "!new failed");
            failed(&e)
        })?;
    Ok((chat, route.id))
}

/// The bot was invited to a chat.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Invited {
    /// The chat's messenger.
    pub surface: Arc<dyn Surface>,
    /// The chat.
    pub chat: ChatId,
    /// Who invited the bot.
    pub inviter: PersonId,
    /// The message that asked, for messengers where each one is a request of its own.
    pub knock: Option<MessageId>,
}

impl Handler<Invited> for Provisioner {
    type Result = ();

    fn handle(&mut self, msg: Invited, ctx: &mut Context<Self>) {
        if !self.seen.insert((
            msg.surface.name().to_owned(),
            msg.chat.clone(),
            msg.knock.clone(),
        )) {
            return;
        }
        let deps = self.deps.clone();
        ctx.wait(
            async move {
                if let Err(error) = onboard(&deps, &msg.surface, &msg.chat, &msg.inviter).await {
                    tracing::error!(room_id = %msg.chat, inviter = %msg.inviter, %error,
                        "onboarding failed");
                }
            }
            .into_actor(self),
        );
    }
}

async fn onboard(
    deps: &ProvisionDeps,
    surface: &Arc<dyn Surface>,
    dm: &ChatId,
    person: &PersonId,
) -> anyhow::Result<()> {
    if !deps.access.allows(person.as_str()) {
        tracing::warn!(inviter = %person, room_id = %dm,
            "declining an invite: the inviter is not allowed (config access.allowed_users / access.allowed_homeservers)");
        surface.decline_invite(dm).await?;
        return Ok(());
    }
    surface.accept_invite(dm).await?;
    tracing::info!(person = %person, room_id = %dm, "joined a direct chat");

    let mut user = deps
        .store
        .user(person.as_str())?
        .unwrap_or_else(|| UserRecord::new(person.as_str()));
    user.dm_room_id = Some(dm.to_string());
    let home_name = texts::space_name(localpart(person));

    let had_home = user.space_id.is_some();
    let home = match user.space_id.clone() {
        Some(home) => ChatId::new(home),
        None => {
            let home = if surface.capabilities().homes {
                surface.create_home(person, &home_name).await?
            } else {
                dm.clone()
            };
            user.space_id = Some(home.to_string());
            deps.store.put_user(&user).await?;
            home
        }
    };
    deps.store.put_user(&user).await?;

    let existing = deps.store.rooms_of(person.as_str())?;
    let (first_chat, made_now) = match existing.iter().find(|r| !r.archived) {
        Some(room) => (ChatId::new(room.room_id.as_str()), false),
        None => {
            let route = default_route(deps).await?;
            let chat = create_chat(deps, surface, &mut user, &home, person, &route, None).await?;
            (chat, true)
        }
    };
    if first_chat == *dm {
        // The direct chat is the conversation itself (a messenger without homes where a
        // chat cannot be made): its welcome says it all.
        return Ok(());
    }
    // Nothing was made for a person who had a home: say where it is.
    let pointer = if surface.capabilities().homes {
        if had_home {
            texts::space_existing(&home_name, home.as_str(), first_chat.as_str())
        } else {
            texts::space_pointer(&home_name, home.as_str(), first_chat.as_str())
        }
    } else {
        // No home to link to: the chats are named where the person is (topics of this chat).
        let name = chat_name(&deps.store, &first_chat);
        if made_now {
            texts::home_first_chat(&name)
        } else {
            texts::home_existing(&name)
        }
    };
    Chat::new(surface.clone(), dm.clone())
        .say(&pointer, None)
        .await;
    Ok(())
}

/// The name a chat was given (its stored record), else its default name (else its id).
pub fn chat_name(store: &Store, chat: &ChatId) -> String {
    match store.room(chat.as_str()) {
        Ok(Some(record)) => record
            .name
            .unwrap_or_else(|| texts::chat_room_name(record.chat_index)),
        Ok(None) => chat.to_string(),
        Err(error) => {
            tracing::warn!(%error, room_id = %chat, "cannot read a chat's record for its name");
            chat.to_string()
        }
    }
}

/// The local part of a Matrix-style user id (`alice` of `@alice:example.org`), else the id.
fn localpart(person: &PersonId) -> &str {
    let id = person.as_str();
    id.strip_prefix('@')
        .and_then(|rest| rest.split(':').next())
        .unwrap_or(id)
}

async fn default_route(deps: &ProvisionDeps) -> anyhow::Result<AgentRoute> {
    deps.router
        .send(DefaultAgent)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no default agent is configured"))
}

/// Creates a chat in the person's home bound to `route`'s agent and a fresh platform chat
/// id, records it, starts its actor and welcomes the person.
async fn create_chat(
    deps: &ProvisionDeps,
    surface: &Arc<dyn Surface>,
    user: &mut UserRecord,
    home: &ChatId,
    person: &PersonId,
    route: &AgentRoute,
    name: Option<String>,
) -> anyhow::Result<ChatId> {
    let chat_id = deps.router.send(MintChatId).await??;
    let chat_index = user.next_chat_index;
    let binding = Binding {
        agent_id: route.id.clone(),
        platform_chat_id: chat_id.clone(),
        owner: person.to_string(),
        chat_index,
        archived: false,
    };
    let name = name.unwrap_or_else(|| texts::chat_room_name(chat_index));
    let chat = surface
        .create_chat(NewChat {
            home: home.clone(),
            owner: person.clone(),
            name: name.clone(),
            binding,
        })
        .await?;
    let record = RoomRecord {
        room_id: chat.to_string(),
        surface: surface.name().to_owned(),
        owner: person.to_string(),
        agent_id: route.id.clone(),
        platform_chat_id: chat_id,
        chat_index,
        archived: false,
        name: Some(name),
    };
    deps.store.put_room(&record).await?;
    user.next_chat_index = chat_index.saturating_add(1);
    deps.store.put_user(user).await?;
    deps.rooms.start(surface.clone(), chat.clone()).await?;
    Chat::new(surface.clone(), chat.clone())
        .say(&texts::welcome(&route.name()), None)
        .await;
    Ok(chat)
}
