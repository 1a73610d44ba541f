//! Start-up reconciliation: the messenger is the source of truth; the store is rebuilt from it.
//!
//! After the messenger's adapter caught up (Matrix: the first sync) and before any live
//! event is handled, the reconciler reads the chats the bot is in through the [`Surface`]
//! (from the adapter's local state: no extra requests): chats carry their binding (agent,
//! platform chat id, owner, chat index, archived; Matrix: `org.surfaces.room`), homes their
//! owner and preferences (Matrix: `org.surfaces.space` in a Space). [`plan`] (pure,
//! table-tested) turns those facts and the
//! store's records into a plan: records to write, rooms to drop (the bot left them),
//! bindings to write back (legacy rooms without a chat id get one minted
//! deterministically: the same room always gets the same id), counters to raise so no id
//! is ever minted twice, and the conflicts where the store disagreed (Matrix wins; each is
//! logged and counted). Bindings are written to Matrix first, then to the store.
//!
//! Only what the bot itself wrote is believed ([`trust`]): a binding or home marker someone
//! else wrote, in a room someone else created, for an owner who is not in the room, or with
//! a chat id or index the bot could not have minted, is reported (log and `/status`, as
//! `rejected`) and never adopted; when two rooms hold one chat id, the one the store knew
//! (else the lowest room id) is kept and the other reported. A room whose state cannot be
//! read or written back is reported as `failed` and the rest carries on.
//!
//! With an intact store that was reconciled before, only rooms the store does not know
//! are walked (config `reconcile.full` walks them all). Only the records of the messenger
//! being reconciled are touched; a messenger without chat state is not reconciled at all
//! (the store is its source of truth).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub mod trust;

pub use self::trust::{chat_seq_of, Distrust, MAX_CHAT_INDEX, MAX_CHAT_SEQ};
use crate::store::{RoomRecord, Store, UserRecord};
use crate::surface::{Binding, ChatFacts, ChatId, HomePrefs, Surface};

/// Prefix of the deterministic chat ids minted for legacy rooms (`sfc-r<hash>`).
pub const LEGACY_CHAT_ID_PREFIX: &str = "sfc-r";
/// Hex digits of the room id's hash in a legacy chat id.
const LEGACY_HASH_HEX: usize = 16;

/// What the messenger says about one chat the bot is in, as the planner reads it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoomFacts {
    /// The chat.
    pub room_id: String,
    /// Its name, if any.
    pub name: Option<String>,
    /// Its binding, if any.
    pub binding: Option<Binding>,
    /// Its owner, if it is a home the bot made.
    pub space_owner: Option<String>,
    /// The owner's preferences kept in that home.
    pub space_prefs: HomePrefs,
    /// The home it belongs to, if any.
    pub parent: Option<String>,
    /// Who created it, if known.
    pub creator: Option<String>,
    /// Who wrote its binding.
    pub binding_sender: Option<String>,
    /// Who wrote its home marker.
    pub space_sender: Option<String>,
    /// Who wrote its link to a home.
    pub parent_sender: Option<String>,
    /// Who is in it or invited.
    pub members: Vec<String>,
}

impl From<ChatFacts> for RoomFacts {
    fn from(facts: ChatFacts) -> Self {
        let (space_owner, space_prefs) = match facts.home {
            Some(home) => (Some(home.owner.to_string()), home.prefs),
            None => (None, HomePrefs::default()),
        };
        let text = |p: Option<crate::surface::PersonId>| p.map(|p| p.to_string());
        RoomFacts {
            room_id: facts.chat.to_string(),
            name: facts.name,
            binding: facts.binding,
            space_owner,
            space_prefs,
            parent: facts.parent.map(|p| p.to_string()),
            creator: text(facts.creator),
            binding_sender: text(facts.binding_sender),
            space_sender: text(facts.home_sender),
            parent_sender: text(facts.parent_sender),
            members: facts.members.iter().map(ToString::to_string).collect(),
        }
    }
}

/// A disagreement between the store and Matrix (Matrix won).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    /// The room or user concerned.
    pub subject: String,
    /// The field.
    pub field: &'static str,
    /// What the store had.
    pub store: String,
    /// What Matrix has (now also in the store).
    pub matrix: String,
}

/// A room reconciliation did not adopt (rejected) or could not handle (failed), and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RoomProblem {
    /// The room.
    pub room_id: String,
    /// Why.
    pub reason: String,
}

impl RoomProblem {
    fn new(room_id: &str, reason: impl std::fmt::Display) -> Self {
        RoomProblem {
            room_id: room_id.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// What reconciliation will do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Room records to write.
    pub rooms: Vec<RoomRecord>,
    /// User records to write.
    pub users: Vec<UserRecord>,
    /// Rooms to drop from the store (the bot is no longer in them).
    pub remove: Vec<String>,
    /// Bindings to write to the rooms' state first (minted ids, legacy rooms).
    pub write_back: Vec<(String, Binding)>,
    /// Disagreements found.
    pub conflicts: Vec<Conflict>,
    /// The chat sequence must be at least this.
    pub chat_seq_at_least: u64,
    /// Rooms whose state was not believed (never adopted; dropped from the store).
    pub rejected: Vec<RoomProblem>,
}

/// The deterministic chat id of a legacy room: the same room always gets the same id.
pub fn legacy_chat_id(room_id: &str) -> String {
    let digest = Sha256::digest(room_id.as_bytes());
    let hex = crate::hex::lower(&digest);
    format!("{LEGACY_CHAT_ID_PREFIX}{}", &hex[..LEGACY_HASH_HEX])
}

/// Plans the reconciliation of `facts` (the joined chats walked) of messenger `surface`,
/// whose bot is `bot`, with the store's records of that messenger. `joined` is the set of
/// every joined chat id. Only state the bot wrote is believed ([`trust`]).
/// A person's choice of agent kept in their home wins over the store's; a home without one
/// leaves the store's as it is.
pub fn plan(
    surface: &str,
    bot: &str,
    facts: &[RoomFacts],
    joined: &HashSet<String>,
    known_rooms: &[RoomRecord],
    known_users: &[UserRecord],
    default_agent: &str,
) -> Plan {
    let mut out = Plan::default();
    let rooms_by_id: HashMap<&str, &RoomRecord> = known_rooms
        .iter()
        .map(|r| (r.room_id.as_str(), r))
        .collect();
    let mut users: BTreeMap<String, UserRecord> = known_users
        .iter()
        .map(|u| (u.user_id.clone(), u.clone()))
        .collect();

    // Spaces first: they name owners of legacy rooms.
    let mut space_owner: HashMap<&str, &str> = HashMap::new();
    let mut spaces: Vec<&RoomFacts> = facts.iter().filter(|f| f.space_owner.is_some()).collect();
    spaces.sort_by(|a, b| a.room_id.cmp(&b.room_id));
    for fact in spaces {
        let Some(owner) = fact.space_owner.as_deref() else {
            continue;
        };
        if let Err(reason) = trust::vet_home(fact, owner, bot) {
            out.rejected.push(RoomProblem::new(&fact.room_id, reason));
            continue;
        }
        space_owner.insert(fact.room_id.as_str(), owner);
        let user = users
            .entry(owner.to_owned())
            .or_insert_with(|| UserRecord::new(owner));
        if let Some(selected) = &fact.space_prefs.selected_agent {
            if user.selected_agent.as_ref() != Some(selected) {
                if let Some(old) = &user.selected_agent {
                    out.conflicts.push(Conflict {
                        subject: owner.to_owned(),
                        field: "selected_agent",
                        store: old.clone(),
                        matrix: selected.clone(),
                    });
                }
                user.selected_agent = Some(selected.clone());
            }
        }
        match &user.space_id {
            Some(existing) if existing == &fact.room_id => {}
            Some(existing) if joined.contains(existing) => {
                // Two Spaces for one owner: keep the one the store knew, report the other.
                out.conflicts.push(Conflict {
                    subject: owner.to_owned(),
                    field: "space_id",
                    store: existing.clone(),
                    matrix: fact.room_id.clone(),
                });
            }
            other => {
                if let Some(old) = other {
                    out.conflicts.push(Conflict {
                        subject: owner.to_owned(),
                        field: "space_id",
                        store: old.clone(),
                        matrix: fact.room_id.clone(),
                    });
                }
                user.space_id = Some(fact.room_id.clone());
            }
        }
    }

    // Chat rooms: bound ones, then legacy ones (a child of a managed Space, no binding).
    let mut bound: Vec<Candidate> = Vec::new();
    let mut legacy: Vec<(&RoomFacts, &str)> = Vec::new();
    for fact in facts {
        match (
            &fact.binding,
            fact.parent.as_deref().and_then(|p| space_owner.get(p)),
        ) {
            (Some(binding), _) => {
                if let Err(reason) = trust::vet_chat(fact, binding, bot) {
                    out.rejected.push(RoomProblem::new(&fact.room_id, reason));
                    continue;
                }
                let mut binding = binding.clone();
                let write_back = binding.platform_chat_id.trim().is_empty();
                if write_back {
                    binding.platform_chat_id = legacy_chat_id(&fact.room_id);
                }
                bound.push(Candidate {
                    fact,
                    binding,
                    write_back,
                });
            }
            (None, Some(owner)) if fact.space_owner.is_none() => {
                match trust::vet_legacy(fact, owner, bot) {
                    Ok(()) => legacy.push((fact, owner)),
                    Err(reason) => out.rejected.push(RoomProblem::new(&fact.room_id, reason)),
                }
            }
            _ => {}
        }
    }
    let bound = one_room_per_chat_id(bound, facts, known_rooms, joined, &mut out.rejected);
    let mut max_index: HashMap<String, u32> = HashMap::new();
    let mut chat_rooms: Vec<RoomRecord> = Vec::new();
    for Candidate {
        fact,
        binding,
        write_back,
    } in bound
    {
        if write_back {
            out.write_back.push((fact.room_id.clone(), binding.clone()));
        }
        let idx = max_index.entry(binding.owner.clone()).or_insert(0);
        *idx = (*idx).max(binding.chat_index);
        chat_rooms.push(record_from(
            surface,
            fact,
            &binding,
            rooms_by_id.get(fact.room_id.as_str()),
        ));
    }
    legacy.sort_by(|a, b| a.0.room_id.cmp(&b.0.room_id));
    for (fact, owner) in legacy {
        let known = rooms_by_id.get(fact.room_id.as_str());
        let idx = max_index.entry(owner.to_owned()).or_insert(0);
        *idx = idx.saturating_add(1);
        let binding = Binding {
            agent_id: known.map_or_else(|| default_agent.to_owned(), |r| r.agent_id.clone()),
            platform_chat_id: legacy_chat_id(&fact.room_id),
            owner: owner.to_owned(),
            chat_index: *idx,
            archived: false,
        };
        out.write_back.push((fact.room_id.clone(), binding.clone()));
        chat_rooms.push(record_from(surface, fact, &binding, known));
    }

    for record in chat_rooms {
        if let Some(known) = rooms_by_id.get(record.room_id.as_str()) {
            let fields: [(&'static str, String, String); 5] = [
                ("agent_id", known.agent_id.clone(), record.agent_id.clone()),
                (
                    "platform_chat_id",
                    known.platform_chat_id.clone(),
                    record.platform_chat_id.clone(),
                ),
                ("owner", known.owner.clone(), record.owner.clone()),
                (
                    "chat_index",
                    known.chat_index.to_string(),
                    record.chat_index.to_string(),
                ),
                (
                    "archived",
                    known.archived.to_string(),
                    record.archived.to_string(),
                ),
            ];
            for (field, store, matrix) in fields {
                if store != matrix {
                    out.conflicts.push(Conflict {
                        subject: record.room_id.clone(),
                        field,
                        store,
                        matrix,
                    });
                }
            }
            if *known == &record {
                continue;
            }
        }
        if let Some(seq) = chat_seq_of(&record.platform_chat_id) {
            out.chat_seq_at_least = out.chat_seq_at_least.max(seq);
        }
        out.rooms.push(record);
    }
    let rejected: HashSet<&str> = out.rejected.iter().map(|r| r.room_id.as_str()).collect();
    let mut remove = Vec::new();
    for known in known_rooms {
        if let Some(seq) = chat_seq_of(&known.platform_chat_id) {
            out.chat_seq_at_least = out.chat_seq_at_least.max(seq);
        }
        if !joined.contains(&known.room_id) || rejected.contains(known.room_id.as_str()) {
            remove.push(known.room_id.clone());
        }
    }
    out.remove = remove;

    for (owner, idx) in max_index {
        let user = users
            .entry(owner.clone())
            .or_insert_with(|| UserRecord::new(&owner));
        if user.next_chat_index <= idx {
            user.next_chat_index = idx.saturating_add(1);
        }
    }
    for user in users.into_values() {
        if known_users.iter().all(|k| k != &user) {
            out.users.push(user);
        }
    }
    out
}

/// A bound chat whose binding was believed.
struct Candidate<'a> {
    fact: &'a RoomFacts,
    binding: Binding,
    write_back: bool,
}

/// Keeps at most one room per chat id: a room the store knows and that was not walked (its
/// state was not read again) keeps its id; else the walked room the store knew with it;
/// else the lowest room id. The others are rejected.
fn one_room_per_chat_id<'a>(
    candidates: Vec<Candidate<'a>>,
    facts: &[RoomFacts],
    known_rooms: &[RoomRecord],
    joined: &HashSet<String>,
    rejected: &mut Vec<RoomProblem>,
) -> Vec<Candidate<'a>> {
    let walked: HashSet<&str> = facts.iter().map(|f| f.room_id.as_str()).collect();
    let mut held: HashMap<&str, &str> = HashMap::new();
    for known in known_rooms {
        if joined.contains(&known.room_id) && !walked.contains(known.room_id.as_str()) {
            held.entry(known.platform_chat_id.as_str())
                .or_insert(known.room_id.as_str());
        }
    }
    let store_had = |room: &str, chat_id: &str| {
        known_rooms
            .iter()
            .any(|k| k.room_id == room && k.platform_chat_id == chat_id)
    };
    let mut by_id: BTreeMap<String, Vec<Candidate<'a>>> = BTreeMap::new();
    for candidate in candidates {
        by_id
            .entry(candidate.binding.platform_chat_id.clone())
            .or_default()
            .push(candidate);
    }
    let mut kept = Vec::new();
    for (chat_id, mut group) in by_id {
        group.sort_by(|a, b| {
            let (a_known, b_known) = (
                store_had(&a.fact.room_id, &chat_id),
                store_had(&b.fact.room_id, &chat_id),
            );
            b_known
                .cmp(&a_known)
                .then_with(|| a.fact.room_id.cmp(&b.fact.room_id))
        });
        let mut group = group.into_iter();
        let holder = match held.get(chat_id.as_str()) {
            Some(room) => (*room).to_owned(),
            None => match group.next() {
                Some(first) => {
                    let room = first.fact.room_id.clone();
                    kept.push(first);
                    room
                }
                None => continue,
            },
        };
        for other in group {
            rejected.push(RoomProblem::new(
                &other.fact.room_id,
                Distrust::ChatIdTaken(holder.clone()),
            ));
        }
    }
    kept
}

fn record_from(
    surface: &str,
    fact: &RoomFacts,
    binding: &Binding,
    known: Option<&&RoomRecord>,
) -> RoomRecord {
    RoomRecord {
        room_id: fact.room_id.clone(),
        surface: surface.to_owned(),
        owner: binding.owner.clone(),
        agent_id: binding.agent_id.clone(),
        platform_chat_id: binding.platform_chat_id.clone(),
        chat_index: binding.chat_index,
        archived: binding.archived,
        name: fact
            .name
            .clone()
            .or_else(|| known.and_then(|k| k.name.clone())),
    }
}

/// What a reconciliation did, for the log and operators.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    /// Joined rooms in all.
    pub joined: usize,
    /// Rooms walked (read from Matrix state).
    pub walked: usize,
    /// Room records written.
    pub rooms_written: usize,
    /// User records written.
    pub users_written: usize,
    /// Rooms dropped from the store.
    pub removed: usize,
    /// Bindings written back to Matrix.
    pub written_back: usize,
    /// Disagreements found (Matrix won).
    pub conflicts: Vec<Conflict>,
    /// Rooms whose state was not believed (not adopted).
    pub rejected: Vec<RoomProblem>,
    /// Rooms that could not be read or written back (the rest carried on).
    pub failed: Vec<RoomProblem>,
    /// How long it took.
    pub elapsed: Duration,
}

/// Store key marking that a full reconciliation completed once.
const RECONCILED_MARK: &str = "reconciled";

/// How the reason of a room whose state could not be read starts.
const UNREADABLE: &str = "cannot read its state";

/// A room whose state could not be read, logged and reported.
fn unreadable(chat: &ChatId, error: &crate::surface::SurfaceError) -> RoomProblem {
    tracing::error!(room_id = %chat, %error, "cannot read a room's state; carrying on without it");
    RoomProblem::new(chat.as_str(), format!("{UNREADABLE}: {error}"))
}

/// Reconciles the store with the client's view of Matrix (after the first sync).
pub async fn reconcile(
    surface: &dyn Surface,
    store: &Store,
    default_agent: &str,
    full: bool,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let name = surface.name();
    let known_rooms: Vec<RoomRecord> = store
        .rooms()?
        .into_iter()
        .filter(|r| r.surface == name)
        .collect();
    let known_users = store.users()?;
    let joined_chats = surface.chats().await?;
    let joined: HashSet<String> = joined_chats.iter().map(ToString::to_string).collect();
    let mark = format!("{RECONCILED_MARK}:{name}");
    let walk_all = full
        || !(store.flag(&mark)?
            || (name == crate::store::DEFAULT_SURFACE && store.flag(RECONCILED_MARK)?))
        || known_rooms.is_empty();
    let known_ids: HashSet<&str> = known_rooms.iter().map(|r| r.room_id.as_str()).collect();
    let known_spaces: HashSet<&str> = known_users
        .iter()
        .filter_map(|u| u.space_id.as_deref())
        .collect();
    let mut failed: Vec<RoomProblem> = Vec::new();
    let mut facts: Vec<RoomFacts> = Vec::new();
    for chat in &joined_chats {
        let id = chat.as_str();
        if !walk_all && (known_ids.contains(id) || known_spaces.contains(id)) {
            continue;
        }
        match surface.chat_facts(chat).await {
            Ok(fact) => facts.push(fact.into()),
            Err(error) => failed.push(unreadable(chat, &error)),
        }
    }
    if !walk_all && facts.iter().any(|f| f.parent.is_some()) {
        for chat in &joined_chats {
            if known_spaces.contains(chat.as_str()) {
                match surface.chat_facts(chat).await {
                    Ok(fact) => {
                        let mut home: RoomFacts = fact.into();
                        home.binding = None;
                        home.parent = None;
                        facts.push(home);
                    }
                    Err(error) => failed.push(unreadable(chat, &error)),
                }
            }
        }
    }
    let bot = surface.bot().to_string();
    let plan = plan(
        name,
        &bot,
        &facts,
        &joined,
        &known_rooms,
        &known_users,
        default_agent,
    );

    for rejected in &plan.rejected {
        tracing::warn!(room_id = %rejected.room_id, reason = %rejected.reason,
            "not adopting a room: its state was not written by the bot as the bot writes it");
    }
    let mut written_back = 0;
    for (room_id, binding) in &plan.write_back {
        let chat = ChatId::new(room_id.as_str());
        if !joined_chats.contains(&chat) {
            continue;
        }
        // One room the bot cannot write (no power, malformed state) must not stop the bot:
        // it is adopted as read (its id is deterministic) and reported; the rest carries on.
        match surface.set_binding(&chat, binding).await {
            Ok(()) => {
                written_back += 1;
                tracing::info!(room_id = %room_id, chat_id = %binding.platform_chat_id,
                    "wrote a binding back to a legacy room");
            }
            Err(error) => {
                tracing::error!(room_id = %room_id, %error,
                    "cannot write a binding back to a legacy room; carrying on without it");
                failed.push(RoomProblem::new(
                    room_id,
                    format!("cannot write its binding back: {error}"),
                ));
            }
        }
    }
    for conflict in &plan.conflicts {
        tracing::warn!(subject = %conflict.subject, field = conflict.field,
            store = %conflict.store, matrix = %conflict.matrix,
            "store and the messenger disagree; the messenger wins");
    }
    store.apply(&plan.rooms, &plan.users, &plan.remove).await?;
    store
        .ensure_chat_seq_at_least(plan.chat_seq_at_least)
        .await?;
    if walk_all && failed.iter().all(|f| !f.reason.starts_with(UNREADABLE)) {
        store.set_flag(&mark).await?;
    }
    Ok(Report {
        joined: joined.len(),
        walked: facts.len(),
        rooms_written: plan.rooms.len(),
        users_written: plan.users.len(),
        removed: plan.remove.len(),
        written_back,
        conflicts: plan.conflicts,
        rejected: plan.rejected,
        failed,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(owner: &str, chat: &str, index: u32) -> Binding {
        Binding {
            agent_id: "echo".into(),
            platform_chat_id: chat.into(),
            owner: owner.into(),
            chat_index: index,
            archived: false,
        }
    }

    const BOT: &str = "@bot:x";

    fn chat(room: &str, b: Binding, parent: Option<&str>) -> RoomFacts {
        RoomFacts {
            room_id: room.into(),
            name: Some(format!("name of {room}")),
            members: vec![BOT.into(), b.owner.clone()],
            binding: Some(b),
            parent: parent.map(Into::into),
            creator: Some(BOT.into()),
            binding_sender: Some(BOT.into()),
            parent_sender: parent.map(|_| BOT.into()),
            ..RoomFacts::default()
        }
    }

    fn space(room: &str, owner: &str) -> RoomFacts {
        RoomFacts {
            room_id: room.into(),
            space_owner: Some(owner.into()),
            creator: Some(BOT.into()),
            space_sender: Some(BOT.into()),
            members: vec![BOT.into(), owner.into()],
            ..RoomFacts::default()
        }
    }

    fn legacy_child(room: &str, owner: &str, parent: &str) -> RoomFacts {
        RoomFacts {
            room_id: room.into(),
            parent: Some(parent.into()),
            parent_sender: Some(BOT.into()),
            creator: Some(BOT.into()),
            members: vec![BOT.into(), owner.into()],
            ..RoomFacts::default()
        }
    }

    fn record(room: &str, b: &Binding) -> RoomRecord {
        RoomRecord {
            room_id: room.into(),
            surface: "matrix".into(),
            owner: b.owner.clone(),
            agent_id: b.agent_id.clone(),
            platform_chat_id: b.platform_chat_id.clone(),
            chat_index: b.chat_index,
            archived: b.archived,
            name: Some(format!("name of {room}")),
        }
    }

    fn joined(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn empty_store_is_rebuilt_from_matrix() {
        let facts = vec![
            space("!s", "@a:x"),
            chat("!c1", binding("@a:x", "sfc-3", 1), Some("!s")),
            chat("!c2", binding("@a:x", "sfc-7", 2), Some("!s")),
        ];
        let p = plan(
            "matrix",
            BOT,
            &facts,
            &joined(&["!s", "!c1", "!c2"]),
            &[],
            &[],
            "echo",
        );
        assert_eq!(p.rooms.len(), 2);
        assert_eq!(p.users.len(), 1);
        assert_eq!(p.users[0].space_id.as_deref(), Some("!s"));
        assert_eq!(p.users[0].next_chat_index, 3);
        assert_eq!(p.chat_seq_at_least, 7, "no id is minted twice");
        assert!(p.conflicts.is_empty() && p.remove.is_empty() && p.write_back.is_empty());
    }

    #[test]
    fn matrix_wins_conflicts_and_left_rooms_are_dropped() {
        let truth = binding("@a:x", "sfc-9", 1);
        let mut stale = truth.clone();
        stale.platform_chat_id = "sfc-2".into();
        stale.agent_id = "old".into();
        let known = vec![
            record("!c1", &stale),
            record("!gone", &binding("@a:x", "sfc-4", 2)),
        ];
        let facts = vec![space("!s", "@a:x"), chat("!c1", truth.clone(), Some("!s"))];
        let p = plan(
            "matrix",
            BOT,
            &facts,
            &joined(&["!s", "!c1"]),
            &known,
            &[],
            "echo",
        );
        assert_eq!(p.rooms, vec![record("!c1", &truth)]);
        let fields: Vec<&str> = p.conflicts.iter().map(|c| c.field).collect();
        assert_eq!(fields, vec!["agent_id", "platform_chat_id"]);
        assert_eq!(p.remove, vec!["!gone".to_owned()]);
        assert_eq!(p.chat_seq_at_least, 9);
    }

    #[test]
    fn agreeing_records_are_not_rewritten() {
        let b = binding("@a:x", "sfc-1", 1);
        let mut user = UserRecord::new("@a:x");
        user.space_id = Some("!s".into());
        user.next_chat_index = 2;
        let p = plan(
            "matrix",
            BOT,
            &[space("!s", "@a:x"), chat("!c", b.clone(), Some("!s"))],
            &joined(&["!s", "!c"]),
            &[record("!c", &b)],
            &[user],
            "echo",
        );
        assert!(p.rooms.is_empty() && p.users.is_empty() && p.conflicts.is_empty());
    }

    #[test]
    fn legacy_rooms_get_deterministic_ids_written_back() {
        // A binding without a chat id, and a Space child without any binding.
        let facts = vec![
            space("!s", "@a:x"),
            chat("!old", binding("@a:x", "", 1), Some("!s")),
            legacy_child("!older", "@a:x", "!s"),
        ];
        let planned = || {
            plan(
                "matrix",
                BOT,
                &facts,
                &joined(&["!s", "!old", "!older"]),
                &[],
                &[],
                "echo",
            )
        };
        let (p1, p2) = (planned(), planned());
        assert_eq!(p1.write_back, p2.write_back, "same rooms, same ids");
        assert_eq!(p1.write_back.len(), 2);
        let ids: Vec<&str> = p1
            .write_back
            .iter()
            .map(|(_, b)| b.platform_chat_id.as_str())
            .collect();
        assert_eq!(ids, vec![legacy_chat_id("!old"), legacy_chat_id("!older")]);
        assert_ne!(ids[0], ids[1]);
        assert!(ids.iter().all(|id| id.starts_with(LEGACY_CHAT_ID_PREFIX)));
        let older = p1.write_back.iter().find(|(r, _)| r == "!older").unwrap();
        assert_eq!(older.1.owner, "@a:x");
        assert_eq!(older.1.chat_index, 2, "after the owner's highest index");
        assert_eq!(older.1.agent_id, "echo");
        // Legacy ids are not sequence numbers: the counter is untouched by them.
        assert_eq!(p1.chat_seq_at_least, 0);
    }

    #[test]
    fn the_agent_a_person_chose_comes_back_from_their_home() {
        let mut home = space("!s", "@a:x");
        home.space_prefs.selected_agent = Some("coder".into());
        let p = plan(
            "matrix",
            BOT,
            &[home.clone()],
            &joined(&["!s"]),
            &[],
            &[],
            "echo",
        );
        assert_eq!(p.users[0].selected_agent.as_deref(), Some("coder"));
        assert!(p.conflicts.is_empty());

        // The home wins over a different choice in the store (and says so) ...
        let mut user = UserRecord::new("@a:x");
        user.space_id = Some("!s".into());
        user.selected_agent = Some("echo".into());
        let p = plan(
            "matrix",
            BOT,
            &[home],
            &joined(&["!s"]),
            &[],
            &[user.clone()],
            "echo",
        );
        assert_eq!(p.users[0].selected_agent.as_deref(), Some("coder"));
        assert_eq!(p.conflicts[0].field, "selected_agent");

        // ... while a home without a choice leaves the store's as it is.
        let p = plan(
            "matrix",
            BOT,
            &[space("!s", "@a:x")],
            &joined(&["!s"]),
            &[],
            &[user],
            "echo",
        );
        assert!(p.users.is_empty(), "{p:?}");
    }

    #[test]
    fn other_rooms_are_ignored_and_chat_seq_parsing_is_strict() {
        let facts = vec![RoomFacts {
            room_id: "!dm".into(),
            ..RoomFacts::default()
        }];
        let p = plan("matrix", BOT, &facts, &joined(&["!dm"]), &[], &[], "echo");
        assert_eq!(p, Plan::default());
        assert_eq!(chat_seq_of("sfc-12"), Some(12));
        assert_eq!(chat_seq_of("sfc-r12"), None);
    }

    fn forged(room: &str, by: &str, b: Binding) -> RoomFacts {
        RoomFacts {
            room_id: room.into(),
            members: vec![BOT.into(), by.into(), b.owner.clone()],
            binding: Some(b),
            creator: Some(by.into()),
            binding_sender: Some(by.into()),
            ..RoomFacts::default()
        }
    }

    fn rejected(p: &Plan) -> Vec<(&str, &str)> {
        p.rejected
            .iter()
            .map(|r| (r.room_id.as_str(), r.reason.as_str()))
            .collect()
    }

    #[test]
    fn only_what_the_bot_wrote_is_adopted() {
        let victim = binding("@v:x", "sfc-3", 1);
        // Mallory's own room, bound by her to Victor's chat id; a home marker she wrote; a
        // room linked by her into Victor's home; Victor's real chat and home.
        let cases: Vec<(&str, RoomFacts, &str)> = vec![
            (
                "bound by another",
                forged("!f", "@m:x", victim.clone()),
                "not written by the bot",
            ),
            (
                "a room another made",
                {
                    let mut f = forged("!f", "@m:x", victim.clone());
                    f.binding_sender = Some(BOT.into());
                    f
                },
                "not created by the bot",
            ),
            (
                "owner not a member",
                {
                    let mut f = chat("!f", victim.clone(), None);
                    f.members = vec![BOT.into(), "@m:x".into()];
                    f
                },
                "not a member",
            ),
            (
                "forged home",
                {
                    let mut h = space("!f", "@v:x");
                    h.space_sender = Some("@v:x".into());
                    h
                },
                "home marker was not written by the bot",
            ),
            (
                "forged link to a home",
                {
                    let mut l = legacy_child("!f", "@v:x", "!s");
                    l.parent_sender = Some("@m:x".into());
                    l
                },
                "link to a home was not written by the bot",
            ),
            (
                "out-of-range chat id",
                chat("!f", binding("@v:x", "sfc-18446744073709551615", 2), None),
                "could have minted",
            ),
            (
                "out-of-range index",
                chat("!f", binding("@v:x", "sfc-9", u32::MAX), None),
                "out of range",
            ),
        ];
        for (name, bad, reason) in cases {
            for store_lost in [true, false] {
                let mut user = UserRecord::new("@v:x");
                user.space_id = Some("!s".into());
                user.next_chat_index = 2;
                let known_rooms = if store_lost {
                    vec![]
                } else {
                    vec![record("!c", &victim)]
                };
                let known_users = if store_lost { vec![] } else { vec![user] };
                // With an intact store only the unknown room is walked.
                let mut facts = vec![bad.clone()];
                if store_lost || bad.parent.is_some() {
                    facts.push(space("!s", "@v:x"));
                }
                if store_lost {
                    facts.push(chat("!c", victim.clone(), Some("!s")));
                }
                let p = plan(
                    "matrix",
                    BOT,
                    &facts,
                    &joined(&["!s", "!c", "!f"]),
                    &known_rooms,
                    &known_users,
                    "echo",
                );
                let got = rejected(&p);
                assert_eq!(got.len(), 1, "{name}: {got:?}");
                assert_eq!(got[0].0, "!f", "{name}");
                assert!(got[0].1.contains(reason), "{name}: {}", got[0].1);
                assert!(p.rooms.iter().all(|r| r.room_id != "!f"), "{name}: adopted");
                assert!(p.write_back.iter().all(|(r, _)| r != "!f"), "{name}");
                assert!(p.conflicts.is_empty(), "{name}: {:?}", p.conflicts);
                assert!(p.chat_seq_at_least <= 3, "{name}: counter moved");
                assert!(
                    p.users
                        .iter()
                        .all(|u| u.next_chat_index == 2 && u.space_id.as_deref() == Some("!s")),
                    "{name}: {:?}",
                    p.users
                );
                if store_lost {
                    assert_eq!(p.rooms, vec![record("!c", &victim)], "{name}");
                } else {
                    assert!(p.rooms.is_empty(), "{name}: {:?}", p.rooms);
                }
            }
        }
    }

    #[test]
    fn a_rejected_room_the_store_knew_is_dropped() {
        let victim = binding("@v:x", "sfc-3", 1);
        let p = plan(
            "matrix",
            BOT,
            &[forged("!f", "@m:x", victim.clone())],
            &joined(&["!c", "!f"]),
            &[record("!c", &victim), record("!f", &victim)],
            &[],
            "echo",
        );
        assert_eq!(p.remove, vec!["!f".to_owned()]);
        assert!(p.rooms.is_empty());
    }

    #[test]
    fn one_chat_id_one_room() {
        let a = binding("@a:x", "sfc-5", 1);
        let twins = vec![chat("!b", a.clone(), None), chat("!a", a.clone(), None)];
        // Store lost: the lowest room id keeps it, the other is reported.
        let p = plan(
            "matrix",
            BOT,
            &twins,
            &joined(&["!a", "!b"]),
            &[],
            &[],
            "echo",
        );
        assert_eq!(
            p.rooms
                .iter()
                .map(|r| r.room_id.as_str())
                .collect::<Vec<_>>(),
            vec!["!a"]
        );
        assert_eq!(
            rejected(&p),
            vec![("!b", "another room (!a) holds the same chat id")]
        );
        // The room the store knew with that id keeps it, walked or not.
        let p = plan(
            "matrix",
            BOT,
            &twins,
            &joined(&["!a", "!b"]),
            &[record("!b", &a)],
            &[],
            "echo",
        );
        assert_eq!(
            rejected(&p),
            vec![("!a", "another room (!b) holds the same chat id")]
        );
        let p = plan(
            "matrix",
            BOT,
            &[chat("!a", a.clone(), None)],
            &joined(&["!a", "!b"]),
            &[record("!b", &a)],
            &[],
            "echo",
        );
        assert_eq!(
            rejected(&p),
            vec![("!a", "another room (!b) holds the same chat id")]
        );
        assert!(p.rooms.is_empty());
    }

    #[test]
    fn forged_numbers_neither_move_nor_overflow_the_counters() {
        // Legacy rooms after the highest index the bot could have given: no overflow.
        let top = binding("@a:x", "sfc-2", MAX_CHAT_INDEX);
        let facts = vec![
            space("!s", "@a:x"),
            chat("!c", top, Some("!s")),
            legacy_child("!l", "@a:x", "!s"),
        ];
        let p = plan(
            "matrix",
            BOT,
            &facts,
            &joined(&["!s", "!c", "!l"]),
            &[],
            &[],
            "echo",
        );
        assert_eq!(p.users[0].next_chat_index, MAX_CHAT_INDEX + 2);
        // A store that holds a forged id (adopted by an older version) does not move it.
        let bad = binding("@a:x", "sfc-18446744073709551615", 1);
        let known = vec![record("!x", &bad)];
        let p = plan("matrix", BOT, &[], &joined(&["!x"]), &known, &[], "echo");
        assert_eq!(p.chat_seq_at_least, 0);
    }
}
