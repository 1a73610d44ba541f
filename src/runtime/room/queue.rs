//! A chat's queue: the messages waiting behind the turn that runs, kept by its room actor.
//!
//! Why this exists: the room actor answers one message at a time, and while it does, the
//! messages behind it must stay reachable — an edit of a waiting message replaces its text,
//! a withdrawal (Matrix: a redaction) takes it out — and bounded, so one person's flood
//! cannot grow a chat's memory without end. The actor's mailbox cannot do either, so the
//! actor moves every message into this queue at once and takes them out one by one.
//! Everything here is a pure decision (no I/O), table-tested; the actor carries out the
//! effects (journal, notices). The rules are documented in `docs/ARCHITECTURE.md`
//! ("Edits and redactions") and `docs/SECURITY.md`.

use std::collections::VecDeque;

use super::{UserFile, UserMessage};
use crate::journal::JournalEntry;
use crate::surface::{MessageId, PersonId};

/// A message waiting in a chat's queue.
#[derive(Clone, Debug)]
pub enum Queued {
    /// A text message that arrived in this run.
    Text(UserMessage),
    /// A text message left pending in the journal by an earlier run or incarnation.
    Resumed(JournalEntry),
    /// A file message.
    File(UserFile),
}

impl Queued {
    /// The message's id.
    pub fn id(&self) -> &str {
        match self {
            Queued::Text(msg) => msg.id.as_str(),
            Queued::Resumed(entry) => &entry.event_id,
            Queued::File(file) => file.id.as_str(),
        }
    }

    /// Who sent it.
    pub fn sender(&self) -> &str {
        match self {
            Queued::Text(msg) => msg.sender.as_str(),
            Queued::Resumed(entry) => &entry.sender,
            Queued::File(file) => file.sender.as_str(),
        }
    }

    /// Its text, for a text message.
    fn text_mut(&mut self) -> Option<&mut String> {
        match self {
            Queued::Text(msg) => Some(&mut msg.body),
            Queued::Resumed(entry) => Some(&mut entry.body),
            Queued::File(_) => None,
        }
    }
}

/// What became of a message offered to the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// It waits its turn.
    Taken,
    /// It already waits (a redelivery): nothing to do.
    Duplicate,
    /// The queue is full: it is not taken. `notify`: the first refusal of this burst (the
    /// chat is told once, not per message).
    Refused {
        /// Tell the chat.
        notify: bool,
    },
}

/// What became of a message offered to the queue ([`RoomQueue::offer`]), with the message
/// when it was not taken.
#[derive(Debug)]
pub enum Offered {
    /// It waits its turn.
    Taken,
    /// It already waits (a redelivery): nothing to do.
    Duplicate(Queued),
    /// The queue is full: it is not taken ([`Pushed::Refused`]).
    Refused {
        /// Tell the chat.
        notify: bool,
        /// The message.
        item: Queued,
    },
}

/// Why an edit or a withdrawal was not applied (logged at debug; nobody is answered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotApplied {
    /// The message is not waiting (answered, being answered, never seen, or withdrawn).
    NotQueued,
    /// Someone other than its sender asked.
    NotTheSender,
    /// The sender has a later message waiting: only their latest may be edited.
    NotTheLatest,
    /// It is a file: there is no text to replace.
    NotText,
}

/// A chat's waiting messages, oldest first, at most `max`.
#[derive(Debug)]
pub struct RoomQueue {
    items: VecDeque<Queued>,
    max: usize,
    /// A refusal was announced and the queue has not emptied since.
    refusing: bool,
}

impl RoomQueue {
    /// An empty queue holding at most `max` messages (at least one).
    pub fn new(max: usize) -> Self {
        Self {
            items: VecDeque::new(),
            max: max.max(1),
            refusing: false,
        }
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// What [`RoomQueue::offer`] decides, without the message (for the tables of tests).
    #[cfg(test)]
    pub fn push(&mut self, item: Queued) -> Pushed {
        match self.offer(item) {
            Offered::Taken => Pushed::Taken,
            Offered::Duplicate(_) => Pushed::Duplicate,
            Offered::Refused { notify, .. } => Pushed::Refused { notify },
        }
    }

    /// Offers a message that just arrived (see [`Pushed`] for what can become of it); the
    /// message comes back when it is not taken, so the caller need not keep a copy of every
    /// message for the rare refusal.
    pub fn offer(&mut self, item: Queued) -> Offered {
        if self.contains(item.id()) {
            return Offered::Duplicate(item);
        }
        if self.items.len() >= self.max {
            let notify = !self.refusing;
            self.refusing = true;
            return Offered::Refused { notify, item };
        }
        self.items.push_back(item);
        Offered::Taken
    }

    /// Queues a message accepted earlier (resumed from the journal): never refused.
    pub fn push_resumed(&mut self, item: Queued) -> Pushed {
        if self.contains(item.id()) {
            return Pushed::Duplicate;
        }
        self.items.push_back(item);
        Pushed::Taken
    }

    /// The next message to answer. When the queue empties, the burst is over: the next
    /// refusal is announced again.
    pub fn pop(&mut self) -> Option<Queued> {
        let next = self.items.pop_front();
        if self.items.is_empty() {
            self.refusing = false;
        }
        next
    }

    /// The next message to be answered.
    pub fn first(&self) -> Option<&Queued> {
        self.items.front()
    }

    /// Whether the message `id` waits.
    pub fn contains(&self, id: &str) -> bool {
        self.items.iter().any(|q| q.id() == id)
    }

    /// `sender` edits their message `of` to `text`: replaced only if it waits, is theirs,
    /// is text, and is their latest waiting message.
    pub fn edit(
        &mut self,
        of: &MessageId,
        sender: &PersonId,
        text: &str,
    ) -> Result<(), NotApplied> {
        let at = self.position_of(of, sender)?;
        let latest = self
            .items
            .iter()
            .rposition(|q| q.sender() == sender.as_str());
        if latest != Some(at) {
            return Err(NotApplied::NotTheLatest);
        }
        let body = self.items[at].text_mut().ok_or(NotApplied::NotText)?;
        text.clone_into(body);
        Ok(())
    }

    /// `sender` withdraws their message `of`: taken out if it waits and is theirs.
    pub fn withdraw(&mut self, of: &MessageId, sender: &PersonId) -> Result<Queued, NotApplied> {
        let at = self.position_of(of, sender)?;
        let removed = self.items.remove(at).ok_or(NotApplied::NotQueued)?;
        if self.items.is_empty() {
            self.refusing = false;
        }
        Ok(removed)
    }

    fn position_of(&self, of: &MessageId, sender: &PersonId) -> Result<usize, NotApplied> {
        let at = self
            .items
            .iter()
            .position(|q| q.id() == of.as_str())
            .ok_or(NotApplied::NotQueued)?;
        if self.items[at].sender() != sender.as_str() {
            return Err(NotApplied::NotTheSender);
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surface::{FileRef, IncomingFile};

    fn text(id: &str, sender: &str, body: &str) -> Queued {
        Queued::Text(UserMessage {
            id: MessageId::new(id),
            sender: PersonId::new(sender),
            display_name: None,
            body: body.to_owned(),
            arrival: None,
        })
    }

    fn file(id: &str, sender: &str) -> Queued {
        Queued::File(UserFile {
            id: MessageId::new(id),
            sender: PersonId::new(sender),
            display_name: None,
            file: IncomingFile {
                name: "a.txt".into(),
                mime: None,
                size: None,
                caption: None,
                source: FileRef("x".into()),
            },
        })
    }

    fn resumed(id: &str, sender: &str, body: &str) -> Queued {
        let entry = serde_json::json!({
            "seq": 1, "room_id": "!r", "event_id": id, "sender": sender, "body": body,
        });
        Queued::Resumed(serde_json::from_value(entry).unwrap())
    }

    fn bodies(queue: &RoomQueue) -> Vec<String> {
        queue
            .items
            .iter()
            .map(|q| match q {
                Queued::Text(m) => m.body.clone(),
                Queued::Resumed(e) => e.body.clone(),
                Queued::File(f) => format!("file {}", f.id),
            })
            .collect()
    }

    /// The queue with alice's $1, bob's $2, alice's $3, alice's file $4 (in that order).
    fn sample() -> RoomQueue {
        let mut queue = RoomQueue::new(10);
        for item in [
            text("$1", "@alice", "a1"),
            text("$2", "@bob", "b1"),
            resumed("$3", "@alice", "a2"),
            file("$4", "@carol"),
        ] {
            assert_eq!(queue.push(item), Pushed::Taken);
        }
        queue
    }

    #[test]
    fn edits_apply_only_to_the_senders_latest_waiting_text() {
        let alice = PersonId::new("@alice");
        let bob = PersonId::new("@bob");
        let carol = PersonId::new("@carol");
        let id = MessageId::new;
        // (edited message, editor, outcome)
        let table = [
            ("$3", &alice, Ok(())),
            ("$1", &alice, Err(NotApplied::NotTheLatest)),
            ("$2", &bob, Ok(())),
            ("$2", &alice, Err(NotApplied::NotTheSender)),
            ("$3", &bob, Err(NotApplied::NotTheSender)),
            ("$4", &carol, Err(NotApplied::NotText)),
            ("$9", &alice, Err(NotApplied::NotQueued)),
        ];
        for (of, editor, outcome) in table {
            let mut queue = sample();
            assert_eq!(
                queue.edit(&id(of), editor, "new"),
                outcome,
                "{of} by {editor}"
            );
            let changed = bodies(&queue).iter().filter(|b| *b == "new").count();
            assert_eq!(changed, usize::from(outcome.is_ok()), "{of} by {editor}");
        }
        let mut queue = sample();
        queue.edit(&id("$3"), &alice, "edited").unwrap();
        assert_eq!(bodies(&queue), ["a1", "b1", "edited", "file $4"]);
    }

    #[test]
    fn withdrawals_take_out_the_senders_own_waiting_message() {
        let alice = PersonId::new("@alice");
        let bob = PersonId::new("@bob");
        let id = MessageId::new;
        let mut queue = sample();
        assert_eq!(
            queue.withdraw(&id("$1"), &bob).unwrap_err(),
            NotApplied::NotTheSender
        );
        assert_eq!(queue.withdraw(&id("$1"), &alice).unwrap().id(), "$1");
        assert_eq!(
            queue.withdraw(&id("$1"), &alice).unwrap_err(),
            NotApplied::NotQueued
        );
        assert_eq!(bodies(&queue), ["b1", "a2", "file $4"]);
        // Once $1 is gone, alice's latest is still $3 and $3 can be withdrawn too.
        assert_eq!(queue.withdraw(&id("$3"), &alice).unwrap().id(), "$3");
        assert_eq!(queue.len(), 2);
    }

    #[test]
    fn a_full_queue_refuses_and_says_so_once_per_burst() {
        let mut queue = RoomQueue::new(2);
        assert_eq!(queue.push(text("$1", "@a", "1")), Pushed::Taken);
        assert_eq!(queue.push(text("$1", "@a", "1")), Pushed::Duplicate);
        assert_eq!(queue.push(text("$2", "@a", "2")), Pushed::Taken);
        assert_eq!(
            queue.push(text("$3", "@a", "3")),
            Pushed::Refused { notify: true }
        );
        assert_eq!(
            queue.push(file("$4", "@a")),
            Pushed::Refused { notify: false }
        );
        // Room again, but the burst is not over: still refused quietly when full.
        assert_eq!(queue.pop().unwrap().id(), "$1");
        assert_eq!(queue.push(text("$5", "@a", "5")), Pushed::Taken);
        assert_eq!(
            queue.push(text("$6", "@a", "6")),
            Pushed::Refused { notify: false }
        );
        // Resumed messages were accepted before: never refused.
        assert_eq!(queue.push_resumed(resumed("$7", "@a", "7")), Pushed::Taken);
        assert_eq!(queue.len(), 3);
        // Emptied: the burst is over, the next refusal is announced.
        while queue.pop().is_some() {}
        assert!(queue.is_empty());
        assert_eq!(queue.push(text("$8", "@a", "8")), Pushed::Taken);
        assert_eq!(queue.push(text("$9", "@a", "9")), Pushed::Taken);
        assert_eq!(
            queue.push(text("$10", "@a", "10")),
            Pushed::Refused { notify: true }
        );
    }

    #[test]
    fn a_zero_cap_still_takes_one() {
        let mut queue = RoomQueue::new(0);
        assert_eq!(queue.push(text("$1", "@a", "1")), Pushed::Taken);
        assert_eq!(
            queue.push(text("$2", "@a", "2")),
            Pushed::Refused { notify: true }
        );
    }
}
