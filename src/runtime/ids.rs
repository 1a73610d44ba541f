//! The ids of the runtime's actors, shared by the runtime, the adapters and the status page.
//!
//! Why this exists: an operator reads these names on `/status` and in `/metrics` labels; the
//! code that starts an actor and the code that reports on it must agree on them, so they are
//! written once, here.

use actors::ActorId;

/// Kind of the room actors: `room:<chat id>`.
pub const ROOM_KIND: &str = "room";
/// Kind of the agent connections: `agent:<agent id>`.
pub const AGENT_KIND: &str = "agent";
/// The router.
pub const ROUTER: &str = "router";
/// The provisioner.
pub const PROVISIONER: &str = "provisioner";
/// The Matrix adapter's sync loop.
pub const SYNC_ACTOR: &str = "sync";

/// The id of the room actor of `chat`.
pub fn room(chat: &str) -> ActorId {
    ActorId::new(ROOM_KIND, chat)
}

/// The id of the connection to agent `agent`.
pub fn agent(agent: &str) -> ActorId {
    ActorId::new(AGENT_KIND, agent)
}
