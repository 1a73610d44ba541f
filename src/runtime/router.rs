//! The router: which agent connection serves a room, and fresh platform chat ids.
//!
//! Rooms name their agent by id (from their state event); the router maps that id to the
//! live connection actor, and says when the agent is no longer configured. The map never
//! changes while the process runs, so whoever needs a route reads it directly
//! ([`RouteTable`]) instead of asking the router through its mailbox. It mints
//! platform chat ids from the store's sequence, which is flushed before an id is used and
//! never reused, across restarts too.

use std::sync::Arc;

use actix::{Actor, Context, Handler, Message, ResponseFuture};
use actors::ChildHandle;

use super::agent_conn::AgentConn;
use crate::agent::about::{shown_description, shown_name, AgentAbout, SharedAbout, Skill};
use crate::idmap::IdMap;
use crate::store::{Store, StoreError};

/// The prefix of platform chat ids: `sfc-<sequence>`.
pub const CHAT_ID_PREFIX: &str = "sfc-";

/// A configured agent as rooms see it.
#[derive(Clone)]
pub struct AgentRoute {
    /// The agent's id.
    pub id: String,
    /// Its display name as configured (the id when the config gives none).
    pub configured_name: String,
    /// What it is for, as configured (shown by `!agent`).
    pub configured_description: String,
    /// What the agent says about itself (an A2A agent's card), when it says anything.
    pub about: Option<SharedAbout>,
    /// Whether its questions take any message as the answer, not only `!yes` / `!no`.
    pub free_answers: bool,
    /// Its connection actor.
    pub conn: ChildHandle<AgentConn>,
    /// Its workspace root on the shared volume (files in and out); `None`: no files.
    pub workspace: Option<std::path::PathBuf>,
}

impl AgentRoute {
    fn said(&self) -> Option<AgentAbout> {
        self.about.as_ref().and_then(|about| about.read().clone())
    }

    /// Its display name: the configured one, else the name the agent gives itself.
    pub fn name(&self) -> String {
        shown_name(&self.id, &self.configured_name, self.said().as_ref())
    }

    /// What it is for: as configured, else as the agent says.
    pub fn description(&self) -> String {
        shown_description(&self.configured_description, self.said().as_ref())
    }

    /// The skills the agent says it has.
    pub fn skills(&self) -> Vec<Skill> {
        self.said().map(|about| about.skills).unwrap_or_default()
    }
}

/// The configured agents' routes by id, read-only and shared (by the router, the provisioner
/// and every room actor). Cheap to clone.
#[derive(Clone, Default)]
pub struct RouteTable(Arc<Routes>);

#[derive(Default)]
struct Routes {
    by_id: IdMap<String, AgentRoute>,
    /// Agent ids in configuration order.
    order: Vec<String>,
}

impl RouteTable {
    /// The table of `routes`, in configuration order.
    pub fn new(routes: &[AgentRoute]) -> Self {
        Self(Arc::new(Routes {
            by_id: routes.iter().map(|r| (r.id.clone(), r.clone())).collect(),
            order: routes.iter().map(|r| r.id.clone()).collect(),
        }))
    }

    /// The route to agent `agent_id`; `None` when it is not configured (a stale room).
    pub fn get(&self, agent_id: &str) -> Option<&AgentRoute> {
        self.0.by_id.get(agent_id)
    }

    /// Every route, in configuration order (an id given twice once).
    fn in_order(&self) -> Vec<AgentRoute> {
        first_occurrences(&self.0.order)
            .filter_map(|id| self.get(id).cloned())
            .collect()
    }
}

/// `ids` in order, each only where it first appears.
fn first_occurrences(ids: &[String]) -> impl Iterator<Item = &str> {
    let mut seen = std::collections::HashSet::new();
    ids.iter()
        .map(String::as_str)
        .filter(move |id| seen.insert(*id))
}

/// The router actor.
pub struct Router {
    agents: RouteTable,
    default_agent: String,
    store: Store,
}

impl Router {
    /// A router over `agents`, `default_agent` being one of them.
    pub fn new(agents: RouteTable, default_agent: String, store: Store) -> Self {
        Self {
            agents,
            default_agent,
            store,
        }
    }
}

impl Actor for Router {
    type Context = Context<Self>;
}
actors::supervised_actor!(Router);

/// The default agent's route.
#[derive(Message)]
#[rtype(result = "Option<AgentRoute>")]
pub struct DefaultAgent;

impl Handler<DefaultAgent> for Router {
    type Result = Option<AgentRoute>;

    fn handle(&mut self, _: DefaultAgent, _: &mut Context<Self>) -> Self::Result {
        self.agents.get(&self.default_agent).cloned()
    }
}

/// Every configured agent, in configuration order, and the default one's id.
#[derive(Message)]
#[rtype(result = "(Vec<AgentRoute>, String)")]
pub struct ListAgents;

impl Handler<ListAgents> for Router {
    type Result = actix::MessageResult<ListAgents>;

    fn handle(&mut self, _: ListAgents, _: &mut Context<Self>) -> Self::Result {
        actix::MessageResult((self.agents.in_order(), self.default_agent.clone()))
    }
}

/// Mints a new platform chat id (durable before it is returned).
#[derive(Message)]
#[rtype(result = "Result<String, StoreError>")]
pub struct MintChatId;

impl Handler<MintChatId> for Router {
    type Result = ResponseFuture<Result<String, StoreError>>;

    fn handle(&mut self, _: MintChatId, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            let seq = store.next_chat_seq().await?;
            Ok(format!("{CHAT_ID_PREFIX}{seq}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::first_occurrences;

    #[test]
    fn an_agent_listed_twice_is_shown_once_in_its_first_place() {
        let table: [(&[&str], &[&str]); 4] = [
            (&[], &[]),
            (&["a", "b"], &["a", "b"]),
            (&["a", "a", "b"], &["a", "b"]),
            (&["a", "b", "a", "c", "b"], &["a", "b", "c"]),
        ];
        for (ids, expected) in table {
            let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
            let got: Vec<&str> = first_occurrences(&ids).collect();
            assert_eq!(got, expected, "{ids:?}");
        }
    }
}
