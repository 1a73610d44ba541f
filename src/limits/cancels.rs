//! The bound on `!cancel` work. A `!cancel` runs at once, beside the busy room actor (it
//! must not wait behind the turn it cancels), so it is not bounded by the room's order:
//! without a gate, a flood of `!cancel` would be a flood of calls to the agents. At most one
//! runs per chat (a second one while the first is in flight adds nothing), and at most
//! `limits.max_concurrent_cancels` for everyone.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;

/// Why a `!cancel` was not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelRefusal {
    /// One is already in flight for this chat (its answer covers this one too).
    AlreadyCancelling,
    /// Too many are in flight for everyone.
    Busy,
}

/// The gate. Cloning shares it.
#[derive(Clone, Debug)]
pub struct CancelGate {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max: usize,
    chats: Mutex<HashSet<String>>,
}

/// A `!cancel` in flight: dropping it lets the next one in.
#[derive(Debug)]
pub struct CancelPermit {
    inner: Arc<Inner>,
    chat: String,
}

impl Drop for CancelPermit {
    fn drop(&mut self) {
        self.inner.chats.lock().remove(&self.chat);
    }
}

impl CancelGate {
    /// A gate letting `max` cancels run at once (at least one).
    pub fn new(max: usize) -> Self {
        CancelGate {
            inner: Arc::new(Inner {
                max: max.max(1),
                chats: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Lets a `!cancel` for `chat` in, or says why not.
    pub fn enter(&self, chat: &str) -> Result<CancelPermit, CancelRefusal> {
        let mut chats = self.inner.chats.lock();
        if chats.contains(chat) {
            return Err(CancelRefusal::AlreadyCancelling);
        }
        if chats.len() >= self.inner.max {
            return Err(CancelRefusal::Busy);
        }
        chats.insert(chat.to_owned());
        Ok(CancelPermit {
            inner: self.inner.clone(),
            chat: chat.to_owned(),
        })
    }

    /// Cancels in flight.
    pub fn in_flight(&self) -> usize {
        self.inner.chats.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cancel_per_chat_and_a_bound_for_everyone() {
        let gate = CancelGate::new(2);
        let a = gate.enter("!a").expect("first for a");
        assert_eq!(
            gate.enter("!a").err(),
            Some(CancelRefusal::AlreadyCancelling)
        );
        let b = gate.enter("!b").expect("first for b");
        assert_eq!(gate.enter("!c").err(), Some(CancelRefusal::Busy));
        assert_eq!(gate.in_flight(), 2);
        drop(a);
        let _a2 = gate.enter("!a").expect("a again once the first is done");
        drop(b);
        let _c = gate.enter("!c").expect("c once b is done");
        assert_eq!(gate.in_flight(), 2);
    }
}
