//! The inbound journal: nothing accepted is lost, nothing is answered twice.
//!
//! Every message accepted for processing is written here and flushed before its room
//! actor sees it, and marked done (flushed) once its reply or notice is sent. On restart
//! the pending entries are handed to their rooms again, in order per room. Done event
//! ids are remembered, so an event seen again (a replayed sync, a reset sync token) is
//! not answered twice. Unlike the rest of sled, the journal cannot be rebuilt from Matrix.
//!
//! Messages the bot cannot read yet (end-to-end encrypted without their key) are held in a
//! tree of their own until they are read or given up on: see [`undecryptable`].
//!
//! Each pending entry also counts how often it was resumed (durably, before each attempt), so
//! a message that keeps taking its room or the whole process down is given up after a few
//! restarts instead of being retried forever.
//!
//! Done marks are written by a task on the runtime's pool, many per commit ([`done_writer`]),
//! not on the thread of the room actor that answered.
//!
//! Which event is pending under which sequence number is kept in memory ([`PendingIndex`]),
//! rebuilt from the pending entries at open: it is derived data, and as a sled tree it cost
//! three tree operations per message (a third of the journal's work in the pipeline bench).
//! The messages journaled together are written as one record ([`groups`], [`Staging`]).

mod done_writer;
mod groups;
mod held_files;
mod undecryptable;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::store::{decode_u64, encode, Store, StoreError};
pub use undecryptable::UndecryptableCounts;

/// Tree of pending entries in groups ([`groups`]), keyed by the big-endian sequence number of
/// a group's first entry (so iteration is in order).
const PENDING_TREE: &str = "journal_pending";
/// Tree of pending entries changed since they were journaled (their current version), keyed
/// by their big-endian sequence number.
const UPDATES_TREE: &str = "journal_pending_updates";
/// Tree of event ids → pending sequence number, as earlier versions kept it on disk (now in
/// memory, [`PendingIndex`]); dropped at open.
const OLD_INDEX_TREE: &str = "journal_index";
/// Tree of done event ids → when they were done (ms since the epoch).
const DONE_TREE: &str = "journal_done";
/// How long done event ids are remembered (a replay older than this is not expected).
pub const DONE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// One accepted message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Position in the journal (global order; per-room order follows from it).
    pub seq: u64,
    /// The room.
    pub room_id: String,
    /// The Matrix event id.
    pub event_id: String,
    /// Who sent it.
    pub sender: String,
    /// The text.
    pub body: String,
    /// How many times it was resumed after a restart (of its room actor or of the process).
    /// Entries written before this was counted load with 0.
    #[serde(default)]
    pub resumes: u32,
    /// The reply being streamed live for it, once posted (so a resumed turn finishes that
    /// message instead of posting a second reply).
    #[serde(default)]
    pub live_reply: Option<String>,
    /// The messages a live reply continued in, after the first, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live_parts: Vec<String>,
    /// The files that went with it (sent alone before it, see [`held_files`]), so a turn
    /// resumed after a crash has them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<crate::agent::Attachment>,
    /// When it was journaled (Unix milliseconds; entries written before this was recorded
    /// load without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_ms: Option<u64>,
}

impl JournalEntry {
    /// True if nothing was recorded for it since it was journaled (no resume, live reply or
    /// files).
    fn is_as_journaled(&self) -> bool {
        self.resumes == 0
            && self.live_reply.is_none()
            && self.live_parts.is_empty()
            && self.files.is_empty()
    }
}

/// What `accept` decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// New: journaled, to be processed.
    New,
    /// Already pending (being processed, or resumed at start-up).
    Pending,
    /// Already answered.
    Done,
}

/// Event id → where its entry is, for every pending entry: the duplicate check and the way
/// from an event to its entry ([`groups::Pending`]). An event is here from the moment it is
/// staged (its group is written before the batch's commit, and nothing reaches a room actor
/// before that), and a done event is in the done tree before it leaves here, so an event is
/// at every moment pending here or done on disk (or neither: not yet staged).
/// One per store: every `Journal::open` on the same store shares it ([`Store`] keeps it).
pub(crate) type PendingIndex = Arc<parking_lot::Mutex<groups::Pending>>;

/// The journal. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    db: sled::Db,
    pending: sled::Tree,
    /// Pending entries changed since they were journaled ([`UPDATES_TREE`]).
    updates: sled::Tree,
    index: PendingIndex,
    done: sled::Tree,
    /// Messages that cannot be read yet ([`undecryptable`]).
    undecryptable: sled::Tree,
    /// What happened to them since start-up (for `/metrics`).
    undecryptable_counts: Arc<UndecryptableCounts>,
    /// Files waiting for their sender's next message ([`held_files`]).
    held_files: sled::Tree,
    store: Store,
    /// Where [`Journal::complete`] sends its marks (`None`: the writer's own handle, which
    /// writes them itself).
    writer: Option<Arc<done_writer::DoneWriter>>,
}

/// Milliseconds since the epoch (0 before it), as the journal records times.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn corrupt(tree: &'static str, key: &[u8], message: impl ToString) -> StoreError {
    StoreError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        message: message.to_string(),
    }
}

impl Journal {
    /// Opens the journal's trees in the store's database.
    pub fn open(store: &Store) -> Result<Self, StoreError> {
        let db = store.db().clone();
        let pending = db.open_tree(PENDING_TREE)?;
        let updates = db.open_tree(UPDATES_TREE)?;
        let done = db.open_tree(DONE_TREE)?;
        let index = store.pending_index(|| {
            let index = index_pending(&pending, &updates, &done)?;
            if db.drop_tree(OLD_INDEX_TREE)? {
                tracing::info!(
                    "the journal's index is kept in memory now: its old tree is dropped"
                );
            }
            Ok::<_, StoreError>(Arc::new(parking_lot::Mutex::new(index)))
        })?;
        Ok(Self {
            pending,
            updates,
            index,
            done,
            undecryptable: db.open_tree(undecryptable::TREE)?,
            undecryptable_counts: Arc::default(),
            held_files: db.open_tree(held_files::TREE)?,
            db,
            store: store.clone(),
            writer: Some(Arc::default()),
        })
    }

    /// This journal without the way to its done writer (the writer's own handle).
    fn without_writer(&self) -> Self {
        Self {
            writer: None,
            ..self.clone()
        }
    }

    /// Journals a message (durably) unless it is already pending or done.
    pub async fn accept(
        &self,
        room_id: &str,
        event_id: &str,
        sender: &str,
        body: &str,
    ) -> Result<(Accepted, u64), StoreError> {
        let staged = self.stage(room_id, event_id, sender, body)?;
        if staged.0 == Accepted::New {
            self.commit().await?;
        }
        Ok(staged)
    }

    /// Journals a message without making it durable yet, unless it is already pending or
    /// done: [`Journal::commit`] makes every staged message durable with one flush, so many
    /// messages (a whole sync response) share it. A staged message must not be processed
    /// before that commit returns. Many messages: [`Journal::staging`] writes them as groups.
    pub fn stage(
        &self,
        room_id: &str,
        event_id: &str,
        sender: &str,
        body: &str,
    ) -> Result<(Accepted, u64), StoreError> {
        let mut staging = self.staging();
        let staged = staging.add(room_id, event_id, sender, body)?;
        staging.write()?;
        Ok(staged)
    }

    /// A staging of many messages, written as groups of up to [`groups::GROUP_MAX`] by
    /// [`Staging::write`] (before the commit that makes them durable).
    pub fn staging(&self) -> Staging<'_> {
        Staging {
            journal: self,
            full: Vec::new(),
            open: Vec::new(),
        }
    }

    /// The sequence number of a pending event.
    fn pending_seq(&self, event_id: &str) -> Option<u64> {
        self.index.lock().slot(event_id).map(|slot| slot.seq)
    }

    /// Makes everything staged so far durable (one flush).
    pub async fn commit(&self) -> Result<(), StoreError> {
        self.store.flush().await
    }

    /// True if the event is pending or answered: the bot has handled it.
    pub fn is_known(&self, event_id: &str) -> Result<bool, StoreError> {
        Ok(self.pending_seq(event_id).is_some() || self.done.contains_key(event_id.as_bytes())?)
    }

    /// Marks a message answered (durably), through the done writer ([`done_writer`]).
    pub async fn complete(&self, event_id: &str) -> Result<(), StoreError> {
        match &self.writer {
            Some(writer) => writer.mark(self, event_id).await,
            None => {
                self.stage_done(event_id)?;
                self.commit().await
            }
        }
    }

    /// Marks a message answered without flushing ([`Journal::commit`] makes it durable).
    pub fn stage_done(&self, event_id: &str) -> Result<(), StoreError> {
        // Done on disk before it leaves the index (see [`PendingIndex`]).
        self.done
            .insert(event_id.as_bytes(), &now_ms().to_be_bytes())?;
        let answered = self.index.lock().answer(event_id);
        if let Some(answered) = answered {
            // A failure here leaves a record whose entry is done: the next open drops it.
            if let Some(seq) = answered.update {
                self.updates.remove(seq.to_be_bytes())?;
            }
            if let Some(group) = answered.group {
                self.pending.remove(group.to_be_bytes())?;
            }
        }
        Ok(())
    }

    /// Marks answered, without flushing, a message the messenger shows answered (a reply of
    /// the bot names it) — unless the journal holds it pending: its room resumes it and
    /// settles it, since the reply seen may be a live reply cut short by a crash. False when
    /// it was left pending.
    pub fn stage_seen_answered(&self, event_id: &str) -> Result<bool, StoreError> {
        if self.pending_seq(event_id).is_some() {
            return Ok(false);
        }
        self.stage_done(event_id)?;
        Ok(true)
    }

    /// Counts one more resume of a pending message, durably (flushed before it returns, so
    /// the count survives the attempt crashing the process); returns the new count. A message
    /// that is not pending (answered meanwhile) counts 0.
    pub async fn count_resume(&self, event_id: &str) -> Result<u32, StoreError> {
        let Some((seq, mut entry)) = self.pending_entry(event_id)? else {
            return Ok(0);
        };
        entry.resumes = entry.resumes.saturating_add(1);
        self.put_pending(seq, &entry)?;
        self.commit().await?;
        Ok(entry.resumes)
    }

    /// Records, durably, message `part` (from 0) of the live reply posted for a pending
    /// message; false when it is not pending (answered meanwhile) or the parts before it are
    /// not recorded.
    pub async fn record_live_reply(
        &self,
        event_id: &str,
        part: usize,
        reply: &str,
    ) -> Result<bool, StoreError> {
        let Some((seq, mut entry)) = self.pending_entry(event_id)? else {
            return Ok(false);
        };
        let recorded = usize::from(entry.live_reply.is_some()) + entry.live_parts.len();
        match part {
            0 => entry.live_reply = Some(reply.to_owned()),
            n if n <= recorded && recorded > 0 => match entry.live_parts.get_mut(n - 1) {
                Some(id) => *id = reply.to_owned(),
                None => entry.live_parts.push(reply.to_owned()),
            },
            _ => return Ok(false),
        }
        self.put_pending(seq, &entry)?;
        self.commit().await?;
        Ok(true)
    }

    /// The messages of the live reply recorded for a pending message, in order (empty when
    /// none was posted).
    pub fn live_reply(&self, event_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .changed_entry(event_id)?
            .map(|entry| {
                entry
                    .live_reply
                    .into_iter()
                    .chain(entry.live_parts)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A pending event's entry if it changed since it was journaled (a live reply, files, a
    /// resume count are recorded only as changes: an entry as journaled has none, and is not
    /// read from its group for them).
    fn changed_entry(&self, event_id: &str) -> Result<Option<JournalEntry>, StoreError> {
        match self.index.lock().slot(event_id) {
            Some(slot) if slot.updated => {}
            _ => return Ok(None),
        }
        Ok(self.pending_entry(event_id)?.map(|(_, entry)| entry))
    }

    /// A pending event's entry (its current version) and sequence number.
    fn pending_entry(&self, event_id: &str) -> Result<Option<(u64, JournalEntry)>, StoreError> {
        let Some(slot) = self.index.lock().slot(event_id) else {
            return Ok(None);
        };
        let entry = if slot.updated {
            self.updated_entry(slot.seq)?
        } else {
            let key = slot.group.to_be_bytes();
            match self.pending.get(key)? {
                Some(bytes) => groups::decode(&bytes)
                    .map_err(|e| corrupt(PENDING_TREE, &key, e))?
                    .into_iter()
                    .find(|entry| entry.seq == slot.seq),
                None => None,
            }
        };
        Ok(entry.map(|entry| (slot.seq, entry)))
    }

    /// The current version of a changed pending entry.
    fn updated_entry(&self, seq: u64) -> Result<Option<JournalEntry>, StoreError> {
        let key = seq.to_be_bytes();
        let Some(bytes) = self.updates.get(key)? else {
            return Ok(None);
        };
        let entry = serde_json::from_slice(&bytes).map_err(|e| corrupt(UPDATES_TREE, &key, e))?;
        Ok(Some(entry))
    }

    /// Writes the new version of a pending entry (its group is left as it is).
    fn put_pending(&self, seq: u64, entry: &JournalEntry) -> Result<(), StoreError> {
        let bytes = encode(UPDATES_TREE, &entry.event_id, entry)?;
        let key = seq.to_be_bytes();
        self.updates.insert(key, bytes)?;
        if !self.index.lock().mark_updated(&entry.event_id) {
            // Answered meanwhile: the version is nobody's.
            self.updates.remove(key)?;
        }
        Ok(())
    }

    /// True if the event was answered (a pending event is not: answered from memory).
    pub fn is_done(&self, event_id: &str) -> Result<bool, StoreError> {
        if self.pending_seq(event_id).is_some() {
            return Ok(false);
        }
        Ok(self.done.contains_key(event_id.as_bytes())?)
    }

    /// Pending entries in journal order (each in its current version).
    pub fn pending(&self) -> Result<Vec<JournalEntry>, StoreError> {
        let mut pending = Vec::new();
        for item in self.pending.iter() {
            let (key, bytes) = item?;
            let entries = groups::decode(&bytes).map_err(|e| corrupt(PENDING_TREE, &key, e))?;
            // The index is locked once per group, not per entry.
            let slots: Vec<Option<groups::Slot>> = {
                let index = self.index.lock();
                entries.iter().map(|e| index.slot(&e.event_id)).collect()
            };
            for (entry, slot) in entries.into_iter().zip(slots) {
                // A group keeps its answered entries until its last one is answered.
                match slot {
                    Some(slot) if slot.seq == entry.seq && slot.updated => {
                        pending.extend(self.updated_entry(slot.seq)?);
                    }
                    Some(slot) if slot.seq == entry.seq => pending.push(entry),
                    _ => {}
                }
            }
        }
        Ok(pending)
    }

    /// Number of pending entries.
    pub fn pending_count(&self) -> usize {
        self.index.lock().len()
    }

    /// Replaces the text of a pending message (an edit of a message still waiting), durably;
    /// false when it is not pending.
    pub async fn amend(&self, event_id: &str, body: &str) -> Result<bool, StoreError> {
        let Some((seq, mut entry)) = self.pending_entry(event_id)? else {
            return Ok(false);
        };
        body.clone_into(&mut entry.body);
        self.put_pending(seq, &entry)?;
        self.commit().await?;
        Ok(true)
    }

    /// Forgets done event ids older than `retention` (and drops messages held unreadable
    /// for longer, with a warning); returns how many done ids.
    pub async fn prune_done(&self, retention: Duration) -> Result<usize, StoreError> {
        let cutoff =
            now_ms().saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
        let mut old = Vec::new();
        for item in self.done.iter() {
            let (key, value) = item?;
            if decode_u64(DONE_TREE, &key, &value)? <= cutoff {
                old.push(key);
            }
        }
        for key in &old {
            self.done.remove(key)?;
        }
        let dropped = self.prune_undecryptable(cutoff)?;
        if !old.is_empty() || dropped > 0 {
            self.store.flush().await?;
        }
        Ok(old.len())
    }
}

/// Messages being journaled together ([`Journal::staging`]): checked and numbered one by
/// one (a message staged twice is pending the second time), written by [`Staging::write`]
/// as one record per [`groups::GROUP_MAX`] messages.
pub struct Staging<'a> {
    journal: &'a Journal,
    /// The full groups, in order.
    full: Vec<Vec<JournalEntry>>,
    /// The group being filled.
    open: Vec<JournalEntry>,
}

impl Staging<'_> {
    /// Stages a message unless it is already pending or done (see [`Journal::stage`]).
    pub fn add(
        &mut self,
        room_id: &str,
        event_id: &str,
        sender: &str,
        body: &str,
    ) -> Result<(Accepted, u64), StoreError> {
        let journal = self.journal;
        // Pending first: an event leaves the index only once it is done on disk.
        if let Some(seq) = journal.pending_seq(event_id) {
            return Ok((Accepted::Pending, seq));
        }
        if journal.done.contains_key(event_id.as_bytes())? {
            return Ok((Accepted::Done, 0));
        }
        let seq = journal.db.generate_id()?;
        if self.open.len() >= groups::GROUP_MAX {
            self.full.push(std::mem::take(&mut self.open));
        }
        let group = self.open.first().map_or(seq, |first| first.seq);
        self.open.push(JournalEntry {
            seq,
            room_id: room_id.to_owned(),
            event_id: event_id.to_owned(),
            sender: sender.to_owned(),
            body: body.to_owned(),
            resumes: 0,
            live_reply: None,
            live_parts: Vec::new(),
            files: Vec::new(),
            accepted_ms: Some(now_ms()),
        });
        journal
            .index
            .lock()
            .insert(event_id.to_owned(), seq, group, false);
        Ok((Accepted::New, seq))
    }

    /// Writes the staged groups (not durable until [`Journal::commit`]). On an error the
    /// messages are still staged in memory: they are handled, without crash safety.
    pub fn write(&mut self) -> Result<(), StoreError> {
        let open = std::mem::take(&mut self.open);
        for group in self.full.drain(..).chain(std::iter::once(open)) {
            let Some(first) = group.first() else { continue };
            let bytes = encode(PENDING_TREE, &first.event_id, &group)?;
            self.journal
                .pending
                .insert(first.seq.to_be_bytes(), bytes)?;
        }
        Ok(())
    }
}

/// The index of the pending entries (read once, at open). A group whose entries were
/// answered in part is rewritten with the pending ones (one without any is removed), and an
/// update whose entry is not pending is removed: the done marks of answered entries are then
/// needed by nothing here when they are pruned.
fn index_pending(
    pending: &sled::Tree,
    updates: &sled::Tree,
    done: &sled::Tree,
) -> Result<groups::Pending, StoreError> {
    let mut updated = std::collections::HashSet::new();
    for key in updates.iter().keys() {
        let key = key?;
        updated.insert(decode_u64(UPDATES_TREE, &key, &key)?);
    }
    let mut index = groups::Pending::default();
    for item in pending.iter() {
        let (key, bytes) = item?;
        let group = decode_u64(PENDING_TREE, &key, &key)?;
        let entries = groups::decode(&bytes).map_err(|e| corrupt(PENDING_TREE, &key, e))?;
        let written = entries.len();
        let mut live = Vec::with_capacity(written);
        for entry in entries {
            if !done.contains_key(entry.event_id.as_bytes())? {
                live.push(entry);
            }
        }
        if live.is_empty() {
            pending.remove(&key)?;
            continue;
        }
        if live.len() < written {
            let bytes = encode(PENDING_TREE, &group.to_string(), &live)?;
            pending.insert(&key, bytes)?;
        }
        for entry in live {
            let mut changed = updated.remove(&entry.seq);
            if !changed && !entry.is_as_journaled() {
                // Written before groups, when changes were made in place: moved to the
                // updates, where changes are looked for.
                let bytes = encode(UPDATES_TREE, &entry.event_id, &entry)?;
                updates.insert(entry.seq.to_be_bytes(), bytes)?;
                changed = true;
            }
            index.insert(entry.event_id, entry.seq, group, changed);
        }
    }
    for seq in updated {
        updates.remove(seq.to_be_bytes())?;
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The journal of the store in `dir` (opened again after a drop: a restart).
    fn open_in(dir: &std::path::Path) -> Journal {
        let store = Store::open(dir).unwrap();
        Journal::open(&store).unwrap()
    }

    /// The pending messages' ids, in order.
    fn pending_ids(j: &Journal) -> Vec<String> {
        j.pending()
            .unwrap()
            .into_iter()
            .map(|e| e.event_id)
            .collect()
    }

    async fn journal() -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let journal = Journal::open(&store).unwrap();
        (dir, journal)
    }

    /// The sequence numbers in each group record on disk, in order.
    fn groups_on_disk(j: &Journal) -> Vec<Vec<u64>> {
        j.pending
            .iter()
            .map(|item| {
                let (_, bytes) = item.unwrap();
                groups::decode(&bytes)
                    .unwrap()
                    .iter()
                    .map(|e| e.seq)
                    .collect()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_batch_is_written_as_groups_each_removed_with_its_last_answer() {
        let dir = tempfile::tempdir().unwrap();
        let n = groups::GROUP_MAX * 2 + 3;
        {
            let j = open_in(dir.path());
            let mut staging = j.staging();
            for i in 0..n {
                let staged = staging.add("!r", &format!("$g{i}"), "@u", "x").unwrap();
                assert_eq!(staged.0, Accepted::New);
            }
            // Staged twice in one batch: pending the second time.
            assert_eq!(
                staging.add("!r", "$g0", "@u", "x").unwrap().0,
                Accepted::Pending
            );
            staging.write().unwrap();
            j.commit().await.unwrap();
            let sizes: Vec<usize> = groups_on_disk(&j).iter().map(Vec::len).collect();
            assert_eq!(sizes, [groups::GROUP_MAX, groups::GROUP_MAX, 3]);
            // The last group answered whole: its record goes; the first in part: it stays.
            for i in (n - 3..n).chain([0, 5]) {
                j.complete(&format!("$g{i}")).await.unwrap();
            }
            assert_eq!(groups_on_disk(&j).len(), 2);
            assert_eq!(j.pending_count(), n - 5);
        }
        let j = open_in(dir.path());
        let want: Vec<String> = (0..n - 3)
            .filter(|i| ![0, 5].contains(i))
            .map(|i| format!("$g{i}"))
            .collect();
        assert_eq!(pending_ids(&j), want);
        // The open rewrote the first group down to its pending entries.
        let sizes: Vec<usize> = groups_on_disk(&j).iter().map(Vec::len).collect();
        assert_eq!(sizes, [groups::GROUP_MAX - 2, groups::GROUP_MAX]);
        assert_eq!(j.stage("!r", "$g0", "@u", "x").unwrap().0, Accepted::Done);
    }

    #[tokio::test]
    async fn an_entry_answered_on_disk_but_still_in_its_group_is_not_pending_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = open_in(dir.path());
            let mut staging = j.staging();
            for id in ["$a", "$b"] {
                staging.add("!r", id, "@u", "x").unwrap();
            }
            staging.write().unwrap();
            // A crash between the done mark and the group's removal.
            j.done.insert("$a", &now_ms().to_be_bytes()).unwrap();
            j.done.insert("$b", &now_ms().to_be_bytes()).unwrap();
            j.commit().await.unwrap();
        }
        let j = open_in(dir.path());
        assert!(pending_ids(&j).is_empty());
        assert!(groups_on_disk(&j).is_empty());
        assert!(j.is_done("$a").unwrap() && j.is_done("$b").unwrap());
    }

    #[tokio::test]
    async fn a_change_to_a_grouped_entry_is_its_own_record_until_it_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = open_in(dir.path());
            let mut staging = j.staging();
            for id in ["$a", "$b", "$c"] {
                staging.add("!r", id, "@u", "x").unwrap();
            }
            staging.write().unwrap();
            j.commit().await.unwrap();
            assert!(j.live_reply("$b").unwrap().is_empty());
            assert!(j.record_live_reply("$b", 0, "$r0").await.unwrap());
            assert_eq!(j.count_resume("$c").await.unwrap(), 1);
            assert!(j.amend("$a", "edited").await.unwrap());
            assert_eq!(j.updates.len(), 3);
            // The group is as it was journaled.
            let on_disk = j.pending.iter().values().next().unwrap().unwrap();
            let bodies: Vec<String> = groups::decode(&on_disk)
                .unwrap()
                .into_iter()
                .map(|e| e.body)
                .collect();
            assert_eq!(bodies, ["x", "x", "x"]);
            j.complete("$a").await.unwrap();
            assert_eq!(j.updates.len(), 2);
        }
        let j = open_in(dir.path());
        let pending = j.pending().unwrap();
        let seen: Vec<(&str, u32)> = pending
            .iter()
            .map(|e| (e.event_id.as_str(), e.resumes))
            .collect();
        assert_eq!(seen, [("$b", 0), ("$c", 1)]);
        assert_eq!(j.live_reply("$b").unwrap(), ["$r0"]);
        assert_eq!(j.count_resume("$c").await.unwrap(), 2);
        for id in ["$b", "$c"] {
            j.complete(id).await.unwrap();
        }
        assert_eq!((j.updates.len(), j.pending.len()), (0, 0));
    }

    #[tokio::test]
    async fn a_change_recorded_in_place_before_groups_is_moved_to_the_updates_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let old = br#"{"seq":9,"room_id":"!r","event_id":"$old","sender":"@u","body":"hi","resumes":2,"live_reply":"$r0"}"#;
            let pending = store.db().open_tree(PENDING_TREE).unwrap();
            pending.insert(9u64.to_be_bytes(), old.to_vec()).unwrap();
            // An update left behind by an entry answered since: dropped at open.
            let updates = store.db().open_tree(UPDATES_TREE).unwrap();
            updates.insert(4u64.to_be_bytes(), b"{}".to_vec()).unwrap();
            store.db().flush().unwrap();
        }
        let j = open_in(dir.path());
        assert_eq!(j.live_reply("$old").unwrap(), ["$r0"]);
        assert_eq!(j.count_resume("$old").await.unwrap(), 3);
        let keys: Vec<Vec<u8>> = j
            .updates
            .iter()
            .keys()
            .map(|k| k.unwrap().to_vec())
            .collect();
        assert_eq!(keys, [9u64.to_be_bytes().to_vec()]);
    }

    #[tokio::test]
    async fn accept_complete_and_duplicates() {
        let (_dir, j) = journal().await;
        assert_eq!(
            j.accept("!r", "$a", "@u", "hi").await.unwrap().0,
            Accepted::New
        );
        assert_eq!(
            j.accept("!r", "$a", "@u", "hi").await.unwrap().0,
            Accepted::Pending
        );
        assert_eq!(
            j.accept("!r", "$b", "@u", "yo").await.unwrap().0,
            Accepted::New
        );
        let pending: Vec<String> = j
            .pending()
            .unwrap()
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        assert_eq!(pending, vec!["$a", "$b"]);
        j.complete("$a").await.unwrap();
        assert_eq!(
            j.accept("!r", "$a", "@u", "hi").await.unwrap().0,
            Accepted::Done
        );
        assert_eq!(j.pending_count(), 1);
        assert!(j.is_done("$a").unwrap());
        assert!(j.is_known("$a").unwrap() && j.is_known("$b").unwrap());
        assert!(!j.is_known("$c").unwrap());
    }

    #[tokio::test]
    async fn a_live_reply_s_messages_are_recorded_in_order_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = open_in(dir.path());
            j.accept("!r", "$q", "@u", "hi").await.unwrap();
            assert!(j.live_reply("$q").unwrap().is_empty());
            // A continuation before the first message is not recorded.
            assert!(!j.record_live_reply("$q", 1, "$late").await.unwrap());
            assert!(j.record_live_reply("$q", 0, "$r0").await.unwrap());
            assert!(j.record_live_reply("$q", 1, "$r1").await.unwrap());
            assert!(!j.record_live_reply("$q", 3, "$gap").await.unwrap());
            assert!(j.record_live_reply("$q", 2, "$r2").await.unwrap());
            // Recorded again (a repost after a failed record): replaced in place.
            assert!(j.record_live_reply("$q", 1, "$r1").await.unwrap());
            assert!(!j.record_live_reply("$unknown", 0, "$x").await.unwrap());
        }
        let j = open_in(dir.path());
        assert_eq!(j.live_reply("$q").unwrap(), ["$r0", "$r1", "$r2"]);
        j.complete("$q").await.unwrap();
        assert!(j.live_reply("$q").unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_message_shown_answered_stays_pending_if_the_journal_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = open_in(dir.path());
            j.accept("!r", "$q", "@u", "stream").await.unwrap();
            assert!(j.record_live_reply("$q", 0, "$r0").await.unwrap());
        }
        // After a crash mid-stream the messenger shows `$r0` replying to `$q`.
        let j = open_in(dir.path());
        assert!(!j.stage_seen_answered("$q").unwrap());
        assert_eq!(pending_ids(&j), ["$q"]);
        assert!(!j.is_done("$q").unwrap());
        assert_eq!(j.live_reply("$q").unwrap(), ["$r0"]);
        // One the journal does not hold (a lost store) is recorded answered.
        assert!(j.stage_seen_answered("$old").unwrap());
        j.commit().await.unwrap();
        assert!(j.is_done("$old").unwrap());
        assert_eq!(pending_ids(&j), ["$q"]);
    }

    #[tokio::test]
    async fn staged_messages_share_one_commit_and_survive_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = open_in(dir.path());
            for i in 0..5 {
                let (accepted, _) = j.stage("!r", &format!("$s{i}"), "@u", "x").unwrap();
                assert_eq!(accepted, Accepted::New);
            }
            assert_eq!(
                j.stage("!r", "$s0", "@u", "x").unwrap().0,
                Accepted::Pending
            );
            j.commit().await.unwrap();
        }
        let j = open_in(dir.path());
        let ids = pending_ids(&j);
        assert_eq!(ids, vec!["$s0", "$s1", "$s2", "$s3", "$s4"]);
    }

    #[tokio::test]
    async fn every_journal_of_one_store_sees_what_is_pending() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = Journal::open(&store).unwrap();
        let second = Journal::open(&store.clone()).unwrap();
        first.stage("!r", "$a", "@u", "hi").unwrap();
        assert!(second.is_known("$a").unwrap());
        assert_eq!(
            second.stage("!r", "$a", "@u", "hi").unwrap().0,
            Accepted::Pending
        );
        assert_eq!(second.pending_count(), 1);
        second.complete("$a").await.unwrap();
        assert!(first.is_done("$a").unwrap());
        assert_eq!(
            first.stage("!r", "$a", "@u", "hi").unwrap().0,
            Accepted::Done
        );
        assert_eq!(first.pending_count(), 0);
    }

    #[tokio::test]
    async fn pending_survives_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = open_in(dir.path());
            for i in 0..20 {
                j.accept("!r", &format!("$e{i}"), "@u", "x").await.unwrap();
            }
            j.complete("$e3").await.unwrap();
        }
        let j = open_in(dir.path());
        let ids = pending_ids(&j);
        let want: Vec<String> = (0..20)
            .filter(|i| *i != 3)
            .map(|i| format!("$e{i}"))
            .collect();
        assert_eq!(ids, want);
        assert!(j.is_done("$e3").unwrap());
    }

    #[tokio::test]
    async fn prune_forgets_only_old_done_ids() {
        let (_dir, j) = journal().await;
        j.complete("$old").await.unwrap();
        assert_eq!(j.prune_done(Duration::from_secs(3600)).await.unwrap(), 0);
        assert_eq!(j.prune_done(Duration::ZERO).await.unwrap(), 1);
        assert!(!j.is_done("$old").unwrap());
    }

    #[tokio::test]
    async fn resume_counts_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = open_in(dir.path());
            j.accept("!r", "$p", "@u", "poison").await.unwrap();
            assert_eq!(j.count_resume("$p").await.unwrap(), 1);
            assert_eq!(j.count_resume("$p").await.unwrap(), 2);
            assert_eq!(j.count_resume("$unknown").await.unwrap(), 0);
        }
        let j = open_in(dir.path());
        assert_eq!(j.pending().unwrap()[0].resumes, 2);
        assert_eq!(j.count_resume("$p").await.unwrap(), 3);
        j.complete("$p").await.unwrap();
        assert_eq!(j.count_resume("$p").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn entries_written_without_a_count_still_load() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let old = br#"{"seq":7,"room_id":"!r","event_id":"$old","sender":"@u","body":"hi"}"#;
            let pending = store.db().open_tree(PENDING_TREE).unwrap();
            pending.insert(7u64.to_be_bytes(), old.to_vec()).unwrap();
            let index = store.db().open_tree(OLD_INDEX_TREE).unwrap();
            index.insert(b"$old", &7u64.to_be_bytes()).unwrap();
            store.db().flush().unwrap();
        }
        let j = open_in(dir.path());
        assert!(!j
            .db
            .tree_names()
            .contains(&sled::IVec::from(OLD_INDEX_TREE)));
        assert_eq!(
            j.stage("!r", "$old", "@u", "hi").unwrap(),
            (Accepted::Pending, 7)
        );
        let entries = j.pending().unwrap();
        assert_eq!(
            (entries[0].event_id.as_str(), entries[0].resumes),
            ("$old", 0)
        );
        assert_eq!(j.count_resume("$old").await.unwrap(), 1);
    }
}
