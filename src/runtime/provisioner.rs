//! Onboarding: a person invites the bot; the bot builds their Space and first chat room.
//!
//! Invites are handled one at a time (`ctx.wait`), so two invites from the same person
//! can never race into two Spaces. The Space id is written to the store the moment the
//! Space exists, so a second invite, or a restart, finds it and never creates another.
//! Invites from people the access policy does not allow are declined (the bot leaves).

use std::collections::HashSet;

use actix::{Actor, AsyncContext, Context, Handler, Message, WrapFuture};
use actors::{ChildCtx, ChildHandle};
use matrix_sdk::ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use matrix_sdk::Client;

use super::directory::RoomDirectory;
use super::router::{DefaultAgent, MintChatId, Router};
use crate::config::AccessPolicy;
use crate::matrix::{self, SurfacesRoomEventContent};
use crate::store::{RoomRecord, Store, UserRecord};
use crate::texts;

/// What the provisioner needs.
#[derive(Clone)]
pub struct ProvisionDeps {
    /// The Matrix client.
    pub client: Client,
    /// The store.
    pub store: Store,
    /// Who may use the bot.
    pub access: AccessPolicy,
    /// The router (default agent, chat ids).
    pub router: ChildHandle<Router>,
    /// The managed rooms and their actors.
    pub rooms: RoomDirectory,
    /// Whether new chat rooms are end-to-end encrypted.
    pub encrypt_rooms: bool,
}

/// The provisioner actor.
pub struct Provisioner {
    deps: ProvisionDeps,
    /// Invites already handled in this incarnation (the homeserver repeats pending ones).
    seen: HashSet<OwnedRoomId>,
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

/// `!new`: a new chat room in the person's Space, bound to their selected agent.
#[derive(Message)]
#[rtype(result = "Result<String, NewChatError>")]
pub struct NewChat {
    /// The person.
    pub person: OwnedUserId,
    /// The room's name, if they gave one.
    pub name: Option<String>,
}

/// Why `!new` could not make a room (shown to the person).
#[derive(Debug, thiserror::Error)]
pub enum NewChatError {
    /// The person has no Space yet.
    #[error("no space")]
    NoSpace,
    /// Their selected agent is not configured any more.
    #[error("agent {0} is gone")]
    AgentGone(String),
    /// Anything else (logged).
    #[error("{0}")]
    Failed(String),
}

impl Handler<NewChat> for Provisioner {
    type Result = actix::ResponseActFuture<Self, Result<String, NewChatError>>;

    fn handle(&mut self, msg: NewChat, _: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        // Through the same serialized path as onboarding (ResponseActFuture waits its turn).
        Box::pin(async move { new_chat(&deps, &msg.person, msg.name).await }.into_actor(self))
    }
}

async fn new_chat(
    deps: &ProvisionDeps,
    person: &UserId,
    name: Option<String>,
) -> Result<String, NewChatError> {
    let failed = |e: &dyn std::fmt::Display| NewChatError::Failed(e.to_string());
    let mut user = deps
        .store
        .user(person.as_str())
        .map_err(|e| failed(&e))?
        .ok_or(NewChatError::NoSpace)?;
    let space_id = user
        .space_id
        .as_deref()
        .and_then(|s| RoomId::parse(s).ok())
        .ok_or(NewChatError::NoSpace)?;
    let route = match &user.selected_agent {
        Some(agent_id) => deps
            .router
            .send(super::router::ResolveAgent {
                agent_id: agent_id.clone(),
            })
            .await
            .map_err(|e| failed(&e))?
            .ok_or_else(|| NewChatError::AgentGone(agent_id.clone()))?,
        None => deps
            .router
            .send(DefaultAgent)
            .await
            .map_err(|e| failed(&e))?
            .ok_or_else(|| NewChatError::Failed("no default agent".into()))?,
    };
    create_room(deps, &mut user, &space_id, person, &route, name)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, person = %person, "!new failed");
            NewChatError::Failed(e.to_string())
        })
}

/// The bot was invited to a room.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Invited {
    /// The room.
    pub room_id: OwnedRoomId,
    /// Who invited the bot.
    pub inviter: OwnedUserId,
}

impl Handler<Invited> for Provisioner {
    type Result = ();

    fn handle(&mut self, msg: Invited, ctx: &mut Context<Self>) {
        if !self.seen.insert(msg.room_id.clone()) {
            return;
        }
        let deps = self.deps.clone();
        ctx.wait(
            async move {
                if let Err(error) = onboard(&deps, &msg.room_id, &msg.inviter).await {
                    tracing::error!(room_id = %msg.room_id, inviter = %msg.inviter, %error,
                        "onboarding failed");
                }
            }
            .into_actor(self),
        );
    }
}

async fn onboard(deps: &ProvisionDeps, dm_id: &RoomId, person: &UserId) -> anyhow::Result<()> {
    if !deps.access.allows(person.as_str()) {
        tracing::warn!(inviter = %person, room_id = %dm_id,
            "declining an invite: the inviter is not allowed (config access.allowed_users / access.allowed_homeservers)");
        matrix::leave(&deps.client, dm_id).await?;
        return Ok(());
    }
    let dm = matrix::join_invite(&deps.client, dm_id).await?;
    tracing::info!(person = %person, room_id = %dm_id, "joined a direct chat");

    let mut user = deps
        .store
        .user(person.as_str())?
        .unwrap_or_else(|| UserRecord::new(person.as_str()));
    user.dm_room_id = Some(dm_id.to_string());
    let space_name = texts::space_name(person.localpart());

    let space_id: OwnedRoomId = match user.space_id.as_deref().map(RoomId::parse) {
        Some(Ok(id)) => id,
        _ => {
            let id = matrix::create_space(&deps.client, person, &space_name).await?;
            user.space_id = Some(id.to_string());
            deps.store.put_user(&user).await?;
            id
        }
    };
    deps.store.put_user(&user).await?;

    let existing = deps.store.rooms_of(person.as_str())?;
    let first_room = match existing.iter().find(|r| !r.archived) {
        Some(room) => room.room_id.clone(),
        None => create_first_room(deps, &mut user, &space_id, person).await?,
    };
    let pointer = texts::space_pointer(&space_name, space_id.as_str(), &first_room);
    matrix::send_notice(&dm, &pointer, None).await?;
    Ok(())
}

async fn create_first_room(
    deps: &ProvisionDeps,
    user: &mut UserRecord,
    space_id: &RoomId,
    person: &UserId,
) -> anyhow::Result<String> {
    let route = deps
        .router
        .send(DefaultAgent)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no default agent is configured"))?;
    create_room(deps, user, space_id, person, &route, None).await
}

/// Creates a chat room in the person's Space bound to `route`'s agent and a fresh
/// platform chat id, records it, starts its actor and welcomes the person.
async fn create_room(
    deps: &ProvisionDeps,
    user: &mut UserRecord,
    space_id: &RoomId,
    person: &UserId,
    route: &super::router::AgentRoute,
    name: Option<String>,
) -> anyhow::Result<String> {
    let chat_id = deps.router.send(MintChatId).await??;
    let chat_index = user.next_chat_index;
    let binding = SurfacesRoomEventContent {
        agent_id: route.id.clone(),
        platform_chat_id: chat_id.clone(),
        owner: person.to_string(),
        chat_index,
        archived: false,
    };
    let name = name.unwrap_or_else(|| texts::chat_room_name(chat_index));
    let room_id = matrix::create_chat_room(
        &deps.client,
        space_id,
        person,
        &name,
        &binding,
        deps.encrypt_rooms,
    )
    .await?;
    let record = RoomRecord {
        room_id: room_id.to_string(),
        owner: person.to_string(),
        agent_id: route.id.clone(),
        platform_chat_id: chat_id,
        chat_index,
        archived: false,
        name: Some(name),
    };
    deps.store.put_room(&record).await?;
    user.next_chat_index = chat_index + 1;
    deps.store.put_user(user).await?;
    deps.rooms.start(&room_id).await?;
    if let Some(room) = deps.client.get_room(&room_id) {
        matrix::send_notice(&room, &texts::welcome(&route.name), None).await?;
    }
    Ok(room_id.to_string())
}
