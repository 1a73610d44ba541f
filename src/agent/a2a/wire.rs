//! The A2A 1.0 JSON-RPC wire format: the requests Surfaces sends and the answers it reads.
//!
//! Why this file exists: the protocol's JSON (the protobuf JSON mapping: camelCase fields,
//! enums as `TASK_STATE_*` / `ROLE_*` strings, bytes as base64) is kept here, apart from what
//! a turn does with it. Reading is lenient where agents in the field differ harmlessly (the
//! 0.3 spellings of states and parts are accepted too); unknown fields are ignored.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version Surfaces speaks (sent as [`VERSION_HEADER`]).
pub const PROTOCOL_VERSION: &str = "1.0";
/// The header naming the protocol version of a request.
pub const VERSION_HEADER: &str = "A2A-Version";
/// The protocol binding Surfaces speaks, as agent cards name it.
pub const JSONRPC_BINDING: &str = "JSONRPC";

/// A JSON-RPC 2.0 request.
#[derive(Debug, Serialize)]
pub struct Request<'a, P: Serialize> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    params: P,
}

impl<'a, P: Serialize> Request<'a, P> {
    /// Call `method` with `params`.
    pub fn new(id: u64, method: &'a str, params: P) -> Self {
        Request {
            jsonrpc: "2.0",
            id,
            method,
            params,
        }
    }
}

/// The methods Surfaces calls.
pub mod method {
    /// Send a message, the answer streamed.
    pub const SEND_STREAMING: &str = "SendStreamingMessage";
    /// Send a message, the answer whole.
    pub const SEND: &str = "SendMessage";
    /// A task's current state.
    pub const GET_TASK: &str = "GetTask";
    /// Stop a task.
    pub const CANCEL_TASK: &str = "CancelTask";
    /// The stream of a running task, again (after a broken stream).
    pub const SUBSCRIBE: &str = "SubscribeToTask";
}

/// A message from the person (`role = ROLE_USER`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutMessage {
    /// Derived from the messenger's event id: a resent turn is the same message.
    pub message_id: String,
    /// The conversation: the room's platform chat id.
    pub context_id: String,
    /// The task it continues (an answer to `input-required`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Always `ROLE_USER`.
    pub role: &'static str,
    /// Its text and files.
    pub parts: Vec<OutPart>,
}

impl OutMessage {
    /// A message of `text` and `files` in `context_id`, continuing `task_id` when given.
    pub fn user(
        message_id: &str,
        context_id: &str,
        task_id: Option<&str>,
        text: &str,
        files: Vec<OutPart>,
    ) -> Self {
        let mut parts = Vec::with_capacity(files.len() + 1);
        if !text.is_empty() || files.is_empty() {
            parts.push(OutPart::Text {
                text: text.to_owned(),
            });
        }
        parts.extend(files);
        OutMessage {
            message_id: message_id.to_owned(),
            context_id: context_id.to_owned(),
            task_id: task_id.map(str::to_owned),
            role: "ROLE_USER",
            parts,
        }
    }
}

/// One part of a message Surfaces sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OutPart {
    /// Text.
    Text { text: String },
    /// A file's bytes, inline (base64).
    #[serde(rename_all = "camelCase")]
    Raw {
        raw: String,
        filename: String,
        media_type: String,
    },
}

impl OutPart {
    /// A file part carrying `data`.
    pub fn file(name: &str, media_type: &str, data: &[u8]) -> Self {
        OutPart::Raw {
            raw: base64::engine::general_purpose::STANDARD.encode(data),
            filename: name.to_owned(),
            media_type: media_type.to_owned(),
        }
    }
}

/// `SendMessage` / `SendStreamingMessage` parameters.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SendParams<'a> {
    /// The message.
    pub message: &'a OutMessage,
    /// What Surfaces can show.
    pub configuration: SendConfiguration,
}

/// How the answer should come.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SendConfiguration {
    /// The output modes Surfaces shows (text, and files of any type).
    pub accepted_output_modes: Vec<&'static str>,
}

impl Default for SendConfiguration {
    fn default() -> Self {
        SendConfiguration {
            accepted_output_modes: vec!["text/plain", "text/markdown", "*/*"],
        }
    }
}

/// Parameters naming one task (`GetTask`, `CancelTask`, `SubscribeToTask`).
#[derive(Debug, Serialize)]
pub struct TaskParams<'a> {
    /// The task id.
    pub id: &'a str,
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RpcError {
    /// The error code (`-32001` task not found, `-32002` not cancelable, …).
    #[serde(default)]
    pub code: i64,
    /// What went wrong.
    #[serde(default)]
    pub message: String,
}

/// Error codes of the protocol that Surfaces acts on.
pub mod code {
    /// No such task.
    pub const TASK_NOT_FOUND: i64 = -32001;
    /// The task cannot be cancelled (it has ended).
    pub const TASK_NOT_CANCELABLE: i64 = -32002;
    /// The operation is not supported (streaming, resubscribing to an ended task).
    pub const UNSUPPORTED_OPERATION: i64 = -32004;
    /// The agent's own failure.
    pub const INTERNAL: i64 = -32603;
}

/// A JSON-RPC response: `result` or `error`.
#[derive(Debug, Deserialize)]
pub struct Response<T> {
    /// The answer.
    pub result: Option<T>,
    /// The failure.
    pub error: Option<RpcError>,
}

/// One event of a stream (and the answer of `SendMessage`): exactly one field is set.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamItem {
    /// The whole task (first event, or a snapshot).
    pub task: Option<Task>,
    /// A message from the agent (a direct answer without a task).
    pub message: Option<Message>,
    /// The task's status changed.
    pub status_update: Option<StatusUpdate>,
    /// An artifact grew or was replaced.
    pub artifact_update: Option<ArtifactUpdate>,
}

/// A task.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// Its id.
    #[serde(default)]
    pub id: String,
    /// Its conversation.
    #[serde(default)]
    pub context_id: String,
    /// Where it stands.
    #[serde(default)]
    pub status: TaskStatus,
    /// What it produced so far.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
}

/// A task's status.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TaskStatus {
    /// The state.
    #[serde(default)]
    pub state: TaskState,
    /// What the agent says with it (the question of `input-required`, the reason of `failed`).
    #[serde(default)]
    pub message: Option<Message>,
}

/// `statusUpdate`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusUpdate {
    /// The task.
    #[serde(default)]
    pub task_id: String,
    /// The new status.
    #[serde(default)]
    pub status: TaskStatus,
}

/// `artifactUpdate`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactUpdate {
    /// The task.
    #[serde(default)]
    pub task_id: String,
    /// The artifact (whole, or the chunk to append).
    #[serde(default)]
    pub artifact: Artifact,
    /// Whether the parts are appended to the artifact of that id.
    #[serde(default)]
    pub append: bool,
}

/// An artifact: something the task produced.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Its id within the task.
    #[serde(default)]
    pub artifact_id: String,
    /// Its name.
    #[serde(default)]
    pub name: Option<String>,
    /// Its parts.
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// A message (the agent's, in a status or as a direct answer).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Its task, when it belongs to one.
    #[serde(default)]
    pub task_id: Option<String>,
    /// Its parts.
    #[serde(default)]
    pub parts: Vec<Part>,
}

impl Message {
    /// The text of its text parts, joined.
    pub fn text(&self) -> String {
        text_of(&self.parts)
    }
}

/// The text of `parts`, joined as they are (the chunks of a streamed artifact are parts);
/// a data part is shown as a JSON block.
pub fn text_of(parts: &[Part]) -> String {
    let mut text = String::new();
    for part in parts {
        if let Some(t) = &part.text {
            text.push_str(t);
        } else if let Some(data) = &part.data {
            let json = serde_json::to_string_pretty(data).unwrap_or_default();
            text.push_str(&format!("\n```json\n{json}\n```\n"));
        }
    }
    text
}

/// One part: text, a file (inline bytes or a URL), or data.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// Text.
    pub text: Option<String>,
    /// A file's bytes, base64.
    pub raw: Option<String>,
    /// A file's URL.
    pub url: Option<String>,
    /// Structured data (shown as JSON).
    pub data: Option<Value>,
    /// The file's name.
    pub filename: Option<String>,
    /// The file's type.
    pub media_type: Option<String>,
    /// The 0.3 spelling of a file (`{"kind": "file", "file": {...}}`).
    pub(super) file: Option<LegacyFile>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LegacyFile {
    bytes: Option<String>,
    uri: Option<String>,
    name: Option<String>,
    mime_type: Option<String>,
}

/// Where a file part's content is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// Inline, base64.
    Inline(String),
    /// At a URL.
    Url(String),
}

/// A file part, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePart {
    /// Its content.
    pub source: FileSource,
    /// Its name (may be empty).
    pub name: String,
    /// Its type (may be empty).
    pub media_type: String,
}

impl Part {
    /// The file it carries, if it is one.
    pub fn file(&self) -> Option<FilePart> {
        let (source, name, media_type) = if let Some(raw) = &self.raw {
            (
                FileSource::Inline(raw.clone()),
                &self.filename,
                &self.media_type,
            )
        } else if let Some(url) = &self.url {
            (
                FileSource::Url(url.clone()),
                &self.filename,
                &self.media_type,
            )
        } else {
            let legacy = self.file.as_ref()?;
            let source = match (&legacy.bytes, &legacy.uri) {
                (Some(bytes), _) => FileSource::Inline(bytes.clone()),
                (None, Some(uri)) => FileSource::Url(uri.clone()),
                (None, None) => return None,
            };
            (source, &legacy.name, &legacy.mime_type)
        };
        Some(FilePart {
            source,
            name: name.clone().unwrap_or_default(),
            media_type: media_type.clone().unwrap_or_default(),
        })
    }
}

/// A task's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TaskState {
    /// Not said (or a spelling Surfaces does not know).
    #[default]
    Unspecified,
    /// Received.
    Submitted,
    /// Running.
    Working,
    /// Done.
    Completed,
    /// Failed.
    Failed,
    /// Cancelled.
    Canceled,
    /// Waits for the person's answer.
    InputRequired,
    /// The agent refused it.
    Rejected,
    /// Waits for credentials the agent needs.
    AuthRequired,
}

impl TaskState {
    /// Reads a state in the 1.0 spelling (`TASK_STATE_INPUT_REQUIRED`) or 0.3's
    /// (`input-required`).
    pub fn parse(s: &str) -> TaskState {
        let s = s.strip_prefix("TASK_STATE_").unwrap_or(s);
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "submitted" => TaskState::Submitted,
            "working" => TaskState::Working,
            "completed" => TaskState::Completed,
            "failed" => TaskState::Failed,
            "canceled" | "cancelled" => TaskState::Canceled,
            "input-required" => TaskState::InputRequired,
            "rejected" => TaskState::Rejected,
            "auth-required" => TaskState::AuthRequired,
            _ => TaskState::Unspecified,
        }
    }

    /// The task has ended, or waits for the person: its stream ends here.
    pub fn ends_stream(self) -> bool {
        !matches!(
            self,
            TaskState::Submitted | TaskState::Working | TaskState::Unspecified
        )
    }
}

impl<'de> Deserialize<'de> for TaskState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(TaskState::parse(&s))
    }
}

/// Parses one stream event's data (a JSON-RPC response carrying a [`StreamItem`]).
pub fn parse_stream_item(data: &str) -> Result<StreamItem, ParseError> {
    let response: Response<StreamItem> =
        serde_json::from_str(data).map_err(|e| ParseError::Json(e.to_string()))?;
    into_result(response)
}

/// The result of a response, or its error.
pub fn into_result<T>(response: Response<T>) -> Result<T, ParseError> {
    match (response.result, response.error) {
        (_, Some(error)) => Err(ParseError::Rpc(error)),
        (Some(result), None) => Ok(result),
        (None, None) => Err(ParseError::Json(
            "a response with neither result nor error".to_owned(),
        )),
    }
}

/// A response that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not the JSON expected.
    Json(String),
    /// The agent answered with a JSON-RPC error.
    Rpc(RpcError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_in_both_spellings() {
        let table = [
            ("TASK_STATE_WORKING", TaskState::Working),
            ("TASK_STATE_INPUT_REQUIRED", TaskState::InputRequired),
            ("TASK_STATE_AUTH_REQUIRED", TaskState::AuthRequired),
            ("TASK_STATE_CANCELED", TaskState::Canceled),
            ("input-required", TaskState::InputRequired),
            ("completed", TaskState::Completed),
            ("rejected", TaskState::Rejected),
            ("bogus", TaskState::Unspecified),
            ("", TaskState::Unspecified),
        ];
        for (spelling, state) in table {
            assert_eq!(TaskState::parse(spelling), state, "{spelling}");
        }
        assert!(!TaskState::Working.ends_stream());
        assert!(TaskState::InputRequired.ends_stream());
        assert!(TaskState::Completed.ends_stream());
    }

    #[test]
    fn user_message_per_protocol() {
        let message = OutMessage::user(
            "m1",
            "chat-1",
            Some("task-9"),
            "hi",
            vec![OutPart::file("a.txt", "text/plain", b"abc")],
        );
        let json = serde_json::to_value(&message).ok();
        let want = serde_json::json!({
            "messageId": "m1", "contextId": "chat-1", "taskId": "task-9", "role": "ROLE_USER",
            "parts": [{"text": "hi"},
                      {"raw": "YWJj", "filename": "a.txt", "mediaType": "text/plain"}]
        });
        assert_eq!(json, Some(want));
        let bare = OutMessage::user("m2", "c", None, "", vec![]);
        let json = serde_json::to_value(&bare).ok();
        let want = serde_json::json!({
            "messageId": "m2", "contextId": "c", "role": "ROLE_USER", "parts": [{"text": ""}]
        });
        assert_eq!(json, Some(want));
    }

    #[test]
    fn stream_items_parse() {
        let status = r#"{"jsonrpc":"2.0","id":1,"result":{"statusUpdate":{"taskId":"t",
            "contextId":"c","status":{"state":"TASK_STATE_INPUT_REQUIRED","message":{
            "messageId":"x","role":"ROLE_AGENT","parts":[{"text":"Proceed?"}]}}}}}"#;
        let item = parse_stream_item(status).ok().and_then(|i| i.status_update);
        let update = item.unwrap_or_default();
        assert_eq!(update.task_id, "t");
        assert_eq!(update.status.state, TaskState::InputRequired);
        assert_eq!(
            update.status.message.map(|m| m.text()),
            Some("Proceed?".to_owned())
        );

        let artifact = r#"{"jsonrpc":"2.0","id":1,"result":{"artifactUpdate":{"taskId":"t",
            "artifact":{"artifactId":"a","parts":[{"raw":"cmVwb3J0","filename":"r.txt",
            "mediaType":"text/plain"},{"url":"http://x/f","filename":"f"},
            {"kind":"file","file":{"uri":"http://x/g","name":"g","mimeType":"image/png"}}]},
            "append":true}}}"#;
        let update = parse_stream_item(artifact)
            .ok()
            .and_then(|i| i.artifact_update)
            .unwrap_or_default();
        assert!(update.append);
        let files: Vec<FilePart> = update
            .artifact
            .parts
            .iter()
            .filter_map(Part::file)
            .collect();
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].source, FileSource::Inline("cmVwb3J0".into()));
        assert_eq!(files[1].source, FileSource::Url("http://x/f".into()));
        assert_eq!(
            (files[2].name.as_str(), files[2].media_type.as_str()),
            ("g", "image/png")
        );

        let error =
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"Task not found"}}"#;
        assert_eq!(
            parse_stream_item(error),
            Err(ParseError::Rpc(RpcError {
                code: code::TASK_NOT_FOUND,
                message: "Task not found".into()
            }))
        );
        assert!(matches!(
            parse_stream_item("not json"),
            Err(ParseError::Json(_))
        ));
        assert!(matches!(
            parse_stream_item(r#"{"jsonrpc":"2.0","id":1}"#),
            Err(ParseError::Json(_))
        ));
    }
}
