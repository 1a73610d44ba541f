//! Files in a room actor: a person's file messages in, the agent's files out.
//!
//! **The caption rule.** A file message *with* a caption (per the spec's media captions:
//! `body` differs from `filename`) is a turn of its own: the caption is the turn's text and
//! the file its attachment. A file *without* a caption is downloaded into the workspace right
//! away and then waits, acknowledged by a notice: it goes to the agent with the same person's
//! next message in this room (text, or a captioned file), as that turn's attachments, in the
//! order the files were sent. There is no timer. If that turn fails, its files wait again for
//! the next message. Waiting files are kept in memory per room and person: they survive a
//! restart of the room actor, not of the bot (the files themselves stay in the inbox).
//!
//! File messages do not go through the inbound journal (it holds text): one lost in a crash
//! is simply not acknowledged, and a redelivered one maps to the same inbox path, notice
//! and turn ids, so handling it twice changes nothing.
//!
//! Refusals (no workspace, over `files.max_bytes`, a failed download) are notices replying
//! to the file message. After a turn, the files the agent asked to post follow the reply;
//! the ones refused are listed in one notice.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Context, Handler, Message};
use parking_lot::Mutex;
use tracing::Instrument;

use super::{answer, Chat, RoomActor, RoomDeps, UserMessage};
use crate::agent::{Attachment, FileEvent};
use crate::files::{self, InboundRefusal};
use crate::runtime::router::{AgentRoute, ResolveAgent};
use crate::surface::{AnswerPart, ChatId, IncomingFile, MessageId, PersonId, SendKey};
use crate::texts;

/// Waiting files by (room id, sender).
type Held = HashMap<(String, String), Vec<Attachment>>;

/// Files waiting for their sender's next message, per room and sender.
#[derive(Clone, Default)]
pub struct FileDeps {
    /// `files.max_bytes`.
    pub max_bytes: u64,
    held: Arc<Mutex<Held>>,
}

impl FileDeps {
    /// Nothing waiting; files up to `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            held: Arc::default(),
        }
    }

    fn key(chat: &ChatId, sender: &PersonId) -> (String, String) {
        (chat.as_str().to_owned(), sender.as_str().to_owned())
    }

    /// `attachment` waits for `sender`'s next message in `chat`.
    pub fn hold(&self, chat: &ChatId, sender: &PersonId, attachment: Attachment) {
        let mut held = self.held.lock();
        let list = held.entry(Self::key(chat, sender)).or_default();
        // A redelivered file message is held once.
        if !list.iter().any(|a| a.path == attachment.path) {
            list.push(attachment);
        }
    }

    /// The files waiting for `sender` in `chat`, then `extra`; nothing waits afterwards.
    pub fn take(
        &self,
        chat: &ChatId,
        sender: &PersonId,
        extra: Vec<Attachment>,
    ) -> Vec<Attachment> {
        let mut all = self
            .held
            .lock()
            .remove(&Self::key(chat, sender))
            .unwrap_or_default();
        for attachment in extra {
            if !all.iter().any(|a| a.path == attachment.path) {
                all.push(attachment);
            }
        }
        all
    }

    /// Puts the files of a failed turn back, before anything held since.
    pub fn put_back(&self, chat: &ChatId, sender: &PersonId, attachments: Vec<Attachment>) {
        if attachments.is_empty() {
            return;
        }
        let mut held = self.held.lock();
        let list = held.entry(Self::key(chat, sender)).or_default();
        let later = std::mem::replace(list, attachments);
        for attachment in later {
            if !list.iter().any(|a| a.path == attachment.path) {
                list.push(attachment);
            }
        }
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
        // Same strict order as text: a file is in place before the next message is answered.
        self.enqueue(super::queue::Queued::File(msg), ctx);
    }
}

/// Receives a file message taken from the chat's queue.
pub(super) async fn receive_queued(chat: Chat, deps: Arc<RoomDeps>, msg: UserFile) {
    let span = tracing::info_span!("file", room_id = %chat.id, event_id = %msg.id);
    receive(chat, deps, msg).instrument(span).await;
}

/// The route of the chat's agent, or the notice to answer with.
async fn route_of(deps: &RoomDeps, chat: &ChatId) -> Result<AgentRoute, String> {
    let record = match deps.store.room(chat.as_str()) {
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
    match deps
        .router
        .send(ResolveAgent {
            agent_id: record.agent_id.clone(),
        })
        .await
    {
        Ok(Some(route)) => Ok(route),
        Ok(None) => Err(texts::agent_gone(&record.agent_id)),
        Err(error) => {
            tracing::error!(%error, "router unavailable");
            Err(texts::internal_error().to_owned())
        }
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
    };
    let route = match route_of(&deps, &chat.id).await {
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
            &texts::files_no_workspace(&route.name, &msg.file.name),
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
        answer(chat, deps, as_message, vec![attachment]).await;
    } else {
        deps.files.hold(&chat.id, &msg.sender, attachment);
        chat.notice(&as_message, &texts::file_held(&msg.file.name, &route.name))
            .await;
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
        chat.notice(msg, &texts::files_refused(&route.name, &refused))
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

    #[test]
    fn held_files_wait_per_room_and_sender_in_order() {
        let deps = FileDeps::new(10);
        let (r1, r2) = (&ChatId::new("!a:x"), &ChatId::new("!b:x"));
        let (alice, bob) = (&PersonId::new("@alice:x"), &PersonId::new("@bob:x"));
        deps.hold(r1, alice, att("1"));
        deps.hold(r1, alice, att("2"));
        deps.hold(r1, alice, att("2")); // redelivered
        deps.hold(r1, bob, att("b"));
        deps.hold(r2, alice, att("other room"));
        assert_eq!(deps.held_count(r1, alice), 2);
        let taken = deps.take(r1, alice, vec![att("3")]);
        let paths: Vec<&str> = taken.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(paths, ["1", "2", "3"]);
        assert_eq!(deps.held_count(r1, alice), 0);
        assert_eq!(deps.held_count(r1, bob), 1);
        assert_eq!(deps.held_count(r2, alice), 1);

        // A failed turn puts its files back before what arrived meanwhile.
        deps.hold(r1, alice, att("4"));
        deps.put_back(r1, alice, taken);
        let paths: Vec<String> = deps
            .take(r1, alice, Vec::new())
            .into_iter()
            .map(|a| a.path)
            .collect();
        assert_eq!(paths, ["1", "2", "3", "4"]);
        assert!(deps.take(r1, alice, Vec::new()).is_empty());
    }
}
