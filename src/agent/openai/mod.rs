//! An OpenAI-compatible chat completions server as an agent (`kind = "openai"`).
//!
//! Why this exists: practically every model server (vLLM, llama.cpp, Ollama, LiteLLM, hosted
//! providers) speaks `POST <base_url>/chat/completions`; with this kind an operator puts any of
//! them behind a room with a few lines of config. Such a server is stateless, so Surfaces keeps
//! each chat's conversation ([`history`]) and answers the context commands itself: `!context`
//! counts the kept messages and their estimated tokens, `!save`/`!load` snapshot and restore
//! them, `!clear` starts a new conversation. A turn sends the system prompt, the history within
//! its budget and the person's message, with `stream: true`; the streamed text feeds the reply
//! (and live replies) like any agent's `delta`s. `!cancel` stops reading the stream.
//!
//! The transport is the `http` kind's ([`HttpAgent`]): the API key as a bearer token, the
//! silence and whole-turn timeouts, and HTTP statuses mapped onto the retry policy (429 with
//! `Retry-After` and 5xx transient; 400, 401, 404 permanent). With `images = true`, images
//! the person sends (read from the agent's `workspace`, where incoming files land) go with
//! their message as image parts, inline up to [`MAX_IMAGE_BYTES`]; the history keeps a note
//! of them, not their bytes. Other files, or any file without `images`, are refused with a
//! notice naming the limit.

pub mod history;
pub mod wire;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use self::history::{keep_from, Conversation, Conversations, LastTurn};
use self::wire::{parse_chunk, request_body, ChatMessage, Chunk, ImagePart, Role};
use super::{
    AgentError, AgentEvent, Attachment, ContextInfo, ErrorBody, FileEvent, HealthInfo, HttpAgent,
    SnapshotInfo, TurnOutcome, TurnRequest, CANCELLED_CODE,
};
use crate::config::OpenAiSettings;
use crate::store::{Store, StoreError};

/// The code of the failure a turn with a file the model cannot take ends with.
pub const UNSUPPORTED_FILE_CODE: &str = "unsupported_file";
/// Largest image sent inline (the common providers' limit).
pub const MAX_IMAGE_BYTES: u64 = 20 * 1024 * 1024;

/// An OpenAI-compatible agent.
pub struct OpenAiAgent {
    http: HttpAgent,
    settings: OpenAiSettings,
    /// Where incoming files land (images are read from there).
    workspace: Option<PathBuf>,
    conversations: Conversations,
    /// Running turns by id, to stop on `!cancel`.
    running: Mutex<HashMap<String, Arc<Notify>>>,
}

impl std::fmt::Debug for OpenAiAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiAgent")
            .field("http", &self.http)
            .field("model", &self.settings.model)
            .finish_non_exhaustive()
    }
}

fn store_error(error: StoreError) -> AgentError {
    AgentError::Store(error.to_string())
}

/// Ends a running turn's registration when the turn ends, however it ends.
struct Running<'a> {
    agent: &'a OpenAiAgent,
    turn_id: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.agent.running.lock().remove(&self.turn_id);
    }
}

impl OpenAiAgent {
    /// Agent `agent_id` over `http` (the server's base URL, up to and including `/v1`),
    /// asked per `settings`, its conversations in `store`, incoming files in `workspace`.
    pub fn new(
        http: HttpAgent,
        settings: OpenAiSettings,
        workspace: Option<PathBuf>,
        store: &Store,
        agent_id: &str,
    ) -> Result<Self, AgentError> {
        Ok(Self {
            http,
            settings,
            workspace,
            conversations: Conversations::open(store, agent_id).map_err(store_error)?,
            running: Mutex::default(),
        })
    }

    /// Cuts turns past `max_bytes` (see [`HttpAgent::set_max_turn_bytes`]).
    pub fn http_mut(&mut self) -> &mut HttpAgent {
        &mut self.http
    }

    /// One turn: the history and the message to the server, its streamed answer to
    /// `on_event`, then both kept in the chat's conversation.
    pub async fn turn(
        &self,
        chat: &str,
        req: &TurnRequest,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        let mut conversation = self.conversations.load(chat).map_err(store_error)?;
        if let Some(last) = conversation
            .last_turn
            .as_ref()
            .filter(|l| l.turn_id == req.turn_id)
        {
            // A retry or a resume of the turn answered last: its reply, not a second request.
            return Ok(replay(&last.reply, on_event));
        }
        let images = self.images_of(&req.attachments).await?;
        let settings = &self.settings;
        let from = keep_from(
            &conversation.messages,
            settings.history_max_messages.saturating_sub(1),
            settings.history_max_tokens,
        );
        let body = request_body(settings, &conversation.messages[from..], &req.text, &images);
        let url = format!("{}/chat/completions", self.http.base_url());
        let cancel = Arc::new(Notify::new());
        self.running
            .lock()
            .insert(req.turn_id.clone(), cancel.clone());
        let _running = Running {
            agent: self,
            turn_id: req.turn_id.clone(),
        };
        // The text so far: `done` carries it whole (a last chunk's text is in no delta).
        let mut said = String::new();
        let mut decode = |sse: &crate::agent::sse::SseEvent, out: &mut Vec<AgentEvent>| {
            match parse_chunk(&sse.data)? {
                Chunk::Text(text) if text.is_empty() => {}
                Chunk::Text(text) => {
                    said.push_str(&text);
                    out.push(AgentEvent::Delta { text });
                }
                Chunk::Finish(text) => {
                    said.push_str(&text);
                    out.push(AgentEvent::Done {
                        text: std::mem::take(&mut said),
                    });
                }
                Chunk::Done => out.push(AgentEvent::Done {
                    text: std::mem::take(&mut said),
                }),
            }
            Ok(())
        };
        let outcome = tokio::select! {
            outcome = self.http.stream_decoded(&url, &body, &mut decode, on_event) => outcome?,
            () = cancel.notified() => {
                let event = AgentEvent::Error {
                    code: CANCELLED_CODE.to_owned(),
                    message: "cancelled".to_owned(),
                };
                on_event(&event);
                return Err(AgentError::TurnFailed {
                    code: CANCELLED_CODE.to_owned(),
                    message: "cancelled".to_owned(),
                });
            }
        };
        // The history notes the images, without their bytes.
        let mut asked = req.text.clone();
        for file in &req.attachments {
            asked.push_str(&format!("\n[image: {}]", file.name));
        }
        conversation
            .messages
            .push(ChatMessage::new(Role::User, asked));
        conversation
            .messages
            .push(ChatMessage::new(Role::Assistant, outcome.reply.clone()));
        let kept = keep_from(
            &conversation.messages,
            settings.history_max_messages,
            settings.history_max_tokens,
        );
        conversation.messages.drain(..kept);
        conversation.last_turn = Some(LastTurn {
            turn_id: req.turn_id.clone(),
            reply: outcome.reply.clone(),
        });
        self.conversations
            .save(chat, &conversation)
            .await
            .map_err(store_error)?;
        Ok(outcome)
    }

    /// The turn's files as image parts; a file the model cannot take fails the turn with a
    /// notice naming the limit.
    async fn images_of(&self, files: &[Attachment]) -> Result<Vec<ImagePart>, AgentError> {
        let mut images = Vec::with_capacity(files.len());
        for file in files {
            let refuse = |message: String| AgentError::TurnFailed {
                code: UNSUPPORTED_FILE_CODE.to_owned(),
                message,
            };
            let workspace = match &self.workspace {
                Some(workspace) if self.settings.images => workspace.clone(),
                _ => return Err(refuse(crate::texts::model_takes_text_only(&file.name))),
            };
            if !file.mime.starts_with("image/") {
                let limit = crate::files::human_size(MAX_IMAGE_BYTES);
                return Err(refuse(crate::texts::model_takes_images_only(
                    &file.name, &limit,
                )));
            }
            let event = FileEvent {
                path: file.path.clone(),
                name: file.name.clone(),
                mime: file.mime.clone(),
            };
            let loaded = tokio::task::spawn_blocking(move || {
                crate::files::load_outbound(&workspace, &event, MAX_IMAGE_BYTES)
            })
            .await
            .map_err(|e| AgentError::Io(format!("reading an image: {e}")))?;
            match loaded {
                Ok(image) => images.push(ImagePart::new(image.mime.essence_str(), &image.data)),
                Err(refusal) => {
                    tracing::warn!(name = %file.name, %refusal, "cannot read an image for the model");
                    let limit = crate::files::human_size(MAX_IMAGE_BYTES);
                    return Err(refuse(crate::texts::image_not_sent(&file.name, &limit)));
                }
            }
        }
        Ok(images)
    }

    /// Stops a running turn (its stream is no longer read); a turn not running is not an error.
    pub fn cancel(&self, _chat: &str, turn_id: &str) -> Result<(), AgentError> {
        if let Some(cancel) = self.running.lock().get(turn_id) {
            cancel.notify_one();
        }
        Ok(())
    }

    /// The kept messages of `chat`, their estimated tokens, and its snapshots.
    pub fn context(&self, chat: &str) -> Result<ContextInfo, AgentError> {
        let conversation: Conversation = self.conversations.load(chat).map_err(store_error)?;
        Ok(ContextInfo {
            messages: u64::try_from(conversation.messages.len()).unwrap_or(u64::MAX),
            tokens: conversation.tokens(),
            summary: None,
            snapshots: self.conversations.snapshots_of(chat).map_err(store_error)?,
        })
    }

    /// Saves `chat`'s conversation as snapshot `name`.
    pub async fn save_snapshot(&self, chat: &str, name: &str) -> Result<SnapshotInfo, AgentError> {
        let messages = self
            .conversations
            .save_snapshot(chat, name)
            .await
            .map_err(store_error)?;
        Ok(SnapshotInfo {
            name: name.to_owned(),
            messages,
        })
    }

    /// Makes snapshot `snapshot` (saved in `from_chat`, else in `chat`) `chat`'s conversation.
    pub async fn restore(
        &self,
        chat: &str,
        snapshot: &str,
        from_chat: Option<&str>,
    ) -> Result<(), AgentError> {
        let from = from_chat.unwrap_or(chat);
        if self
            .conversations
            .restore(chat, from, snapshot)
            .await
            .map_err(store_error)?
        {
            Ok(())
        } else {
            Err(AgentError::Rejected {
                status: 404,
                body: Some(ErrorBody {
                    code: "not_found".to_owned(),
                    message: format!("no snapshot {snapshot:?}"),
                }),
            })
        }
    }

    /// Forgets `chat`'s conversation.
    pub async fn delete_chat(&self, chat: &str) -> Result<(), AgentError> {
        self.conversations.delete(chat).await.map_err(store_error)
    }

    /// `GET <base_url>/models`: the server answers (whether it lists the model is logged:
    /// some servers list other names for the models they serve).
    pub async fn health(&self) -> Result<HealthInfo, AgentError> {
        #[derive(serde::Deserialize)]
        struct Models {
            #[serde(default)]
            data: Vec<Model>,
        }
        #[derive(serde::Deserialize)]
        struct Model {
            #[serde(default)]
            id: String,
        }
        let models: Models = self.http.get_json("/models").await?;
        if !models.data.iter().any(|m| m.id == self.settings.model) {
            tracing::debug!(model = %self.settings.model, "the server does not list the model");
        }
        Ok(HealthInfo {
            status: "ok".to_owned(),
            agent: self.settings.model.clone(),
            version: String::new(),
        })
    }
}

/// The events and outcome of a turn answered before.
fn replay(reply: &str, on_event: &mut (dyn FnMut(&AgentEvent) + Send)) -> TurnOutcome {
    on_event(&AgentEvent::Delta {
        text: reply.to_owned(),
    });
    on_event(&AgentEvent::Done {
        text: reply.to_owned(),
    });
    TurnOutcome {
        reply: reply.to_owned(),
        ..TurnOutcome::default()
    }
}
