//! Creating a person's Space and chat rooms; joining and leaving rooms.
//!
//! Each person gets a private Space (`org.surfaces.space {owner}`) holding
//! one private room per chat (`org.surfaces.room` binding), linked both ways
//! with `m.space.child` / `m.space.parent` (see `docs/ARCHITECTURE.md`).
//! Everything a room needs at birth goes into the `createRoom` request
//! (initial state, invite), so a room never exists without its binding.
//!
//! Power levels: the owner gets [`OWNER_POWER_LEVEL`] (moderator) while the
//! bot keeps full power, and our own state events and the Space links
//! require [`PROTECTED_EVENT_POWER_LEVEL`], so the owner cannot rebind a
//! room or rewire the Space; redacting others' events needs [`REDACT_POWER_LEVEL`], above
//! the owner's, so the owner cannot strip the bot's state events either. This is done by reading the power levels the
//! homeserver created and writing them back adjusted, right after creation,
//! because `power_level_content_override` replaces `users` and `events`
//! wholesale and must or must not name the creator depending on the room
//! version (room version 12 forbids it; earlier ones require it).
//!
//! When a step after `createRoom` fails (after a few retries), the error is
//! [`MatrixError::Incomplete`] with the new room's id, so the caller can
//! repair (e.g. [`link_space_child`]) instead of creating a duplicate.

use matrix_sdk::{
    ruma::{
        api::client::{
            membership::leave_room,
            room::create_room::v3::{CreationContent, Request as CreateRoomRequest, RoomPreset},
            state::{get_state_event_for_key, send_state_event},
        },
        events::{
            room::encryption::RoomEncryptionEventContent,
            space::{child::SpaceChildEventContent, parent::SpaceParentEventContent},
            AnyInitialStateEvent, AnyStateEventContent, InitialStateEvent, StateEventType,
        },
        room::RoomType,
        serde::Raw,
        OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, UserId,
    },
    Client, Room,
};
use serde_json::{json, Map, Value};
use tracing::info;

use super::{
    state::{
        SurfacesRoomEventContent, SurfacesSpaceEventContent, SURFACES_ROOM_EVENT_TYPE,
        SURFACES_SPACE_EVENT_TYPE,
    },
    MatrixError,
};
use crate::retry::{retry, RetryKind, RetryPolicy, Retryable};

/// The owner's power level in their Space and rooms (moderator).
pub const OWNER_POWER_LEVEL: i64 = 50;
/// Power level needed to change our state events and the Space links.
pub const PROTECTED_EVENT_POWER_LEVEL: i64 = 100;
/// Power level needed to redact other people's events (the bot's binding and Space state
/// included): above the owner's, so an owner cannot strip a binding by redacting it. Anyone
/// may still redact their own messages (that needs only `m.room.redaction`'s level).
pub const REDACT_POWER_LEVEL: i64 = PROTECTED_EVENT_POWER_LEVEL;
/// Event types only the bot may change.
const PROTECTED_EVENT_TYPES: &[&str] = &[
    SURFACES_ROOM_EVENT_TYPE,
    SURFACES_SPACE_EVENT_TYPE,
    "m.space.child",
    "m.space.parent",
];
/// Attempts of each step after `createRoom`.
const POST_CREATE_ATTEMPTS: u32 = 3;
/// Attempts to join a room we were invited to.
const JOIN_ATTEMPTS: u32 = 5;

/// Creates `owner`'s private Space named `name`, with the
/// `org.surfaces.space` marker, and invites the owner.
pub async fn create_space(
    client: &Client,
    owner: &UserId,
    name: &str,
) -> Result<OwnedRoomId, MatrixError> {
    let marker = SurfacesSpaceEventContent {
        owner: owner.to_string(),
        selected_agent: None,
    };
    let mut creation = CreationContent::new();
    creation.room_type = Some(RoomType::Space);

    let mut request = CreateRoomRequest::new();
    request.creation_content = Some(raw(&creation, "encoding the space creation content")?);
    request.initial_state = vec![initial_state(&InitialStateEvent::with_empty_state_key(
        marker,
    ))?];
    request.invite = vec![owner.to_owned()];
    request.name = Some(name.to_owned());
    request.preset = Some(RoomPreset::PrivateChat);
    request.is_direct = false;

    let room = client
        .create_room(request)
        .await
        .map_err(|e| MatrixError::from_sdk("creating a space", e))?;
    let space_id = room.room_id().to_owned();
    info!(space_id = %space_id, owner = %owner, "created a space");

    empower_owner(client, &space_id, owner).await?;
    Ok(space_id)
}

/// Gives the owner of a room the bot just made their power level (retried; a failure
/// leaves the room incomplete).
async fn empower_owner(
    client: &Client,
    room_id: &RoomId,
    owner: &UserId,
) -> Result<(), MatrixError> {
    with_retries(POST_CREATE_ATTEMPTS, || {
        grant_owner_power(client, room_id, owner)
    })
    .await
    .map_err(|e| incomplete(room_id, "setting the power levels", e))
}

/// Creates a private chat room named `name` in Space `space_id`, bound by
/// `binding`, end-to-end encrypted when `encrypted`, invites `owner`, and
/// adds it to the Space. The room is known to `client` (joined) on return.
pub async fn create_chat_room(
    client: &Client,
    space_id: &RoomId,
    owner: &UserId,
    name: &str,
    binding: &SurfacesRoomEventContent,
    encrypted: bool,
) -> Result<OwnedRoomId, MatrixError> {
    let via = vec![bot_server(client)?];
    let mut parent = SpaceParentEventContent::new(via);
    parent.canonical = true;

    let mut state = vec![
        initial_state(&InitialStateEvent::with_empty_state_key(binding.clone()))?,
        initial_state(&InitialStateEvent::new(space_id.to_owned(), parent))?,
    ];
    if encrypted {
        state.push(initial_state(&InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        ))?);
    }

    let mut request = CreateRoomRequest::new();
    request.initial_state = state;
    request.invite = vec![owner.to_owned()];
    request.name = Some(name.to_owned());
    request.preset = Some(RoomPreset::PrivateChat);
    request.is_direct = false;

    let room = client
        .create_room(request)
        .await
        .map_err(|e| MatrixError::from_sdk("creating a chat room", e))?;
    let room_id = room.room_id().to_owned();
    info!(room_id = %room_id, space_id = %space_id, owner = %owner,
        platform_chat_id = %binding.platform_chat_id, "created a chat room");

    empower_owner(client, &room_id, owner).await?;
    with_retries(POST_CREATE_ATTEMPTS, || {
        link_space_child(client, space_id, &room_id)
    })
    .await
    .map_err(|e| incomplete(&room_id, "adding it to its space", e))?;
    Ok(room_id)
}

/// Adds `child_id` to Space `space_id` (`m.space.child`, state key = child
/// id, `via` = the bot's server). Idempotent.
pub async fn link_space_child(
    client: &Client,
    space_id: &RoomId,
    child_id: &RoomId,
) -> Result<(), MatrixError> {
    let content = SpaceChildEventContent::new(vec![bot_server(client)?]);
    let request = send_state_event::v3::Request::new(space_id.to_owned(), child_id, &content)
        .map_err(|e| MatrixError::permanent("encoding m.space.child", e))?;
    client
        .send(request)
        .await
        .map_err(|e| MatrixError::from_http("adding a room to its space", e))?;
    Ok(())
}

/// Joins a room we were invited to, retrying a few times: Synapse can
/// answer a join that races the invite with an error.
pub async fn join_invite(client: &Client, room_id: &RoomId) -> Result<Room, MatrixError> {
    with_retries(JOIN_ATTEMPTS, || async {
        client
            .join_room_by_id(room_id)
            .await
            .map_err(|e| MatrixError::from_sdk(format!("joining {room_id}"), e))
    })
    .await
}

/// Leaves a room (rejects the invite if we were only invited).
pub async fn leave(client: &Client, room_id: &RoomId) -> Result<(), MatrixError> {
    let context = format!("leaving {room_id}");
    match client.get_room(room_id) {
        Some(room) => room
            .leave()
            .await
            .map_err(|e| MatrixError::from_sdk(context, e)),
        None => client
            .send(leave_room::v3::Request::new(room_id.to_owned()))
            .await
            .map(|_| ())
            .map_err(|e| MatrixError::from_http(context, e)),
    }
}

/// Reads the room's power levels from the homeserver and writes them back
/// with the owner at [`OWNER_POWER_LEVEL`] and our events protected.
async fn grant_owner_power(
    client: &Client,
    room_id: &RoomId,
    owner: &UserId,
) -> Result<(), MatrixError> {
    let bot = bot_user(client)?;
    let request = get_state_event_for_key::v3::Request::new(
        room_id.to_owned(),
        StateEventType::RoomPowerLevels,
        String::new(),
    );
    let response = client
        .send(request)
        .await
        .map_err(|e| MatrixError::from_http("reading the power levels", e))?;
    let current: Value = serde_json::from_str(response.event_or_content.get())
        .map_err(|e| MatrixError::permanent("reading the power levels", e))?;
    let Some(adjusted) = adjusted_power_levels(current, owner, &bot) else {
        return Ok(());
    };
    let body: Raw<AnyStateEventContent> = Raw::new(&adjusted)
        .map_err(|e| MatrixError::permanent("encoding the power levels", e))?
        .cast_unchecked();
    let request = send_state_event::v3::Request::new_raw(
        room_id.to_owned(),
        StateEventType::RoomPowerLevels,
        String::new(),
        body,
    );
    client
        .send(request)
        .await
        .map_err(|e| MatrixError::from_http("setting the power levels", e))?;
    Ok(())
}

/// The power levels `current` with `owner` at [`OWNER_POWER_LEVEL`],
/// [`PROTECTED_EVENT_TYPES`] at least [`PROTECTED_EVENT_POWER_LEVEL`] and `redact` at least
/// [`REDACT_POWER_LEVEL`];
/// `None` when nothing needs to change. The bot's own entry is never
/// touched (room version 12 forbids listing the creator).
fn adjusted_power_levels(current: Value, owner: &UserId, bot: &UserId) -> Option<Value> {
    let mut levels = match current {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let before = levels.clone();

    if owner != bot {
        update_object(&mut levels, "users", |users| {
            users.insert(owner.to_string(), json!(OWNER_POWER_LEVEL));
        });
    }
    update_object(&mut levels, "events", |events| {
        for event_type in PROTECTED_EVENT_TYPES {
            let current = events.get(*event_type).and_then(Value::as_i64);
            if current.is_none_or(|level| level < PROTECTED_EVENT_POWER_LEVEL) {
                events.insert((*event_type).to_owned(), json!(PROTECTED_EVENT_POWER_LEVEL));
            }
        }
    });
    let redact = levels.get("redact").and_then(Value::as_i64);
    if redact.is_none_or(|level| level < REDACT_POWER_LEVEL) {
        levels.insert("redact".to_owned(), json!(REDACT_POWER_LEVEL));
    }
    (levels != before).then_some(Value::Object(levels))
}

/// Applies `change` to the object `map[key]` (a missing or non-object
/// value counts as an empty object).
fn update_object(
    map: &mut Map<String, Value>,
    key: &str,
    change: impl FnOnce(&mut Map<String, Value>),
) {
    let mut inner = match map.remove(key) {
        Some(Value::Object(inner)) => inner,
        _ => Map::new(),
    };
    change(&mut inner);
    map.insert(key.to_owned(), Value::Object(inner));
}

/// Runs `attempt` up to `attempts` times per [`RetryPolicy::PROVISION`]; stops at once on
/// a rejected token. Other errors are all retried, including "permanent" ones: right after
/// a room is created or an invite arrives, the homeserver may refuse a step (power levels,
/// membership) that succeeds a moment later.
async fn with_retries<T, F, Fut>(attempts: u32, mut attempt: F) -> Result<T, MatrixError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, MatrixError>>,
{
    let policy = RetryPolicy {
        attempts,
        ..RetryPolicy::PROVISION
    };
    retry(&policy, "a Matrix request", || {
        let step = attempt();
        async move { step.await.map_err(RetryAnyButToken) }
    })
    .await
    .map_err(|RetryAnyButToken(error)| error)
}

/// A provisioning error, retried unless the token was rejected (see [`with_retries`]).
struct RetryAnyButToken(MatrixError);

impl std::fmt::Display for RetryAnyButToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Retryable for RetryAnyButToken {
    fn retry_kind(&self) -> RetryKind {
        match self.0.retry_kind() {
            _ if self.0.is_invalid_token() => RetryKind::Permanent,
            RetryKind::Permanent => RetryKind::Transient { retry_after: None },
            other => other,
        }
    }
}

fn incomplete(room_id: &RoomId, step: &'static str, error: MatrixError) -> MatrixError {
    MatrixError::Incomplete {
        room_id: room_id.to_owned(),
        step,
        source: Box::new(error),
    }
}

fn bot_user(client: &Client) -> Result<OwnedUserId, MatrixError> {
    client
        .user_id()
        .map(ToOwned::to_owned)
        .ok_or_else(|| MatrixError::Setup("the Matrix client is not logged in".into()))
}

/// The bot's server name, used as `via` in Space links.
fn bot_server(client: &Client) -> Result<OwnedServerName, MatrixError> {
    Ok(bot_user(client)?.server_name().to_owned())
}

fn raw<T: serde::Serialize>(value: &T, context: &str) -> Result<Raw<T>, MatrixError> {
    Raw::new(value).map_err(|e| MatrixError::permanent(context.to_owned(), e))
}

fn initial_state<C>(event: &InitialStateEvent<C>) -> Result<Raw<AnyInitialStateEvent>, MatrixError>
where
    C: matrix_sdk::ruma::events::StaticStateEventContent,
{
    Ok(raw(event, "encoding initial state")?.cast())
}

#[cfg(test)]
mod tests {
    use matrix_sdk::ruma::user_id;

    use super::*;

    #[test]
    fn power_levels_v10_room() {
        let bot = user_id!("@bot:example.org");
        let owner = user_id!("@alice:example.org");
        let current = json!({
            "users": {"@bot:example.org": 100},
            "users_default": 0,
            "events": {"m.room.power_levels": 100, "m.space.child": 50},
            "state_default": 50,
        });
        let adjusted = adjusted_power_levels(current, owner, bot).unwrap();
        assert_eq!(adjusted["users"]["@bot:example.org"], 100);
        assert_eq!(adjusted["users"]["@alice:example.org"], OWNER_POWER_LEVEL);
        assert_eq!(adjusted["events"]["m.room.power_levels"], 100);
        for event_type in PROTECTED_EVENT_TYPES {
            assert_eq!(adjusted["events"][event_type], PROTECTED_EVENT_POWER_LEVEL);
        }
        assert_eq!(adjusted["state_default"], 50);
        assert_eq!(adjusted["redact"], REDACT_POWER_LEVEL);
        assert!(REDACT_POWER_LEVEL > OWNER_POWER_LEVEL);
        // Applying it again changes nothing.
        assert_eq!(adjusted_power_levels(adjusted, owner, bot), None);
    }

    #[test]
    fn power_levels_v12_room_never_lists_the_creator() {
        let bot = user_id!("@bot:example.org");
        let owner = user_id!("@alice:example.org");
        let adjusted = adjusted_power_levels(json!({"users": {}}), owner, bot).unwrap();
        assert!(adjusted["users"].get("@bot:example.org").is_none());
        assert_eq!(adjusted["users"]["@alice:example.org"], OWNER_POWER_LEVEL);
    }

    #[test]
    fn power_levels_tolerate_garbage() {
        let bot = user_id!("@bot:example.org");
        let owner = user_id!("@alice:example.org");
        for current in [json!(null), json!([]), json!({"users": 3, "events": "x"})] {
            let adjusted = adjusted_power_levels(current, owner, bot).unwrap();
            assert_eq!(adjusted["users"]["@alice:example.org"], OWNER_POWER_LEVEL);
        }
        // A higher protection is kept.
        let adjusted =
            adjusted_power_levels(json!({"events": {"org.surfaces.room": 150}}), owner, bot)
                .unwrap();
        assert_eq!(adjusted["events"]["org.surfaces.room"], 150);
        // The default redact level (50, the owner's) is raised; a higher one is kept.
        let adjusted = adjusted_power_levels(json!({"redact": 50}), owner, bot).unwrap();
        assert_eq!(adjusted["redact"], REDACT_POWER_LEVEL);
        let adjusted = adjusted_power_levels(json!({"redact": 200}), owner, bot).unwrap();
        assert_eq!(adjusted["redact"], 200);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_on_success_invalid_token_or_exhaustion() {
        use std::sync::atomic::{AtomicU32, Ordering};

        let calls = AtomicU32::new(0);
        let result: Result<u32, MatrixError> = with_retries(5, || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n < 3 {
                Err(MatrixError::Setup("not yet".into()))
            } else {
                Ok(n)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);

        let calls = AtomicU32::new(0);
        let result: Result<(), MatrixError> = with_retries(5, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(MatrixError::InvalidToken {
                context: "x".into(),
                hint: "y".into(),
            })
        })
        .await;
        assert!(result.unwrap_err().is_invalid_token());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let result: Result<(), MatrixError> = with_retries(3, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(MatrixError::Setup("never".into()))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
