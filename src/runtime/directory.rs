//! The directory of managed rooms: room id → the room's supervised actor.
//!
//! The dispatcher looks rooms up here for every message; the provisioner (and start-up)
//! add rooms. Room actors are dynamic children of the root supervisor, one per room.

use std::collections::HashMap;
use std::sync::Arc;

use actors::{ActorId, ChildHandle, ChildSpec, SupervisorError, SupervisorHandle};
use matrix_sdk::ruma::{OwnedRoomId, RoomId};
use parking_lot::RwLock;

use super::room::{RoomActor, RoomDeps};

/// The actor kind of room actors (`room:<room id>`).
pub const ROOM_KIND: &str = "room";

/// Managed rooms and their actors. Cloning shares it.
#[derive(Clone)]
pub struct RoomDirectory {
    rooms: Arc<RwLock<HashMap<OwnedRoomId, ChildHandle<RoomActor>>>>,
    supervisor: SupervisorHandle,
    deps: Arc<RoomDeps>,
}

impl RoomDirectory {
    /// An empty directory whose rooms run under `supervisor`.
    pub fn new(supervisor: SupervisorHandle, deps: RoomDeps) -> Self {
        // One copy shared by every room actor (memory per idle room matters at 10,000 rooms).
        let deps = Arc::new(deps);
        Self {
            rooms: Arc::new(RwLock::new(HashMap::new())),
            supervisor,
            deps,
        }
    }

    /// What room actors share (the dispatcher uses it for `!cancel`).
    pub fn deps(&self) -> &RoomDeps {
        &self.deps
    }

    /// The actor of a managed room.
    pub fn get(&self, room_id: &RoomId) -> Option<ChildHandle<RoomActor>> {
        self.rooms.read().get(room_id).cloned()
    }

    /// Number of managed rooms.
    pub fn len(&self) -> usize {
        self.rooms.read().len()
    }

    /// True when no room is managed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts the actor of a managed room (no-op if it runs already).
    pub async fn start(&self, room_id: &RoomId) -> Result<ChildHandle<RoomActor>, SupervisorError> {
        if let Some(handle) = self.get(room_id) {
            return Ok(handle);
        }
        let id = ActorId::new(ROOM_KIND, room_id.as_str());
        let owned = room_id.to_owned();
        let deps = self.deps.clone();
        // Replies and turns are idempotent (ids derived from the event id): safe to redeliver.
        let spec = ChildSpec::new(id, move |ctx| {
            RoomActor::new(owned.clone(), deps.clone(), ctx)
        })
        .redeliver(true);
        let handle = self.supervisor.start_child(spec).await?;
        self.rooms
            .write()
            .insert(room_id.to_owned(), handle.clone());
        Ok(handle)
    }
}
