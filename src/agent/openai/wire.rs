//! The OpenAI-compatible chat completions wire format: the request a turn sends and the
//! chunks its stream answers with. Pure, so every server's quirks are table-tested here.
//!
//! A streamed answer is server-sent events whose `data` is a `chat.completion.chunk` (the
//! text in `choices[0].delta.content`), ended by `data: [DONE]`; some servers report an error
//! mid-stream as `data: {"error": {...}}`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::agent::AgentError;
use crate::config::OpenAiSettings;

/// Who said a message of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The system prompt.
    System,
    /// The person.
    User,
    /// The model.
    Assistant,
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl ChatMessage {
    /// A message of `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// An image sent with the person's message, as a `data:` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagePart {
    /// `data:<mime>;base64,<bytes>`.
    pub data_url: String,
}

impl ImagePart {
    /// The image `data` of type `mime`.
    pub fn new(mime: &str, data: &[u8]) -> Self {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(data);
        Self {
            data_url: format!("data:{mime};base64,{encoded}"),
        }
    }
}

/// The body of `POST /chat/completions` for a streamed turn: the system prompt, the history,
/// then the person's message (with its images as parts, when there are any).
pub fn request_body(
    settings: &OpenAiSettings,
    history: &[ChatMessage],
    user: &str,
    images: &[ImagePart],
) -> Value {
    let mut messages = Vec::with_capacity(history.len() + 2);
    if let Some(prompt) = &settings.system_prompt {
        messages.push(json!({ "role": "system", "content": prompt }));
    }
    for message in history {
        messages.push(json!({ "role": message.role, "content": message.content }));
    }
    if images.is_empty() {
        messages.push(json!({ "role": "user", "content": user }));
    } else {
        let mut parts = vec![json!({ "type": "text", "text": user })];
        parts.extend(
            images
                .iter()
                .map(|i| json!({ "type": "image_url", "image_url": { "url": i.data_url } })),
        );
        messages.push(json!({ "role": "user", "content": parts }));
    }
    let mut body = json!({
        "model": settings.model,
        "messages": messages,
        "stream": true,
    });
    if let Some(t) = settings.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(n) = settings.max_tokens {
        body["max_tokens"] = json!(n);
    }
    body
}

/// What one event of the stream says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// More of the reply (may be empty: a role announcement, a keep-alive).
    Text(String),
    /// The end of the stream (`[DONE]`).
    Done,
    /// The last chunk of the answer (a choice's `finish_reason`), with its text: the answer
    /// is complete here, whether or not a `[DONE]` follows.
    Finish(String),
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    error: Option<StreamError>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct StreamError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// Parses the `data` of one event of the stream. An error the server reports mid-stream
/// fails the turn (`TurnFailed`, code `openai_error`); garbage is a protocol error.
pub fn parse_chunk(data: &str) -> Result<Chunk, AgentError> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Chunk::Done);
    }
    let completion: Completion = serde_json::from_str(data)
        .map_err(|e| AgentError::Protocol(format!("invalid completion chunk: {e}")))?;
    if let Some(error) = completion.error {
        return Err(AgentError::TurnFailed {
            code: error.kind.unwrap_or_else(|| "openai_error".to_owned()),
            message: error.message.unwrap_or_default(),
        });
    }
    let Some(choice) = completion.choices.into_iter().next() else {
        return Ok(Chunk::Text(String::new()));
    };
    let text = choice.delta.and_then(|d| d.content).unwrap_or_default();
    match choice.finish_reason {
        Some(_) => Ok(Chunk::Finish(text)),
        None => Ok(Chunk::Text(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_table() {
        // (data, parsed)
        let table: &[(&str, Result<Chunk, &str>)] = &[
            ("[DONE]", Ok(Chunk::Done)),
            (" [DONE] ", Ok(Chunk::Done)),
            (
                r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
                Ok(Chunk::Text("Hel".into())),
            ),
            (
                r#"{"choices":[{"delta":{"role":"assistant"}}]}"#,
                Ok(Chunk::Text(String::new())),
            ),
            (
                r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
                Ok(Chunk::Finish(String::new())),
            ),
            (
                r#"{"choices":[{"delta":{"content":"end"},"finish_reason":"length"}]}"#,
                Ok(Chunk::Finish("end".into())),
            ),
            (r#"{"choices":[]}"#, Ok(Chunk::Text(String::new()))),
            (
                r#"{"choices":[{"delta":{"content":null}}]}"#,
                Ok(Chunk::Text(String::new())),
            ),
            (
                r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
                Err("server_error"),
            ),
            ("not json", Err("protocol")),
        ];
        for (data, expected) in table {
            let got = parse_chunk(data);
            match (expected, got) {
                (Ok(want), Ok(got)) => assert_eq!(&got, want, "{data}"),
                (Err("protocol"), Err(AgentError::Protocol(_))) => {}
                (Err(code), Err(AgentError::TurnFailed { code: got, .. })) => {
                    assert_eq!(&got, code, "{data}")
                }
                (want, got) => panic!("{data}: expected {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn the_request_carries_the_prompt_history_settings_and_images() {
        let settings = OpenAiSettings {
            model: "m1".into(),
            system_prompt: Some("Be brief.".into()),
            temperature: Some(0.5),
            max_tokens: Some(300),
            ..OpenAiSettings::default()
        };
        let history = [
            ChatMessage::new(Role::User, "hi"),
            ChatMessage::new(Role::Assistant, "hello"),
        ];
        let body = request_body(&settings, &history, "and now?", &[]);
        assert_eq!(
            body,
            json!({
                "model": "m1",
                "stream": true,
                "temperature": 0.5,
                "max_tokens": 300,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "and now?"},
                ],
            })
        );
        let plain = OpenAiSettings {
            model: "m2".into(),
            ..OpenAiSettings::default()
        };
        let image = ImagePart::new("image/png", b"\x89PNG");
        assert_eq!(image.data_url, "data:image/png;base64,iVBORw==");
        let body = request_body(&plain, &[], "what is this?", &[image]);
        assert!(body.get("temperature").is_none() && body.get("max_tokens").is_none());
        assert_eq!(
            body["messages"],
            json!([{"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}},
            ]}])
        );
    }
}
