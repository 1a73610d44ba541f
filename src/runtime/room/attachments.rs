//! Files in a room actor: a person's file messages in, the agent's files out.
//!
//! **The caption rule.** A file message *with* a caption (per the spec's media captions:
//! `body` differs from `filename`) is a turn of its own: the caption is the turn's text and
//! the file its attachment. A file *without* a caption is downloaded into the workspace right
//! away and then waits, acknowledged by a notice: it goes to the agent with the same person's
//! next message in this room (text, or a captioned file), as that turn's attachments, in the
//! order the files were sent. There is no timer. If that turn fails, its files wait again for
//! the next message. Waiting files are kept per room and person in memory and in the journal
//! (`journal::held_files`): they survive a restart of the room actor and of the bot, and a
//! turn resumed after a crash has the files it took.
//!
//! File messages do not go through the inbound journal (it holds text): one lost in a crash
//! is simply not acknowledged, and a redelivered one maps to the same inbox path, notice
//! and turn ids, so handling it twice changes nothing.
//!
//! Refusals (no workspace, over `files.max_bytes`, a failed download) are notices replying
//! to the file message. After a turn, the files the agent asked to post follow the reply;
//! the ones refused are listed in one notice.

use std::sync::Arc;

use actix::{Context, Handler, Message};
use parking_lot::Mutex;
use tracing::Instrument;

use super::{answer, Chat, RoomActor, RoomDeps, UserMessage};
use crate::agent::{Attachment, FileEvent};
use crate::files::{self, InboundRefusal};
use crate::idmap::IdMap;
use crate::journal::Journal;
use crate::metrics::Refusal;
use crate::runtime::router::AgentRoute;
use crate::surface::{AnswerPart, ChatId, IncomingFile, MessageId, PersonId, SendKey};
use crate::texts;

/// Waiting files by (room id, sender).
type Held = IdMap<(String, String), Vec<Attachment>>;

/// Files waiting for their sender's next message, per room and sender; every change is
/// written to the journal before it is acknowledged.
#[derive(Clone)]
pub struct FileDeps {
    /// `files.max_bytes`.
    pub max_bytes: u64,
    held: Arc<Mutex<Held>>,
    journal: Journal,
}

impl FileDeps {
    /// Files up to `max_bytes`; what waited when the bot stopped waits again.
    pub fn new(max_bytes: u64, journal: Journal) -> Self {
        let held = match journal.held_files() {
            Ok(all) => all
                .into_iter()
                .map(|h| ((h.chat, h.sender), h.files))
                .collect(),
            Err(error) => {
                tracing::error!(%error, "cannot read the files waiting for their next message; \
                    they are left out of those turns (they stay in the agents' inboxes)");
                Held::default()
            }
        };
        Self {
            max_bytes,
            held: Arc::new(Mutex::new(held)),
            journal,
        }
    }

    fn key(chat: &ChatId, sender: &PersonId) -> (String, String) {
        (chat.as_str().to_owned(), sender.as_str().to_owned())
    }

    /// Writes what waits for `sender` in `chat` to the journal; false if it could not.
    async fn persist(&self, chat: &ChatId, sender: &PersonId) -> bool {
        let files = self
            .held
            .lock()
            .get(&Self::key(chat, sender))
            .cloned()
            .unwrap_or_default();
        match self
            .journal
            .set_held_files(chat.as_str(), sender.as_str(), &files)
            .await
        {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, room_id = %chat, %sender,
                    "cannot record the files waiting for a next message; a restart loses them");
                false
            }
        }
    }

    /// `attachment` waits for `sender`'s next message in `chat`; false if that could not
    /// be made durable (it waits until the bot restarts).
    pub async fn hold(&self, chat: &ChatId, sender: &PersonId, attachment: Attachment) -> bool {
        {
            let mut held = self.held.lock();
            let list = held.entry(Self::key(chat, sender)).or_default();
            // A redelivered file message is held once.
            if !list.iter().any(|a| a.path == attachment.path) {
                list.push(attachment);
            }
        }
        self.persist(chat, sender).await
    }

    /// The files of `sender`'s turn for `msg` in `chat`: those it took before a crash (from
    /// the journal, when the turn is `resumed`: a message just taken has none there, and
    /// reading it cost a tenth of a message's work), those waiting, then `extra`. Nothing
    /// waits afterwards; the journal records them with the message.
    pub async fn take(
        &self,
        chat: &ChatId,
        sender: &PersonId,
        msg: &MessageId,
        resumed: bool,
        extra: Vec<Attachment>,
    ) -> Vec<Attachment> {
        let recorded = if resumed {
            self.journal.turn_files(msg.as_str())
        } else {
            Ok(Vec::new())
        };
        let mut all = match recorded {
            Ok(files) => files,
            Err(error) => {
                tracing::error!(%error, "cannot read the files a resumed turn took; it goes without them");
                Vec::new()
            }
        };
        let waiting = {
            let mut held = self.held.lock();
            // Most turns: nobody's files wait, and no key is made to find none.
            if held.is_empty() {
                Vec::new()
            } else {
                held.remove(&Self::key(chat, sender)).unwrap_or_default()
            }
        };
        let held = !waiting.is_empty();
        for attachment in waiting.into_iter().chain(extra) {
            if !all.iter().any(|a| a.path == attachment.path) {
                all.push(attachment);
            }
        }
        if all.is_empty() && !held {
            // Most turns: no file, nothing to record (and no flush).
            return all;
        }
        if let Err(error) = self
            .journal
            .take_held_files(chat.as_str(), sender.as_str(), msg.as_str(), &all)
            .await
        {
            tracing::error!(%error, room_id = %chat, "cannot record the files of a turn; \
                a restart mid-turn or after it may leave them out or send them again");
        }
        all
    }

    /// Puts the files of a failed turn back, before anything held since.
    pub async fn put_back(&self, chat: &ChatId, sender: &PersonId, attachments: Vec<Attachment>) {
        if attachments.is_empty() {
            return;
        }
        {
            let mut held = self.held.lock();
            let list = held.entry(Self::key(chat, sender)).or_default();
            let later = std::mem::replace(list, attachments);
            for attachment in later {
                if !list.iter().any(|a| a.path == attachment.path) {
                    list.push(attachment);
                }
            }
        }
        self.persist(chat, sender).await;
    }

    /// How many files wait for `sender` in `chat`.
    pub fn held_count(&self, chat: &ChatId, sender: &PersonId) -> usize {
        self.held
            .lock()
            .get(&Self::key(chat, sender))
            .map_or(0, Vec::len)
    }
}

/// A person's file, image, audio or video message in this chat.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct UserFile {
    /// The message's id (inbox path, turn ids and send keys derive from it).
    pub id: MessageId,
    /// Who sent it.
    pub sender: PersonId,
    /// Their display name, if known.
    pub display_name: Option<String>,
    /// The file, as the message describes it.
    pub file: IncomingFile,
}

impl Handler<UserFile> for RoomActor {
    type Result = ();

    fn handle(&mut self, msg: UserFile, ctx: &mut Context<Self>) {
        let _span = super::message_span(&self.chat, msg.id.as_str()).entered();
        // Same strict order as text: a file is in place before the next message is answered.
        self.enqueue(super::queue::Queued::File(msg), ctx);
    }
}

/// Receives a file message taken from the chat's queue.
pub(super) async fn receive_queued(chat: Chat, deps: Arc<RoomDeps>, msg: UserFile) {
    let span = tracing::info_span!("file", room_id = %chat.id, msg = %msg.id);
    receive(chat, deps, msg).instrument(span).await;
}

/// The route of the chat's agent, or the notice to answer with.
fn route_of(deps: &RoomDeps, chat: &Chat) -> Result<AgentRoute, String> {
    let record = match chat.record(&deps.store) {
        Ok(Some(record)) => record,
        Ok(None) => {
            tracing::error!("managed room without a record in the store");
            return Err(texts::internal_error().to_owned());
        }
        Err(error) => {
            tracing::error!(%error, "cannot read the room's record");
            return Err(texts::internal_error().to_owned());
        }
    };
    match deps.routes.get(&record.agent_id) {
        Some(route) => Ok(route.clone()),
        None => Err(texts::agent_gone(&record.agent_id)),
    }
}

/// Fetches the file into the agent's workspace, then runs its turn (with a caption) or
/// holds it for the sender's next message (without).
async fn receive(chat: Chat, deps: Arc<RoomDeps>, msg: UserFile) {
    let as_message = UserMessage {
        id: msg.id.clone(),
        sender: msg.sender.clone(),
        display_name: msg.display_name.clone(),
        body: msg.file.caption.clone().unwrap_or_default(),
        // Only text messages carry their arrival: a file's turn is not measured.
        arrival: None,
    };
    let route = match route_of(&deps, &chat) {
        Ok(route) => route,
        Err(text) => {
            chat.notice(&as_message, &text).await;
            return;
        }
    };
    let Some(workspace) = route.workspace.clone() else {
        tracing::info!(agent = %route.id, "a file for an agent without a workspace");
        chat.notice(
            &as_message,
            &texts::files_no_workspace(&route.name(), &msg.file.name),
        )
        .await;
        return;
    };
    let received = files::receive(
        chat.surface.as_ref(),
        &workspace,
        &chat.id,
        &msg.id,
        &msg.file,
        deps.files.max_bytes,
    )
    .await;
    let attachment = match received {
        Ok(attachment) => attachment,
        Err(InboundRefusal::TooLarge { limit }) => {
            tracing::info!(name = %msg.file.name, announced = ?msg.file.size, limit,
                "refusing a file over the size limit");
            deps.metrics.refused(Refusal::FileTooLarge);
            let limit = files::human_size(limit);
            chat.notice(&as_message, &texts::file_too_large(&msg.file.name, &limit))
                .await;
            return;
        }
        Err(InboundRefusal::Failed(error)) => {
            tracing::warn!(%error, name = %msg.file.name, "cannot receive a file");
            chat.notice(
                &as_message,
                &texts::file_receive_failed(&msg.file.name, &error),
            )
            .await;
            return;
        }
    };
    tracing::info!(path = %attachment.path, mime = %attachment.mime, size = attachment.size,
        "file written to the agent's workspace");
    if msg.file.caption.is_some() {
        answer(chat, deps, &as_message, vec![attachment]).await;
    } else {
        let held = texts::file_held(&msg.file.name, &route.name());
        if deps.files.hold(&chat.id, &msg.sender, attachment).await {
            chat.notice(&as_message, &held).await;
        } else {
            // It waits in memory only: the person is told a restart would lose it.
            chat.notice(
                &as_message,
                &format!("{held} {}", texts::FILE_HELD_NOT_DURABLE),
            )
            .await;
        }
    }
}

/// Posts the files of a turn after its reply; the refused ones are listed in one notice.
pub(super) async fn post_turn_files(
    chat: &Chat,
    deps: &RoomDeps,
    route: &AgentRoute,
    msg: &UserMessage,
    files: &[FileEvent],
) {
    if files.is_empty() {
        return;
    }
    let refused: Vec<(String, String)> = match &route.workspace {
        None => files
            .iter()
            .map(|f| (f.path.clone(), texts::reason::NO_WORKSPACE.to_owned()))
            .collect(),
        Some(workspace) => files::post_files(
            chat.surface.as_ref(),
            &chat.id,
            workspace,
            files,
            deps.files.max_bytes,
            |i| {
                SendKey::answer(
                    &msg.id,
                    AnswerPart::File(u32::try_from(i).unwrap_or(u32::MAX)),
                )
            },
        )
        .await
        .into_iter()
        .map(|r| (r.path, r.reason.to_string()))
        .collect(),
    };
    if !refused.is_empty() {
        chat.notice(msg, &texts::files_refused(&route.name(), &refused))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(path: &str) -> Attachment {
        Attachment {
            path: path.into(),
            name: path.into(),
            mime: "text/plain".into(),
            size: 1,
        }
    }

    #[tokio::test]
    async fn held_files_wait_per_room_and_sender_in_order_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let store = crate::store::Store::open(dir.path()).unwrap();
            FileDeps::new(10, Journal::open(&store).unwrap())
        };
        let deps = open();
        let (r1, r2) = (&ChatId::new("!a:x"), &ChatId::new("!b:x"));
        let (alice, bob) = (&PersonId::new("@alice:x"), &PersonId::new("@bob:x"));
        assert!(deps.hold(r1, alice, att("1")).await);
        assert!(deps.hold(r1, alice, att("2")).await);
        assert!(deps.hold(r1, alice, att("2")).await); // redelivered
        assert!(deps.hold(r1, bob, att("b")).await);
        assert!(deps.hold(r2, alice, att("other room")).await);
        // The bot restarts: what waited waits again.
        drop(deps);
        let deps = open();
        assert_eq!(deps.held_count(r1, alice), 2);
        let msg = MessageId::new("$m");
        let taken = deps.take(r1, alice, &msg, false, vec![att("3")]).await;
        let paths: Vec<&str> = taken.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(paths, ["1", "2", "3"]);
        assert_eq!(deps.held_count(r1, alice), 0);
        assert_eq!(deps.held_count(r1, bob), 1);
        assert_eq!(deps.held_count(r2, alice), 1);

        // A failed turn puts its files back before what arrived meanwhile.
        assert!(deps.hold(r1, alice, att("4")).await);
        deps.put_back(r1, alice, taken).await;
        drop(deps);
        let deps = open();
        let paths: Vec<String> = deps
            .take(r1, alice, &msg, true, Vec::new())
            .await
            .into_iter()
            .map(|a| a.path)
            .collect();
        assert_eq!(paths, ["1", "2", "3", "4"]);
        assert!(deps
            .take(r1, alice, &msg, true, Vec::new())
            .await
            .is_empty());
    }
}
