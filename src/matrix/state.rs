//! The namespaced state events that make Matrix the source of truth.
//!
//! Surfaces keeps no authoritative copy of who owns which room: each chat
//! room carries an `org.surfaces.room` state event binding it to an agent
//! and a platform chat, each Space an `org.surfaces.space` event naming its
//! owner (see `docs/ARCHITECTURE.md`). This file defines those contents with
//! ruma's `EventContent` derive so they can be sent as initial state or
//! state events, and reads them back from matrix-sdk's local store.
//!
//! Reading is tolerant: a missing, redacted or malformed event (anyone with
//! enough power could write garbage) is reported as `None` with a warning,
//! never as an error, so one broken room cannot stop the bot.

use matrix_sdk::{
    deserialized_responses::RawSyncOrStrippedState,
    ruma::{
        events::{
            macros::EventContent, room::create::RoomCreateEventContent,
            space::parent::SpaceParentEventContent, EmptyStateKey, RedactContent,
            RedactedStateEventContent, StaticStateEventContent,
        },
        OwnedEventId, OwnedRoomId, OwnedUserId,
    },
    Room, RoomMemberships,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tracing::warn;

use super::MatrixError;

/// Event type of the chat-room binding.
pub const SURFACES_ROOM_EVENT_TYPE: &str = "org.surfaces.room";
/// Event type of the Space ownership marker.
pub const SURFACES_SPACE_EVENT_TYPE: &str = "org.surfaces.space";

/// `org.surfaces.room` (state key `""`): binds a chat room to an agent and a
/// platform chat, for one owner.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, EventContent)]
#[ruma_event(type = "org.surfaces.room", kind = State, state_key_type = EmptyStateKey)]
pub struct SurfacesRoomEventContent {
    /// The agent this room talks to.
    pub agent_id: String,
    /// The platform's chat id (`sfc-<n>`).
    pub platform_chat_id: String,
    /// The Matrix user id of the person who owns the room.
    pub owner: String,
    /// The owner's chat number, for naming ("Chat 3").
    pub chat_index: u32,
    /// Whether the chat was archived (no longer answered).
    #[serde(default)]
    pub archived: bool,
}

/// `org.surfaces.space` (state key `""`): marks a Space as a person's
/// Surfaces Space.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, EventContent)]
#[ruma_event(type = "org.surfaces.space", kind = State, state_key_type = EmptyStateKey)]
pub struct SurfacesSpaceEventContent {
    /// The Matrix user id of the person who owns the Space.
    pub owner: String,
    /// The agent the owner's new chats start with (`!agent <id>`), if they chose one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_agent: Option<String>,
}

/// A state event's content and who sent it (anyone with enough power can send state:
/// reconciliation trusts only what the bot sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent<T> {
    /// The content.
    pub content: T,
    /// Its sender, if the stored event says.
    pub sender: Option<OwnedUserId>,
}

/// The chat-room binding of `room` from the local store, if it has a valid
/// one.
pub async fn room_binding(room: &Room) -> Result<Option<SurfacesRoomEventContent>, MatrixError> {
    Ok(room_binding_sent(room).await?.map(|sent| sent.content))
}

/// The chat-room binding of `room` and its sender, if it has a valid one.
pub async fn room_binding_sent(
    room: &Room,
) -> Result<Option<Sent<SurfacesRoomEventContent>>, MatrixError> {
    let raw = room
        .get_state_event_static::<SurfacesRoomEventContent>()
        .await
        .map_err(|e| MatrixError::from_sdk("reading the room binding", e))?;
    Ok(sent_of(room, SURFACES_ROOM_EVENT_TYPE, raw.as_ref()))
}

/// The Space marker of `room` from the local store, if it has a valid one.
pub async fn space_binding(room: &Room) -> Result<Option<SurfacesSpaceEventContent>, MatrixError> {
    Ok(space_binding_sent(room).await?.map(|sent| sent.content))
}

/// The Space marker of `room` and its sender, if it has a valid one.
pub async fn space_binding_sent(
    room: &Room,
) -> Result<Option<Sent<SurfacesSpaceEventContent>>, MatrixError> {
    let raw = room
        .get_state_event_static::<SurfacesSpaceEventContent>()
        .await
        .map_err(|e| MatrixError::from_sdk("reading the space marker", e))?;
    Ok(sent_of(room, SURFACES_SPACE_EVENT_TYPE, raw.as_ref()))
}

/// Who created `room`: the sender of its `m.room.create` event from the local store
/// (matrix-sdk's summary of it as a fallback), if known.
pub async fn room_creator(room: &Room) -> Result<Option<OwnedUserId>, MatrixError> {
    let raw = room
        .get_state_event_static::<RoomCreateEventContent>()
        .await
        .map_err(|e| MatrixError::from_sdk("reading the room's creation", e))?;
    let sender = raw.as_ref().and_then(|raw| sender_of(&raw_json(raw)));
    Ok(sender.or_else(|| room.create_content().map(|content| content.creator)))
}

/// The people in `room` or invited to it, from the local store (members are not
/// lazy-loaded: the first sync brought them all).
pub async fn members(room: &Room) -> Result<Vec<OwnedUserId>, MatrixError> {
    let members = room
        .members_no_sync(RoomMemberships::JOIN | RoomMemberships::INVITE)
        .await
        .map_err(|e| MatrixError::from_sdk("reading the room's members", e))?;
    Ok(members.iter().map(|m| m.user_id().to_owned()).collect())
}

/// The owner named by the Space marker of `room`, if it has a valid one.
pub async fn space_owner(room: &Room) -> Result<Option<OwnedUserId>, MatrixError> {
    let Some(content) = space_binding(room).await? else {
        return Ok(None);
    };
    match OwnedUserId::try_from(content.owner.as_str()) {
        Ok(owner) => Ok(Some(owner)),
        Err(error) => {
            warn!(room_id = %room.room_id(), owner = %content.owner, %error,
                "ignoring {SURFACES_SPACE_EVENT_TYPE}: owner is not a user id");
            Ok(None)
        }
    }
}

/// Sends `content` as the room's `org.surfaces.room` state event; returns
/// the event id.
pub async fn set_room_binding(
    room: &Room,
    content: SurfacesRoomEventContent,
) -> Result<OwnedEventId, MatrixError> {
    let response = room
        .send_state_event(content)
        .await
        .map_err(|e| MatrixError::from_sdk("sending the room binding", e))?;
    Ok(response.event_id)
}

/// The Space that `room` names as its parent (`m.space.parent`, state key =
/// Space id), preferring a `canonical` one; from the local store.
pub async fn space_parent_of(room: &Room) -> Result<Option<OwnedRoomId>, MatrixError> {
    Ok(space_parent_sent(room).await?.map(|sent| sent.content))
}

/// The parent chosen as [`space_parent_of`] does, and who sent that link.
pub async fn space_parent_sent(room: &Room) -> Result<Option<Sent<OwnedRoomId>>, MatrixError> {
    let events = room
        .get_state_events_static::<SpaceParentEventContent>()
        .await
        .map_err(|e| MatrixError::from_sdk("reading the space parents", e))?;
    let parents: Vec<(String, SpaceParentEventContent, Option<OwnedUserId>)> = events
        .iter()
        .filter_map(|raw| {
            let json = raw_json(raw);
            let state_key = json.get_field::<String>("state_key").ok().flatten()?;
            let content = json
                .get_field::<serde_json::Value>("content")
                .ok()
                .flatten()?;
            let content = serde_json::from_value::<SpaceParentEventContent>(content).ok()?;
            Some((state_key, content, sender_of(&json)))
        })
        .collect();
    let chosen = pick_space_parent(
        parents
            .iter()
            .map(|(key, content, _)| (key.clone(), content.clone())),
    );
    Ok(chosen.map(|parent| {
        let sender = parents
            .iter()
            .find(|(key, _, _)| key.as_str() == parent.as_str())
            .and_then(|(_, _, sender)| sender.clone());
        Sent {
            content: parent,
            sender,
        }
    }))
}

/// The sender of a stored state event, if it names a valid one.
fn sender_of(json: &matrix_sdk::ruma::serde::Raw<serde_json::Value>) -> Option<OwnedUserId> {
    let sender = json.get_field::<String>("sender").ok().flatten()?;
    OwnedUserId::try_from(sender.as_str()).ok()
}

/// [`content_of`] with the event's sender.
fn sent_of<C, T>(
    room: &Room,
    event_type: &str,
    raw: Option<&RawSyncOrStrippedState<C>>,
) -> Option<Sent<T>>
where
    C: StaticStateEventContent + RedactContent,
    C::Redacted: RedactedStateEventContent,
    T: DeserializeOwned,
{
    let content = content_of(room, event_type, raw)?;
    Some(Sent {
        content,
        sender: raw.and_then(|raw| sender_of(&raw_json(raw))),
    })
}

/// Chooses the parent among `(state key, content)` pairs: only entries whose
/// state key is a room id and whose `via` is non-empty count (an empty `via`
/// is how a parent link is removed); a canonical one wins, otherwise the
/// smallest room id (so the answer is stable).
fn pick_space_parent(
    parents: impl IntoIterator<Item = (String, SpaceParentEventContent)>,
) -> Option<OwnedRoomId> {
    let mut valid: Vec<(bool, OwnedRoomId)> = parents
        .into_iter()
        .filter(|(_, content)| !content.via.is_empty())
        .filter_map(|(key, content)| {
            OwnedRoomId::try_from(key.as_str())
                .ok()
                .map(|id| (content.canonical, id))
        })
        .collect();
    // Canonical first, then by room id.
    valid.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    valid.into_iter().next().map(|(_, id)| id)
}

/// The raw JSON of a stored state event, whether the room is joined or
/// invited.
fn raw_json<C>(raw: &RawSyncOrStrippedState<C>) -> matrix_sdk::ruma::serde::Raw<serde_json::Value>
where
    C: StaticStateEventContent + RedactContent,
    C::Redacted: RedactedStateEventContent,
{
    match raw {
        RawSyncOrStrippedState::Sync(raw) => raw.clone().cast_unchecked(),
        RawSyncOrStrippedState::Stripped(raw) => raw.clone().cast_unchecked(),
    }
}

/// Deserializes the `content` of a stored state event, tolerating garbage.
fn content_of<C, T>(
    room: &Room,
    event_type: &str,
    raw: Option<&RawSyncOrStrippedState<C>>,
) -> Option<T>
where
    C: StaticStateEventContent + RedactContent,
    C::Redacted: RedactedStateEventContent,
    T: DeserializeOwned,
{
    let raw = raw?;
    let content = match raw_json(raw).get_field::<serde_json::Value>("content") {
        Ok(Some(content)) => content,
        Ok(None) => {
            warn!(room_id = %room.room_id(), "ignoring {event_type}: event has no content");
            return None;
        }
        Err(error) => {
            warn!(room_id = %room.room_id(), %error, "ignoring {event_type}: unreadable event");
            return None;
        }
    };
    match parse_content(content) {
        Ok(content) => Some(content),
        Err(error) => {
            warn!(room_id = %room.room_id(), %error, "ignoring {event_type}: malformed content");
            None
        }
    }
}

/// Parses a state event content. A redacted event has `{}` as content and
/// fails here like any other garbage.
fn parse_content<T: DeserializeOwned>(content: serde_json::Value) -> serde_json::Result<T> {
    serde_json::from_value(content)
}

#[cfg(test)]
mod tests {
    use matrix_sdk::ruma::{
        events::{InitialStateEvent, StateEventContent, StateEventType, StaticEventContent},
        OwnedServerName,
    };
    use serde_json::json;

    use super::*;

    fn binding() -> SurfacesRoomEventContent {
        SurfacesRoomEventContent {
            agent_id: "echo".into(),
            platform_chat_id: "sfc-7".into(),
            owner: "@alice:example.org".into(),
            chat_index: 3,
            archived: false,
        }
    }

    #[test]
    fn event_types_match_architecture() {
        assert_eq!(SurfacesRoomEventContent::TYPE, SURFACES_ROOM_EVENT_TYPE);
        assert_eq!(SurfacesSpaceEventContent::TYPE, SURFACES_SPACE_EVENT_TYPE);
        assert_eq!(
            binding().event_type(),
            StateEventType::from(SURFACES_ROOM_EVENT_TYPE)
        );
        let space = SurfacesSpaceEventContent {
            owner: "@alice:example.org".into(),
            selected_agent: None,
        };
        assert_eq!(
            space.event_type(),
            StateEventType::from(SURFACES_SPACE_EVENT_TYPE)
        );
    }

    #[test]
    fn room_binding_round_trip() {
        let value = serde_json::to_value(binding()).unwrap();
        assert_eq!(
            value,
            json!({
                "agent_id": "echo",
                "platform_chat_id": "sfc-7",
                "owner": "@alice:example.org",
                "chat_index": 3,
                "archived": false,
            })
        );
        let back: SurfacesRoomEventContent = parse_content(value).unwrap();
        assert_eq!(back, binding());
    }

    #[test]
    fn room_binding_archived_defaults_to_false() {
        let value = json!({
            "agent_id": "echo",
            "platform_chat_id": "sfc-7",
            "owner": "@alice:example.org",
            "chat_index": 3,
        });
        let parsed: SurfacesRoomEventContent = parse_content(value).unwrap();
        assert!(!parsed.archived);
    }

    #[test]
    fn room_binding_ignores_unknown_fields() {
        let value = json!({
            "agent_id": "echo",
            "platform_chat_id": "sfc-7",
            "owner": "@alice:example.org",
            "chat_index": 3,
            "archived": true,
            "future": {"x": 1},
        });
        let parsed: SurfacesRoomEventContent = parse_content(value).unwrap();
        assert!(parsed.archived);
    }

    #[test]
    fn garbage_is_rejected() {
        let cases = [
            json!({}),
            json!(null),
            json!("org.surfaces.room"),
            json!([1, 2]),
            json!({"agent_id": 5, "platform_chat_id": "sfc-1", "owner": "@a:b", "chat_index": 1}),
            json!({"agent_id": "a", "platform_chat_id": "sfc-1", "owner": "@a:b", "chat_index": -1}),
            json!({"agent_id": "a", "platform_chat_id": "sfc-1", "owner": "@a:b"}),
            json!({"agent_id": "a", "platform_chat_id": "sfc-1", "owner": "@a:b", "chat_index": 1, "archived": "yes"}),
        ];
        for case in cases {
            assert!(
                parse_content::<SurfacesRoomEventContent>(case.clone()).is_err(),
                "accepted {case}"
            );
        }
        assert!(parse_content::<SurfacesSpaceEventContent>(json!({})).is_err());
        assert!(parse_content::<SurfacesSpaceEventContent>(json!({"owner": 1})).is_err());
    }

    #[test]
    fn initial_state_serialization() {
        let event = InitialStateEvent::with_empty_state_key(SurfacesSpaceEventContent {
            owner: "@alice:example.org".into(),
            selected_agent: None,
        });
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(
            value,
            json!({
                "type": "org.surfaces.space",
                "state_key": "",
                "content": {"owner": "@alice:example.org"},
            })
        );
    }

    fn parent(via: &[&str], canonical: bool) -> SpaceParentEventContent {
        let mut content = SpaceParentEventContent::new(
            via.iter()
                .map(|s| OwnedServerName::try_from(*s).unwrap())
                .collect(),
        );
        content.canonical = canonical;
        content
    }

    #[test]
    fn space_parent_choice() {
        let none: Vec<(String, SpaceParentEventContent)> = vec![];
        assert_eq!(pick_space_parent(none), None);

        // Removed link (empty via) and junk state keys do not count.
        assert_eq!(
            pick_space_parent(vec![
                ("!a:example.org".into(), parent(&[], true)),
                ("not a room".into(), parent(&["example.org"], true)),
            ]),
            None
        );

        // Canonical wins over smaller ids.
        assert_eq!(
            pick_space_parent(vec![
                ("!a:example.org".into(), parent(&["example.org"], false)),
                ("!z:example.org".into(), parent(&["example.org"], true)),
            ])
            .as_deref()
            .map(|id| id.as_str()),
            Some("!z:example.org")
        );

        // Otherwise the smallest id, whatever the order.
        assert_eq!(
            pick_space_parent(vec![
                ("!m:example.org".into(), parent(&["example.org"], false)),
                ("!b:example.org".into(), parent(&["other.org"], false)),
            ])
            .as_deref()
            .map(|id| id.as_str()),
            Some("!b:example.org")
        );
    }
}
