//! The directory of managed chats: chat → its messenger and its supervised room actor.
//!
//! The intake looks chats up here for every message; start-up and the provisioner add
//! chats. Room actors are dynamic children of the root supervisor, one per chat. The
//! provisioner starts the actors of the chats it creates through a [`RoomStarter`] (a
//! request to a task that owns the starting), so the directory (whose room actors need the
//! provisioner for `!new`) and the provisioner do not need each other at construction.

use std::collections::HashMap;
use std::sync::Arc;

use actors::{ChildHandle, ChildSpec, SupervisorError, SupervisorHandle};
use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot};

use super::ids;
use super::room::{Chat, RoomActor, RoomDeps};
use crate::surface::{ChatId, Surface};

/// The messengers the bot is on, by name. Cheap to clone.
#[derive(Clone, Default)]
pub struct Surfaces(Arc<HashMap<String, Arc<dyn Surface>>>);

impl Surfaces {
    /// The registry of `surfaces` (names must be distinct).
    pub fn new(surfaces: impl IntoIterator<Item = Arc<dyn Surface>>) -> Self {
        Self(Arc::new(
            surfaces
                .into_iter()
                .map(|s| (s.name().to_owned(), s))
                .collect(),
        ))
    }

    /// The messenger named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Surface>> {
        self.0.get(name).cloned()
    }

    /// Every messenger.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Surface>> {
        self.0.values()
    }
}

/// A managed chat and its actor.
type Entry = (Chat, ChildHandle<RoomActor>);

/// Managed chats and their actors. Cloning shares it.
#[derive(Clone)]
pub struct RoomDirectory {
    rooms: Arc<RwLock<HashMap<ChatId, Entry>>>,
    supervisor: SupervisorHandle,
    deps: Arc<RoomDeps>,
}

impl RoomDirectory {
    /// An empty directory whose rooms run under `supervisor`, sharing `deps`.
    pub fn new(supervisor: SupervisorHandle, deps: RoomDeps) -> Self {
        Self {
            rooms: Arc::default(),
            supervisor,
            // One copy shared by every room actor (memory per idle room matters).
            deps: Arc::new(deps),
        }
    }

    /// What room actors share (the intake uses it for `!cancel`).
    pub fn deps(&self) -> &Arc<RoomDeps> {
        &self.deps
    }

    /// The chat and actor of a managed chat.
    pub fn get(&self, chat: &ChatId) -> Option<Entry> {
        self.rooms.read().get(chat).cloned()
    }

    /// Whether the bot manages `chat`.
    pub fn contains(&self, chat: &ChatId) -> bool {
        self.rooms.read().contains_key(chat)
    }

    /// Number of managed chats.
    pub fn len(&self) -> usize {
        self.rooms.read().len()
    }

    /// True when no chat is managed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts the actor of a managed chat (no-op if it runs already).
    pub async fn start(
        &self,
        surface: Arc<dyn Surface>,
        chat: ChatId,
    ) -> Result<ChildHandle<RoomActor>, SupervisorError> {
        if let Some((_, handle)) = self.get(&chat) {
            return Ok(handle);
        }
        let id = ids::room(chat.as_str());
        let room = Chat::new(surface, chat.clone());
        let deps = self.deps.clone();
        let factory_room = room.clone();
        // Replies and turns are idempotent (keys derived from the message id): safe to redeliver.
        let stop_timeout = deps.stop_timeout;
        let spec = ChildSpec::new(id, move |ctx| {
            RoomActor::new(factory_room.clone(), deps.clone(), ctx)
        })
        .redeliver(true)
        .shutdown_timeout(stop_timeout);
        let handle = self.supervisor.start_child(spec).await?;
        self.rooms.write().insert(chat, (room, handle.clone()));
        Ok(handle)
    }

    /// Serves [`RoomStarter`] requests until every starter is dropped (spawn it once).
    pub async fn serve(self, mut requests: mpsc::UnboundedReceiver<StartRoom>) {
        while let Some(StartRoom {
            surface,
            chat,
            done,
        }) = requests.recv().await
        {
            let result = self.start(surface, chat).await.map(|_| ());
            let _ = done.send(result);
        }
    }
}

/// A request to start a chat's actor.
pub struct StartRoom {
    surface: Arc<dyn Surface>,
    chat: ChatId,
    done: oneshot::Sender<Result<(), SupervisorError>>,
}

/// Starts room actors through the directory's [`RoomDirectory::serve`] task.
#[derive(Clone)]
pub struct RoomStarter(mpsc::UnboundedSender<StartRoom>);

/// Why a room actor could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The supervisor refused.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    /// Nobody serves the requests (shutting down).
    #[error("the room directory is not running")]
    Gone,
}

impl RoomStarter {
    /// A starter and the requests [`RoomDirectory::serve`] takes.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<StartRoom>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Starts the actor of `chat` and waits until it runs.
    pub async fn start(&self, surface: Arc<dyn Surface>, chat: ChatId) -> Result<(), StartError> {
        let (done, started) = oneshot::channel();
        self.0
            .send(StartRoom {
                surface,
                chat,
                done,
            })
            .map_err(|_| StartError::Gone)?;
        started.await.map_err(|_| StartError::Gone)??;
        Ok(())
    }
}
