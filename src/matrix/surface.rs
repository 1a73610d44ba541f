//! Matrix as a [`Surface`]: the outbound half of the Matrix adapter.
//!
//! Why this exists: the core speaks in chats, people and messages; this file says each of
//! those things the Matrix way, with the glue of this module: markdown replies and notices
//! with transaction ids ([`super::send`]), edits as `m.replace`, typing and read receipts,
//! media in and out ([`super::media`]), Spaces and chat rooms ([`super::provision`]), and the
//! namespaced state events that make Matrix the source of truth ([`super::state`]).

use async_trait::async_trait;
use matrix_sdk::ruma::api::client::receipt::create_receipt::v3::ReceiptType;
use matrix_sdk::ruma::events::receipt::ReceiptThread;
use matrix_sdk::ruma::events::room::message::{
    AddMentions, FormattedBody, ForwardThread, ReplyMetadata, RoomMessageEventContent,
};
use matrix_sdk::ruma::events::room::MediaSource;
use matrix_sdk::ruma::{
    EventId, OwnedEventId, OwnedRoomId, OwnedTransactionId, OwnedUserId, RoomId, UserId,
};
use matrix_sdk::{Client, Room};

use super::media::{self, DownloadError};
use super::state::{SurfacesRoomEventContent, SurfacesSpaceEventContent};
use super::{html, provision, state, MatrixError};
use crate::retry::RetryKind;
use crate::surface::encryption::EncryptionIdentity;
use crate::surface::{
    Binding, Capabilities, ChatFacts, ChatId, FetchError, FileRef, HomeFacts, HomePrefs,
    IncomingFile, MessageId, NewChat, OutFile, OutMessage, PersonId, SendKey, Surface,
    SurfaceError, Voice,
};

/// The name of the Matrix surface (store keys, metrics labels).
pub const MATRIX_SURFACE: &str = "matrix";
/// Largest event a homeserver accepts (the spec's limit, 64 KiB; encryption inflates it).
pub const MAX_EVENT_BYTES: usize = 65_536;

/// Matrix, through one logged-in matrix-sdk client.
pub struct MatrixSurface {
    client: Client,
    bot: PersonId,
    encrypt_rooms: bool,
}

impl MatrixSurface {
    /// The surface of the bot logged in as `client` (see [`super::connect`]); new chat
    /// rooms are end-to-end encrypted when `encrypt_rooms`.
    pub fn new(client: Client, encrypt_rooms: bool) -> Result<Self, MatrixError> {
        let bot = client
            .user_id()
            .map(|id| PersonId::new(id.as_str()))
            .ok_or_else(|| MatrixError::Setup("the Matrix session has no user id".to_owned()))?;
        Ok(Self {
            client,
            bot,
            encrypt_rooms,
        })
    }

    /// The client (the inbound half of the adapter syncs with it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn room(&self, chat: &ChatId) -> Result<Room, SurfaceError> {
        RoomId::parse(chat.as_str())
            .ok()
            .and_then(|id| self.client.get_room(&id))
            .ok_or_else(|| SurfaceError::UnknownChat(chat.to_string()))
    }
}

impl From<MatrixError> for SurfaceError {
    fn from(error: MatrixError) -> Self {
        if error.is_invalid_token() {
            return SurfaceError::InvalidCredentials(error.to_string());
        }
        let retry = error.retry_kind();
        SurfaceError::Failed {
            context: "Matrix".to_owned(),
            retry,
            source: Box::new(error),
        }
    }
}

/// A Matrix id the core gave back, parsed (a malformed one is a permanent failure).
fn parse<T>(what: &str, id: &str) -> Result<T, SurfaceError>
where
    T: for<'a> TryFrom<&'a str, Error = matrix_sdk::ruma::IdParseError>,
{
    T::try_from(id).map_err(|e| {
        SurfaceError::failed(format!("reading {what} {id:?}"), RetryKind::Permanent, e)
    })
}

/// The body of an [`OutMessage`]: the markdown as `body`, and when it has any formatting,
/// its HTML rendering, sanitized to the spec's recommended subset ([`super::html`]), as
/// `formatted_body`; `m.text` for the agent's words, `m.notice` for the bot's. Every
/// `formatted_body` the bot sends is made here (replies, notices, edits).
pub fn rendered(voice: Voice, markdown: &str) -> RoomMessageEventContent {
    let html = FormattedBody::markdown(markdown).map(|f| html::sanitize(&f.body));
    match (voice, html) {
        (Voice::Agent, Some(html)) => RoomMessageEventContent::text_html(markdown, html),
        (Voice::Agent, None) => RoomMessageEventContent::text_plain(markdown),
        (Voice::Bot, Some(html)) => {
            RoomMessageEventContent::notice_html(plain_body(markdown), html)
        }
        (Voice::Bot, None) => RoomMessageEventContent::notice_plain(plain_body(markdown)),
    }
}

/// The plain `body` of a notice: its markdown (what clients without HTML show) without the
/// backslashes that only keep a name or a reason from being read as markup (`a\_b` is shown
/// `a_b`). Notices carry no code with backslashes of its own; an agent's reply keeps its
/// markdown as it is. Pure.
pub fn plain_body(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut chars = markdown.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next) = chars.peek() {
                if next.is_ascii_punctuation() {
                    out.push(next);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// The content of an [`OutMessage`] ([`rendered`]); a rich reply (mentioning its author,
/// kept in their thread) when it answers a message.
pub fn message_content(message: &OutMessage) -> Result<RoomMessageEventContent, SurfaceError> {
    let content = rendered(message.voice, &message.markdown);
    Ok(match &message.reply_to {
        Some(to) => {
            let event = parse::<OwnedEventId>("the event id", to.message.as_str())?;
            let sender = parse::<OwnedUserId>("the user id", to.sender.as_str())?;
            content.make_reply_to(
                ReplyMetadata::new(&event, &sender, None),
                ForwardThread::Yes,
                AddMentions::Yes,
            )
        }
        None => content,
    })
}

fn txn(key: &SendKey) -> OwnedTransactionId {
    OwnedTransactionId::from(key.as_str())
}

#[async_trait]
impl Surface for MatrixSurface {
    fn name(&self) -> &'static str {
        MATRIX_SURFACE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            edits: true,
            chat_state: true,
            homes: true,
            max_message_bytes: Some(MAX_EVENT_BYTES),
        }
    }

    fn bot(&self) -> &PersonId {
        &self.bot
    }

    async fn send(&self, chat: &ChatId, message: OutMessage) -> Result<MessageId, SurfaceError> {
        let room = self.room(chat)?;
        let content = message_content(&message)?;
        let mut send = room.send(content);
        if let Some(key) = &message.key {
            send = send.with_transaction_id(txn(key));
        }
        let context = match message.voice {
            Voice::Agent => "sending a reply",
            Voice::Bot => "sending a notice",
        };
        let result = send.await.map_err(|e| MatrixError::from_sdk(context, e))?;
        // In the caller's span: the `msg` of the message this answers.
        tracing::debug!(room_id = %chat, sent = %result.response.event_id, "sent to Matrix");
        Ok(MessageId::new(result.response.event_id.as_str()))
    }

    async fn edit(
        &self,
        chat: &ChatId,
        target: &MessageId,
        message: OutMessage,
    ) -> Result<MessageId, SurfaceError> {
        let room = self.room(chat)?;
        let target = parse::<OwnedEventId>("the event id", target.as_str())?;
        let replacement = rendered(message.voice, &message.markdown).make_replacement(
            matrix_sdk::ruma::events::room::message::ReplacementMetadata::new(target, None),
        );
        let mut send = room.send(replacement);
        if let Some(key) = &message.key {
            send = send.with_transaction_id(txn(key));
        }
        let result = send
            .await
            .map_err(|e| MatrixError::from_sdk("editing a message", e))?;
        Ok(MessageId::new(result.response.event_id.as_str()))
    }

    async fn typing(&self, chat: &ChatId, on: bool) {
        match self.room(chat) {
            Ok(room) => {
                if let Err(error) = room.typing_notice(on).await {
                    tracing::debug!(room_id = %room.room_id(), %error, on, "typing notice failed");
                }
            }
            Err(error) => tracing::debug!(%error, "typing notice for an unknown room"),
        }
    }

    async fn mark_read(&self, chat: &ChatId, message: &MessageId) {
        let (Ok(room), Ok(event)) = (self.room(chat), EventId::parse(message.as_str())) else {
            return;
        };
        if let Err(error) = room
            .send_single_receipt(ReceiptType::Read, ReceiptThread::Unthreaded, event)
            .await
        {
            tracing::debug!(room_id = %chat, %error, "read receipt failed");
        }
    }

    async fn fetch_file(&self, file: &IncomingFile, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
        let source: MediaSource = serde_json::from_str(&file.source.0)
            .map_err(|e| FetchError::Failed(format!("unreadable media source: {e}")))?;
        match media::download(&self.client, &source, max_bytes).await {
            Ok(data) => Ok(data),
            Err(DownloadError::TooLarge { limit }) => Err(FetchError::TooLarge { limit }),
            Err(DownloadError::InvalidLink(error)) => {
                tracing::warn!(%error, name = %file.name,
                    "refusing a file message with a malformed media URI");
                Err(FetchError::Failed(
                    crate::texts::MEDIA_LINK_INVALID.to_owned(),
                ))
            }
            Err(error) => Err(FetchError::Failed(error.to_string())),
        }
    }

    async fn send_file(
        &self,
        chat: &ChatId,
        file: OutFile,
        key: SendKey,
    ) -> Result<MessageId, SurfaceError> {
        let room = self.room(chat)?;
        let mime: mime::Mime = file.mime.parse().unwrap_or(mime::APPLICATION_OCTET_STREAM);
        let event = media::send_file(&room, &file.name, &mime, file.data, &txn(&key)).await?;
        Ok(MessageId::new(event.as_str()))
    }

    async fn accept_invite(&self, chat: &ChatId) -> Result<(), SurfaceError> {
        let room_id = parse::<OwnedRoomId>("the room id", chat.as_str())?;
        provision::join_invite(&self.client, &room_id).await?;
        Ok(())
    }

    async fn decline_invite(&self, chat: &ChatId) -> Result<(), SurfaceError> {
        let room_id = parse::<OwnedRoomId>("the room id", chat.as_str())?;
        provision::leave(&self.client, &room_id).await?;
        Ok(())
    }

    async fn create_home(&self, owner: &PersonId, name: &str) -> Result<ChatId, SurfaceError> {
        let owner = parse::<OwnedUserId>("the user id", owner.as_str())?;
        let space = provision::create_space(&self.client, &owner, name).await?;
        Ok(ChatId::new(space.as_str()))
    }

    async fn create_chat(&self, chat: NewChat) -> Result<ChatId, SurfaceError> {
        let space = parse::<OwnedRoomId>("the room id", chat.home.as_str())?;
        let owner = parse::<OwnedUserId>("the user id", chat.owner.as_str())?;
        let binding = SurfacesRoomEventContent::from(chat.binding);
        let room_id = provision::create_chat_room(
            &self.client,
            &space,
            &owner,
            &chat.name,
            &binding,
            self.encrypt_rooms,
        )
        .await?;
        Ok(ChatId::new(room_id.as_str()))
    }

    async fn rename_chat(&self, chat: &ChatId, name: &str) -> Result<(), SurfaceError> {
        let room = self.room(chat)?;
        room.set_name(name.to_owned())
            .await
            .map_err(|e| MatrixError::from_sdk("renaming a room", e))?;
        Ok(())
    }

    async fn detach_chat(&self, home: &ChatId, chat: &ChatId) -> Result<(), SurfaceError> {
        let space = self.room(home)?;
        // An empty `m.space.child` content removes the link.
        space
            .send_state_event_raw("m.space.child", chat.as_str(), serde_json::json!({}))
            .await
            .map_err(|e| MatrixError::from_sdk("removing a room from its Space", e))?;
        Ok(())
    }

    async fn set_binding(&self, chat: &ChatId, binding: &Binding) -> Result<(), SurfaceError> {
        let room = self.room(chat)?;
        state::set_room_binding(&room, SurfacesRoomEventContent::from(binding.clone())).await?;
        Ok(())
    }

    async fn set_home_prefs(
        &self,
        home: &ChatId,
        owner: &PersonId,
        prefs: &HomePrefs,
    ) -> Result<(), SurfaceError> {
        let space = self.room(home)?;
        let content = SurfacesSpaceEventContent {
            owner: owner.to_string(),
            selected_agent: prefs.selected_agent.clone(),
        };
        space
            .send_state_event(content)
            .await
            .map_err(|e| MatrixError::from_sdk("storing a person's preferences", e))?;
        Ok(())
    }

    async fn chats(&self) -> Result<Vec<ChatId>, SurfaceError> {
        Ok(self
            .client
            .joined_rooms()
            .iter()
            .map(|room| ChatId::new(room.room_id().as_str()))
            .collect())
    }

    async fn encryption_identity(&self) -> Option<EncryptionIdentity> {
        let encryption = self.client.encryption();
        let identity_key = match self.client.user_id() {
            Some(user) => match encryption.get_user_identity(user).await {
                Ok(identity) => identity
                    .and_then(|i| i.master_key().get_first_key())
                    .map(|k| k.to_base64()),
                Err(error) => {
                    tracing::warn!(%error, "cannot read the bot's own identity for !settings");
                    None
                }
            },
            None => None,
        };
        Some(EncryptionIdentity {
            identity_key,
            device_id: self.client.device_id().map(ToString::to_string),
            device_key: encryption.ed25519_key().await,
        })
    }

    async fn chat_facts(&self, chat: &ChatId) -> Result<ChatFacts, SurfaceError> {
        let room = self.room(chat)?;
        let person = |id: &UserId| PersonId::new(id.as_str());
        let marker = state::space_binding_sent(&room).await?;
        let home_sender = marker
            .as_ref()
            .and_then(|m| m.sender.as_deref().map(person));
        let home = match marker.map(|m| m.content) {
            Some(marker) => match UserId::parse(marker.owner.as_str()) {
                Ok(owner) => Some(HomeFacts {
                    owner: PersonId::new(owner.as_str()),
                    prefs: HomePrefs {
                        selected_agent: marker.selected_agent,
                    },
                }),
                Err(error) => {
                    tracing::warn!(room_id = %chat, owner = %marker.owner, %error,
                        "ignoring a Space marker whose owner is not a user id");
                    None
                }
            },
            None => None,
        };
        let binding = state::room_binding_sent(&room).await?;
        let parent = state::space_parent_sent(&room).await?;
        Ok(ChatFacts {
            chat: chat.clone(),
            name: room.name(),
            binding_sender: binding
                .as_ref()
                .and_then(|b| b.sender.as_deref().map(person)),
            binding: binding.map(|b| Binding::from(b.content)),
            home_sender: home.as_ref().and(home_sender),
            home,
            parent_sender: parent
                .as_ref()
                .and_then(|p| p.sender.as_deref().map(person)),
            parent: parent.map(|p| ChatId::new(p.content.as_str())),
            creator: state::room_creator(&room).await?.as_deref().map(person),
            members: state::members(&room)
                .await?
                .iter()
                .map(|id| person(id))
                .collect(),
        })
    }
}

impl From<Binding> for SurfacesRoomEventContent {
    fn from(binding: Binding) -> Self {
        SurfacesRoomEventContent {
            agent_id: binding.agent_id,
            platform_chat_id: binding.platform_chat_id,
            owner: binding.owner,
            chat_index: binding.chat_index,
            archived: binding.archived,
        }
    }
}

impl From<SurfacesRoomEventContent> for Binding {
    fn from(content: SurfacesRoomEventContent) -> Self {
        Binding {
            agent_id: content.agent_id,
            platform_chat_id: content.platform_chat_id,
            owner: content.owner,
            chat_index: content.chat_index,
            archived: content.archived,
        }
    }
}

/// The core's description of a file a person sent in a Matrix message (the media source,
/// with its keys in encrypted rooms, kept as JSON).
pub fn incoming_file(file: media::IncomingFile) -> IncomingFile {
    IncomingFile {
        name: file.name,
        mime: file.mime,
        size: file.size,
        caption: file.caption,
        source: FileRef(serde_json::to_string(&file.source).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Retryable;
    use crate::surface::ReplyTo;
    use crate::texts;
    use matrix_sdk::ruma::events::room::message::{MessageType, Relation};

    /// Notices built from names and reasons people and agents write: the plain body shows
    /// them as written (no escaping backslashes), the formatted body neither shows a
    /// backslash nor lets them become markup.
    #[test]
    fn notices_show_names_and_reasons_as_written_in_both_bodies() {
        let hostile = "a_b *c* `d` [e](f) <g> #h |i| ~j~";
        let table = [
            texts::agent_unreachable(hostile, hostile),
            texts::agent_error(hostile, hostile),
            texts::renamed(hostile),
            texts::welcome(hostile),
            texts::agent_timeout(hostile, 5),
            texts::reply_undeliverable(hostile),
        ];
        for markdown in table {
            let content = rendered(Voice::Bot, &markdown);
            let MessageType::Notice(notice) = &content.msgtype else {
                panic!("not a notice: {:?}", content.msgtype);
            };
            assert!(!notice.body.contains('\\'), "plain body: {}", notice.body);
            assert!(
                notice.body.contains("a_b *c* `d`"),
                "plain body: {}",
                notice.body
            );
            let html = notice
                .formatted
                .as_ref()
                .map(|f| f.body.as_str())
                .unwrap_or_default();
            assert!(!html.contains('\\'), "formatted body: {html}");
            assert!(
                !html.contains("<em>c</em>") && !html.contains("<code>d</code>"),
                "{html}"
            );
        }
        assert_eq!(plain_body(r"a\_b \d \\ x"), r"a_b \d \ x");
    }

    #[test]
    fn out_messages_become_the_right_content() {
        let reply = OutMessage::reply(
            ReplyTo {
                message: MessageId::new("$orig"),
                sender: PersonId::new("@alice:example.org"),
            },
            "**hello** _world_",
            SendKey::new("k"),
        );
        let content = message_content(&reply).unwrap();
        let MessageType::Text(text) = &content.msgtype else {
            panic!("not m.text: {:?}", content.msgtype);
        };
        assert_eq!(text.body, "**hello** _world_");
        let html = &text.formatted.as_ref().expect("formatted body").body;
        assert!(html.contains("<strong>hello</strong>"), "{html}");
        match &content.relates_to {
            Some(Relation::Reply(r)) => assert_eq!(r.in_reply_to.event_id.as_str(), "$orig"),
            other => panic!("not a reply: {other:?}"),
        }
        assert!(content
            .mentions
            .as_ref()
            .expect("mentions")
            .user_ids
            .iter()
            .any(|u| u.as_str() == "@alice:example.org"));

        let notice = message_content(&OutMessage::notice("plain words", None)).unwrap();
        let MessageType::Notice(n) = &notice.msgtype else {
            panic!("not m.notice");
        };
        assert!(n.formatted.is_none());
        assert!(notice.relates_to.is_none());

        let bad = OutMessage::reply(
            ReplyTo {
                message: MessageId::new("not an event id"),
                sender: PersonId::new("@alice:example.org"),
            },
            "x",
            SendKey::new("k"),
        );
        let error = message_content(&bad).unwrap_err();
        assert_eq!(error.retry_kind(), RetryKind::Permanent);
    }

    #[test]
    fn every_formatted_body_is_sanitized() {
        let hostile = "**hi** <img src=\"https://tracker.example/p.gif\"> \
                       <mx-reply><blockquote>fake</blockquote></mx-reply>\
                       <a href=\"javascript:x()\">a</a>";
        let reply = OutMessage::reply(
            ReplyTo {
                message: MessageId::new("$orig"),
                sender: PersonId::new("@alice:example.org"),
            },
            hostile,
            SendKey::new("k"),
        );
        let notice = OutMessage::notice(hostile, None);
        for message in [reply, notice] {
            let content = message_content(&message).unwrap();
            let formatted = match &content.msgtype {
                MessageType::Text(t) => t.formatted.clone(),
                MessageType::Notice(n) => n.formatted.clone(),
                other => panic!("{other:?}"),
            };
            let html = formatted.expect("formatted body").body;
            assert!(html.contains("<strong>hi</strong>"), "{html}");
            for banned in ["tracker", "mx-reply", "fake", "javascript"] {
                assert!(!html.contains(banned), "{banned} in {html}");
            }
        }
        // Edits are rendered the same way.
        let MessageType::Text(t) = rendered(Voice::Agent, hostile).msgtype else {
            panic!("not m.text")
        };
        assert!(!t.formatted.unwrap().body.contains("tracker"));
    }

    #[test]
    fn bindings_round_trip_through_the_state_event() {
        let binding = Binding {
            agent_id: "coder".into(),
            platform_chat_id: "sfc-7".into(),
            owner: "@alice:example.org".into(),
            chat_index: 3,
            archived: true,
        };
        let content = SurfacesRoomEventContent::from(binding.clone());
        assert_eq!(Binding::from(content.clone()), binding);
        assert_eq!(
            serde_json::to_value(&content).unwrap(),
            serde_json::to_value(&binding).unwrap(),
            "the same fields on the wire"
        );
    }
}
