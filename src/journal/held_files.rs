//! The journal's record of files waiting for their sender's next message (see
//! `runtime::room::attachments`): a file sent alone is acknowledged with "it goes with your
//! next message", and that must hold across a restart of the bot.
//!
//! Layout: tree `journal_held_files`, key `<chat id>\0<sender id>`, value the waiting files
//! in order, as JSON. When a turn takes them they move, in one flush, into the pending entry
//! of the message they go with ([`super::JournalEntry::files`]), so a turn resumed after a
//! crash has them too.

use super::{corrupt, Journal};
use crate::agent::Attachment;
use crate::store::{encode, StoreError};

/// The tree.
pub(super) const TREE: &str = "journal_held_files";

/// Files waiting in one chat for one sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldFiles {
    /// The chat.
    pub chat: String,
    /// Who sent them.
    pub sender: String,
    /// The files, oldest first.
    pub files: Vec<Attachment>,
}

fn key(chat: &str, sender: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(chat.len() + 1 + sender.len());
    key.extend_from_slice(chat.as_bytes());
    key.push(0);
    key.extend_from_slice(sender.as_bytes());
    key
}

impl Journal {
    /// Every chat's waiting files (read at start-up).
    pub fn held_files(&self) -> Result<Vec<HeldFiles>, StoreError> {
        self.held_files
            .iter()
            .map(|item| {
                let (key, bytes) = item?;
                let mut halves = key.splitn(2, |b| *b == 0);
                let (Some(chat), Some(sender)) = (halves.next(), halves.next()) else {
                    return Err(corrupt(TREE, &key, "no separator in the key"));
                };
                let files = serde_json::from_slice(&bytes).map_err(|e| corrupt(TREE, &key, e))?;
                Ok(HeldFiles {
                    chat: String::from_utf8_lossy(chat).into_owned(),
                    sender: String::from_utf8_lossy(sender).into_owned(),
                    files,
                })
            })
            .collect()
    }

    /// Records, durably, the files waiting for `sender` in `chat` (none: forgets the key).
    pub async fn set_held_files(
        &self,
        chat: &str,
        sender: &str,
        files: &[Attachment],
    ) -> Result<(), StoreError> {
        self.stage_held_files(chat, sender, files)?;
        self.commit().await
    }

    fn stage_held_files(
        &self,
        chat: &str,
        sender: &str,
        files: &[Attachment],
    ) -> Result<(), StoreError> {
        let key = key(chat, sender);
        if files.is_empty() {
            self.held_files.remove(key)?;
            return Ok(());
        }
        let bytes = encode(TREE, &String::from_utf8_lossy(&key), &files)?;
        self.held_files.insert(key, bytes)?;
        Ok(())
    }

    /// A turn takes `files` (what waited for `sender` in `chat`, and its own): they stop
    /// waiting and are recorded with the pending message `event_id`, in one flush. False when
    /// the message is not pending (a command, a captioned file): the files then only stop
    /// waiting.
    pub async fn take_held_files(
        &self,
        chat: &str,
        sender: &str,
        event_id: &str,
        files: &[Attachment],
    ) -> Result<bool, StoreError> {
        let mut changed = self.held_files.contains_key(key(chat, sender))?;
        let recorded = match self.pending_entry(event_id)? {
            Some((seq, mut entry)) if entry.files != files => {
                entry.files = files.to_vec();
                self.put_pending(seq, &entry)?;
                changed = true;
                true
            }
            Some(_) => true,
            None => false,
        };
        if changed {
            self.stage_held_files(chat, sender, &[])?;
            self.commit().await?;
        }
        Ok(recorded)
    }

    /// The files recorded with the pending message `event_id` (a turn taken before a crash).
    pub fn turn_files(&self, event_id: &str) -> Result<Vec<Attachment>, StoreError> {
        Ok(self
            .changed_entry(event_id)?
            .map(|entry| entry.files)
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn att(path: &str) -> Attachment {
        Attachment {
            path: path.into(),
            name: path.into(),
            mime: "text/plain".into(),
            size: 1,
        }
    }

    fn open_in(dir: &std::path::Path) -> Journal {
        let store = Store::open(dir).unwrap();
        Journal::open(&store).unwrap()
    }

    #[tokio::test]
    async fn waiting_files_survive_a_restart_and_move_with_their_turn() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = open_in(dir.path());
            j.set_held_files("!a", "@alice", &[att("1"), att("2")])
                .await
                .unwrap();
            j.set_held_files("!b", "@bob", &[att("b")]).await.unwrap();
            j.set_held_files("!c", "@carol", &[att("c")]).await.unwrap();
            j.set_held_files("!c", "@carol", &[]).await.unwrap();
        }
        let j = open_in(dir.path());
        let mut held = j.held_files().unwrap();
        held.sort_by(|a, b| a.chat.cmp(&b.chat));
        assert_eq!(held.len(), 2, "{held:?}");
        assert_eq!(
            (held[1].chat.as_str(), held[1].sender.as_str()),
            ("!b", "@bob")
        );
        assert_eq!(held[0].files, [att("1"), att("2")]);

        j.accept("!b", "$q", "@bob", "with my file").await.unwrap();
        let taken = [att("b"), att("own")];
        assert!(j.take_held_files("!b", "@bob", "$q", &taken).await.unwrap());
        drop(j);
        let j = open_in(dir.path());
        assert_eq!(j.turn_files("$q").unwrap(), taken);
        assert!(j.held_files().unwrap().iter().all(|h| h.chat != "!b"));
        // Not a pending message: the files only stop waiting.
        assert!(!j
            .take_held_files("!a", "@alice", "$cmd", &[])
            .await
            .unwrap());
        assert!(j.turn_files("$cmd").unwrap().is_empty());
        j.complete("$q").await.unwrap();
        assert!(j.turn_files("$q").unwrap().is_empty());
    }
}
