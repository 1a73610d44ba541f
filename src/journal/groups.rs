//! Pending entries written a batch at a time: the journal's groups.
//!
//! Why this exists: a pending entry kept as a sled record of its own cost two tree operations
//! per message — its insert when journaled, its removal when answered — about 30,000 of the
//! ~125,000 instructions the pipeline benchmark spent per message (callgrind; a sled insert
//! rewrites part of a B-tree node). The messages journaled together (one intake batch, up to
//! [`GROUP_MAX`]) are now one record, keyed by the first one's sequence number, and that
//! record is removed once every message in it is answered: two tree operations per group.
//!
//! A group is never rewritten while the process runs: a change to one of its entries (a
//! resume count, a live reply, an edit, held files) is written as that entry's own record in
//! the updates tree, which wins over the group's copy. Which events are pending, in which
//! group, is kept in memory ([`Pending`]) and rebuilt at open from the groups and the done
//! tree (a group outlives the first of its messages to be answered); the open also rewrites a
//! group down to its pending entries, so no done mark an entry depends on is pruned (the
//! journal prunes done marks only at start-up, after the open).
//!
//! Records written one entry each (before groups) load as groups of one.

use crate::idmap::IdMap;

use super::JournalEntry;

/// Most entries in one group. A group is one sled value, and sled writes a leaf (up to 17
/// values) whole when it consolidates it: a leaf over 128 KiB (a quarter of a log segment)
/// goes to a file of its own (a "blob"), which made groups of 64 short messages slower than
/// no groups at all. 16 keeps a leaf of groups of short messages near 40 KiB.
pub const GROUP_MAX: usize = 16;

/// Where a pending event's entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    /// The entry's sequence number.
    pub seq: u64,
    /// The key of its group (the group's first sequence number).
    pub group: u64,
    /// True once the entry was changed: its current version is in the updates tree.
    pub updated: bool,
}

/// What answering an event leaves to delete on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Answered {
    /// The entry's update record, if it has one (its sequence number).
    pub update: Option<u64>,
    /// The group, when this was its last pending entry.
    pub group: Option<u64>,
}

/// The pending events (event id → slot) and how many are pending in each group.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    events: IdMap<String, Slot>,
    groups: IdMap<u64, u32>,
}

impl Pending {
    /// Records a pending event of `group`.
    pub fn insert(&mut self, event_id: String, seq: u64, group: u64, updated: bool) {
        let slot = Slot {
            seq,
            group,
            updated,
        };
        if let Some(old) = self.events.insert(event_id, slot) {
            // Not expected (an event is staged once); keep the counts true all the same.
            self.release(old.group);
        }
        *self.groups.entry(group).or_default() += 1;
    }

    /// Where a pending event is.
    pub fn slot(&self, event_id: &str) -> Option<Slot> {
        self.events.get(event_id).copied()
    }

    /// Records that the event's entry now lives in the updates tree; false if not pending.
    pub fn mark_updated(&mut self, event_id: &str) -> bool {
        match self.events.get_mut(event_id) {
            Some(slot) => {
                slot.updated = true;
                true
            }
            None => false,
        }
    }

    /// Takes an answered event out; `None` if it was not pending.
    pub fn answer(&mut self, event_id: &str) -> Option<Answered> {
        let slot = self.events.remove(event_id)?;
        Some(Answered {
            update: slot.updated.then_some(slot.seq),
            group: self.release(slot.group).then_some(slot.group),
        })
    }

    /// One entry of `group` less; true when it had no other.
    fn release(&mut self, group: u64) -> bool {
        match self.groups.get_mut(&group) {
            Some(left) if *left > 1 => {
                *left -= 1;
                false
            }
            Some(_) => {
                self.groups.remove(&group);
                true
            }
            None => false,
        }
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.events.len()
    }
}

/// The entries of a group record (a record of one entry, as written before groups, is a
/// group of one).
pub(crate) fn decode(bytes: &[u8]) -> serde_json::Result<Vec<JournalEntry>> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        serde_json::from_slice(bytes)
    } else {
        serde_json::from_slice(bytes).map(|entry| vec![entry])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, event_id: &str) -> JournalEntry {
        JournalEntry {
            seq,
            room_id: "!r".into(),
            event_id: event_id.into(),
            sender: "@u".into(),
            body: "hi".into(),
            resumes: 0,
            live_reply: None,
            live_parts: Vec::new(),
            files: Vec::new(),
            accepted_ms: None,
        }
    }

    #[test]
    fn a_group_is_released_by_its_last_answer_only() {
        let mut p = Pending::default();
        p.insert("$a".into(), 1, 1, false);
        p.insert("$b".into(), 2, 1, false);
        p.insert("$c".into(), 3, 3, false);
        assert!(p.mark_updated("$b"));
        assert!(!p.mark_updated("$nope"));
        let cases = [
            ("$a", Some((None, None))),
            ("$a", None),
            ("$c", Some((None, Some(3)))),
            ("$b", Some((Some(2), Some(1)))),
        ];
        for (event, want) in cases {
            let got = p.answer(event).map(|a| (a.update, a.group));
            assert_eq!(got, want, "answering {event}");
        }
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn an_event_staged_again_keeps_the_counts_true() {
        let mut p = Pending::default();
        p.insert("$a".into(), 1, 1, false);
        p.insert("$a".into(), 2, 2, false);
        assert_eq!(p.slot("$a").map(|s| (s.seq, s.group)), Some((2, 2)));
        assert_eq!(p.answer("$a").map(|a| a.group), Some(Some(2)));
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn records_of_one_entry_and_groups_both_decode() {
        let one = serde_json::to_vec(&entry(7, "$old")).unwrap();
        let group = serde_json::to_vec(&[entry(8, "$x"), entry(9, "$y")]).unwrap();
        let cases: [(&[u8], Vec<u64>); 3] =
            [(&one, vec![7]), (&group, vec![8, 9]), (b" [ ]", vec![])];
        for (bytes, want) in cases {
            let seqs: Vec<u64> = decode(bytes).unwrap().iter().map(|e| e.seq).collect();
            assert_eq!(seqs, want);
        }
        assert!(decode(b"{not json").is_err());
        assert!(decode(b"").is_err());
    }
}
