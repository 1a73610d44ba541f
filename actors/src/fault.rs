//! Fault injection: break any one supervised actor on purpose (feature `fault-injection`).
//!
//! Without the feature this module is not compiled and no hook exists on the hot path.
//! A fault targets one actor by id or every actor of a kind; [`FaultTable::inject`]
//! returns a [`FaultGuard`] that removes the fault when dropped. Hooks run inside the
//! supervised actor: on each message (see `envelope`) and at each incarnation's start.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::id::ActorId;

/// Which actors a fault hits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultTarget {
    /// Exactly this actor.
    Id(ActorId),
    /// Every actor of this kind (`room`, `agent`).
    Kind(String),
}

impl FaultTarget {
    fn matches(&self, id: &ActorId) -> bool {
        match self {
            FaultTarget::Id(target) => target == id,
            FaultTarget::Kind(kind) => id.kind() == kind,
        }
    }
}

/// What goes wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Panic while handling the `nth` matching message (1 = the next one), once.
    /// `message_type` restricts matching to messages whose Rust type name ends with it
    /// (e.g. `"UserMessage"`); `None` matches every message.
    Panic {
        /// Which matching message panics, from 1.
        nth: u32,
        /// Suffix of the message type name to match, if any.
        message_type: Option<String>,
    },
    /// Stop the actor (a normal stop) on the next message, once; that message gets no reply.
    Stop,
    /// Every message gets an error instead of being handled, while the fault lasts.
    ReturnError,
    /// Every message waits this long before being handled (an async wait: the thread and
    /// the other actors on it keep running; this actor handles nothing meanwhile).
    Delay(Duration),
    /// Every message is swallowed and never answered, while the fault lasts.
    Hang,
    /// The next `times` incarnations fail as they start.
    FailStart {
        /// How many starts fail.
        times: u32,
    },
}

/// What a message hook tells the envelope to do.
#[derive(Debug)]
pub(crate) enum MessageFault {
    Panic(String),
    Stop,
    ReturnError,
    Delay(Duration),
    Hang,
}

struct Entry {
    key: u64,
    target: FaultTarget,
    fault: Fault,
    /// Matching messages seen (for `Panic`), or starts failed (for `FailStart`).
    count: u32,
    spent: bool,
}

/// The active faults of one supervision tree.
#[derive(Default)]
pub struct FaultTable {
    /// Entries not yet spent: the hot path reads only this while it is zero.
    active: AtomicUsize,
    next_key: AtomicU64,
    entries: Mutex<Vec<Entry>>,
}

/// Removes its fault when dropped.
#[must_use = "the fault is removed as soon as the guard is dropped"]
pub struct FaultGuard {
    table: Weak<FaultTable>,
    key: u64,
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        if let Some(table) = self.table.upgrade() {
            table.remove(self.key);
        }
    }
}

impl FaultTable {
    /// Activates a fault until the returned guard is dropped.
    pub fn inject(self: &Arc<Self>, target: FaultTarget, fault: Fault) -> FaultGuard {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(?target, ?fault, "fault injected");
        self.entries.lock().push(Entry {
            key,
            target,
            fault,
            count: 0,
            spent: false,
        });
        self.active.fetch_add(1, Ordering::AcqRel);
        FaultGuard {
            table: Arc::downgrade(self),
            key,
        }
    }

    /// Removes every fault (guards already handed out become no-ops).
    pub fn clear(&self) {
        let mut entries = self.entries.lock();
        let live = entries.iter().filter(|e| !e.spent).count();
        entries.clear();
        self.active.fetch_sub(live, Ordering::AcqRel);
    }

    fn remove(&self, key: u64) {
        let mut entries = self.entries.lock();
        if let Some(pos) = entries.iter().position(|e| e.key == key) {
            let entry = entries.remove(pos);
            if !entry.spent {
                self.active.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    fn spend(&self, entry: &mut Entry) {
        entry.spent = true;
        self.active.fetch_sub(1, Ordering::AcqRel);
    }

    /// The hook run before a message of type `type_name` is handled by `id`.
    pub(crate) fn on_message(&self, id: &ActorId, type_name: &str) -> Option<MessageFault> {
        if self.active.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut entries = self.entries.lock();
        for entry in entries.iter_mut() {
            if entry.spent || !entry.target.matches(id) {
                continue;
            }
            let action = match &entry.fault {
                Fault::Panic { nth, message_type } => {
                    if message_type
                        .as_deref()
                        .is_some_and(|suffix| !type_name.ends_with(suffix))
                    {
                        continue;
                    }
                    entry.count += 1;
                    if entry.count < *nth {
                        continue;
                    }
                    let message = format!(
                        "injected fault: panic on message {} ({type_name}) in {id}",
                        entry.count
                    );
                    self.spend(entry);
                    MessageFault::Panic(message)
                }
                Fault::Stop => {
                    self.spend(entry);
                    MessageFault::Stop
                }
                Fault::ReturnError => MessageFault::ReturnError,
                Fault::Delay(d) => MessageFault::Delay(*d),
                Fault::Hang => MessageFault::Hang,
                Fault::FailStart { .. } => continue,
            };
            return Some(action);
        }
        None
    }

    /// The hook run as an incarnation of `id` starts: true if it must fail.
    pub(crate) fn on_start(&self, id: &ActorId) -> bool {
        if self.active.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut entries = self.entries.lock();
        for entry in entries.iter_mut() {
            if entry.spent || !entry.target.matches(id) {
                continue;
            }
            if let Fault::FailStart { times } = entry.fault {
                entry.count += 1;
                if entry.count >= times {
                    self.spend(entry);
                }
                return entry.count <= times;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_on_nth_matching_message_once() {
        let table = Arc::new(FaultTable::default());
        let id = ActorId::new("room", "a");
        let _g = table.inject(
            FaultTarget::Id(id.clone()),
            Fault::Panic {
                nth: 2,
                message_type: Some("Ping".into()),
            },
        );
        assert!(table.on_message(&id, "x::Pong").is_none());
        assert!(table.on_message(&id, "x::Ping").is_none());
        assert!(matches!(
            table.on_message(&id, "x::Ping"),
            Some(MessageFault::Panic(_))
        ));
        assert!(table.on_message(&id, "x::Ping").is_none(), "fires once");
        assert_eq!(table.active.load(Ordering::Acquire), 0);
    }

    #[test]
    fn guard_removes_and_targets_are_exact() {
        let table = Arc::new(FaultTable::default());
        let a = ActorId::new("room", "a");
        let b = ActorId::new("room", "b");
        let guard = table.inject(FaultTarget::Id(a.clone()), Fault::ReturnError);
        assert!(table.on_message(&b, "M").is_none());
        assert!(matches!(
            table.on_message(&a, "M"),
            Some(MessageFault::ReturnError)
        ));
        drop(guard);
        assert!(table.on_message(&a, "M").is_none());
        let _k = table.inject(FaultTarget::Kind("room".into()), Fault::Hang);
        assert!(matches!(
            table.on_message(&b, "M"),
            Some(MessageFault::Hang)
        ));
        assert!(table
            .on_message(&ActorId::singleton("router"), "M")
            .is_none());
    }

    #[test]
    fn fail_start_counts_down() {
        let table = Arc::new(FaultTable::default());
        let id = ActorId::singleton("router");
        let _g = table.inject(FaultTarget::Id(id.clone()), Fault::FailStart { times: 2 });
        assert!(table.on_start(&id));
        assert!(table.on_start(&id));
        assert!(!table.on_start(&id));
    }
}
