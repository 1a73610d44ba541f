//! The HTTP agent: a real agent server spoken to per `docs/agent-api.md`.
//!
//! This exists to keep everything HTTP in one place: building URLs (the chat id is an opaque
//! string, percent-encoded as one path segment), the Bearer token (sent, never logged),
//! timeouts, streaming a turn's `text/event-stream` body through the [`super::sse`] parser, and
//! mapping statuses and transport failures to [`AgentError`] so that callers only deal with
//! network / transient / permanent failures.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::sse::{parse_agent_event, SseEvent, SseParser};
use super::{
    AgentError, AgentEvent, ContextInfo, ErrorBody, HealthInfo, SnapshotInfo, TurnAccumulator,
    TurnOutcome, TurnRequest,
};

/// Longest time to establish a connection (bounded further by the call's own timeout).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest JSON answer read from a non-streaming call.
pub const MAX_JSON_BODY_BYTES: usize = 1024 * 1024;

/// Largest error body read (the rest is ignored).
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// The content type of a turn's answer.
pub const EVENT_STREAM: &str = "text/event-stream";

/// Sent as `User-Agent`.
const USER_AGENT: &str = concat!("surfaces/", env!("CARGO_PKG_VERSION"));

/// A client for one agent server.
#[derive(Clone)]
pub struct HttpAgent {
    client: reqwest::Client,
    /// Base URL without a trailing slash.
    base: String,
    /// Longest silence: a call's whole answer, or each event of a turn's stream.
    timeout: Duration,
    /// Longest whole turn, however lively its stream.
    max_turn: Duration,
    has_token: bool,
    /// Most bytes one turn may accumulate (see [`TurnAccumulator::with_limit`]).
    max_turn_bytes: usize,
    /// Whether a stream request may be answered with one JSON body (A2A's errors).
    json_answers: bool,
}

impl fmt::Debug for HttpAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpAgent")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .field(
                "token",
                &if self.has_token {
                    "<redacted>"
                } else {
                    "<none>"
                },
            )
            .finish()
    }
}

/// Characters kept as they are in a path segment (RFC 3986 "unreserved"); everything else is
/// percent-encoded, `/`, `%`, `?` and `#` included.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encodes one path segment. Empty, `.` and `..` cannot be expressed as a segment
/// (URL parsers collapse them, even encoded), so they are refused.
pub fn encode_segment(segment: &str) -> Result<String, AgentError> {
    if segment.is_empty() || segment == "." || segment == ".." {
        return Err(AgentError::InvalidChatId(segment.to_owned()));
    }
    let mut out = String::with_capacity(segment.len());
    for &b in segment.as_bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// Parses a `Retry-After` value given in seconds. The HTTP-date form is not supported (the
/// contract says seconds) and gives `None`, i.e. the retry loop's own backoff.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The error chain of `e`, for messages (reqwest's own message is terse: the cause, e.g.
/// "Connection refused", is in its sources), with the credentials of any URL in it removed
/// (reqwest names the URL, and a base URL may carry `user:pass@`).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    crate::redact::strip_credentials(&chain(e))
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

impl HttpAgent {
    /// A client for the agent at `base_url` (`http://` or `https://`, optionally with a path
    /// prefix). `timeout` bounds every call as a whole, a turn's entire stream included.
    pub fn new(
        base_url: &str,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, AgentError> {
        Self::with_headers(base_url, token, timeout, HeaderMap::new())
    }

    /// [`HttpAgent::new`], sending `headers` with every request too (a protocol's version).
    pub fn with_headers(
        base_url: &str,
        token: Option<String>,
        timeout: Duration,
        mut headers: HeaderMap,
    ) -> Result<Self, AgentError> {
        // Errors name the base URL without its credentials.
        let shown = crate::redact::strip_credentials(base_url);
        let parsed = url::Url::parse(base_url)
            .map_err(|e| AgentError::InvalidConfig(format!("agent base URL {shown:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
            return Err(AgentError::InvalidConfig(format!(
                "agent base URL {shown:?} must be http:// or https://"
            )));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(AgentError::InvalidConfig(format!(
                "agent base URL {shown:?} must not have a query or fragment"
            )));
        }
        if timeout.is_zero() {
            return Err(AgentError::InvalidConfig(
                "agent timeout must be more than zero".to_owned(),
            ));
        }
        let has_token = token.as_deref().is_some_and(|t| !t.is_empty());
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                AgentError::InvalidConfig("agent token contains invalid characters".to_owned())
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AgentError::InvalidConfig(describe(&e)))?;
        Ok(HttpAgent {
            client,
            base: parsed.as_str().trim_end_matches('/').to_owned(),
            timeout,
            max_turn: Duration::from_secs(crate::config::DEFAULT_MAX_TURN_SECS),
            has_token,
            max_turn_bytes: super::accumulator::DEFAULT_MAX_TURN_BYTES,
            json_answers: false,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `<base>/v1/chats/<chat>` followed by `rest` (segments, each encoded).
    fn chat_url(&self, chat: &str, rest: &[&str]) -> Result<String, AgentError> {
        let mut url = format!("{}/v1/chats/{}", self.base, encode_segment(chat)?);
        for seg in rest {
            url.push('/');
            url.push_str(&encode_segment(seg).map_err(|_| {
                AgentError::Protocol(format!("id {seg:?} cannot be used in a URL"))
            })?);
        }
        Ok(url)
    }

    fn map_reqwest(&self, e: reqwest::Error) -> AgentError {
        if e.is_timeout() {
            AgentError::Timeout(self.timeout)
        } else if e.is_connect() {
            AgentError::Unreachable(describe(&e))
        } else if e.is_builder() {
            AgentError::InvalidConfig(describe(&e))
        } else {
            // Includes reqwest's "decode" errors: this client asks reqwest to decode nothing
            // (no compression, JSON is parsed here), so those are failures reading the body
            // off the connection (cut, truncated chunked encoding).
            AgentError::Io(describe(&e))
        }
    }

    /// Sends a request; a non-2xx answer becomes the matching [`AgentError`].
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&dyn erased::Body>,
        accept: &str,
    ) -> Result<Response, AgentError> {
        let mut rb = self.client.request(method, url).header(ACCEPT, accept);
        if let Some(body) = body {
            let bytes = body
                .to_json()
                .map_err(|e| AgentError::InvalidConfig(format!("request body: {e}")))?;
            rb = rb.header(CONTENT_TYPE, "application/json").body(bytes);
        }
        let resp = rb.send().await.map_err(|e| self.map_reqwest(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        // The error body is best effort: a failure reading it does not hide the status.
        let body = read_capped(resp, MAX_ERROR_BODY_BYTES)
            .await
            .ok()
            .and_then(|(bytes, _)| ErrorBody::parse(&bytes));
        let err = AgentError::from_status(status.as_u16(), retry_after, body);
        tracing::debug!(url = %crate::redact::strip_credentials(url), status = status.as_u16(),
            error = %err, "agent call failed");
        Err(err)
    }

    /// `GET base_url + path` with the overall timeout; returns the parsed answer.
    pub(super) async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, AgentError> {
        let url = format!("{}{path}", self.base);
        self.call_json(Method::GET, &url, None).await
    }

    /// `POST url` with a JSON body and the overall timeout; returns the parsed answer.
    pub(super) async fn post_json<T: DeserializeOwned>(
        &self,
        url: &str,
        body: &(dyn erased::Body + '_),
    ) -> Result<T, AgentError> {
        self.call_json(Method::POST, url, Some(body)).await
    }

    /// `GET url` (a file the agent offers), at most `cap` bytes, with the overall timeout;
    /// returns the bytes. `Ok(None)`: larger than `cap`.
    pub(super) async fn get_bytes(
        &self,
        url: &str,
        cap: usize,
    ) -> Result<Option<Vec<u8>>, AgentError> {
        self.with_timeout(async {
            let resp = self.send(Method::GET, url, None, "*/*").await?;
            let (bytes, truncated) = read_capped(resp, cap)
                .await
                .map_err(|e| self.map_reqwest(e))?;
            Ok((!truncated).then_some(bytes))
        })
        .await
    }

    /// A JSON answer's body, at most [`MAX_JSON_BODY_BYTES`].
    async fn json_body(&self, resp: reqwest::Response) -> Result<Vec<u8>, AgentError> {
        let (bytes, truncated) = read_capped(resp, MAX_JSON_BODY_BYTES)
            .await
            .map_err(|e| self.map_reqwest(e))?;
        if truncated {
            return Err(AgentError::Protocol(format!(
                "answer larger than {MAX_JSON_BODY_BYTES} bytes"
            )));
        }
        Ok(bytes)
    }

    /// A JSON call with the overall timeout; returns the parsed answer.
    async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: Option<&dyn erased::Body>,
    ) -> Result<T, AgentError> {
        self.with_timeout(async {
            let resp = self.send(method, url, body, "application/json").await?;
            let bytes = self.json_body(resp).await?;
            serde_json::from_slice(&bytes)
                .map_err(|e| AgentError::Protocol(format!("invalid JSON answer: {e}")))
        })
        .await
    }

    /// A call whose answer body does not matter.
    async fn call_empty(
        &self,
        method: Method,
        url: &str,
        body: Option<&dyn erased::Body>,
    ) -> Result<StatusCode, AgentError> {
        self.with_timeout(async {
            let resp = self.send(method, url, body, "application/json").await?;
            Ok(resp.status())
        })
        .await
    }

    /// Cuts turns past `max_bytes` of text and file events (config `replies.max_turn_bytes`).
    pub fn set_max_turn_bytes(&mut self, max_bytes: usize) {
        self.max_turn_bytes = max_bytes;
    }

    /// Gives up on a turn still running after `max_turn` (config `agents[].max_turn_secs`).
    pub fn set_max_turn(&mut self, max_turn: Duration) {
        self.max_turn = max_turn;
    }

    /// Lets a stream request be answered with one JSON body, decoded as its only event.
    pub fn accept_json_answers(&mut self) {
        self.json_answers = true;
    }

    /// The longest a whole turn may run.
    pub fn max_turn(&self) -> Duration {
        self.max_turn
    }

    /// The most bytes one turn may accumulate.
    pub fn max_turn_bytes(&self) -> usize {
        self.max_turn_bytes
    }

    /// `fut`, unless the agent stays silent past the timeout (a call's whole answer, or one
    /// step of a turn's stream).
    async fn with_timeout<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, AgentError>>,
    ) -> Result<T, AgentError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(AgentError::Timeout(self.timeout)),
        }
    }

    /// Posts to an event-stream endpoint of our API and folds the stream into an outcome.
    async fn stream(
        &self,
        url: &str,
        body: &dyn erased::Body,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        let decode = &mut |sse: &SseEvent, out: &mut Vec<AgentEvent>| {
            match parse_agent_event(&sse.event, &sse.data)? {
                Some(event) => out.push(event),
                None => tracing::debug!(event = %sse.event, "ignoring unknown agent event"),
            }
            Ok(())
        };
        self.stream_decoded(url, body, decode, on_event).await
    }

    /// Posts `body` to the event-stream endpoint `url` and folds the stream into an outcome,
    /// each server-sent event turned into the agent events it carries by `decode` (pushed
    /// onto its second argument; none: nothing to act on). The server may be silent for
    /// `timeout` before its answer starts and between two chunks of it; the whole turn may
    /// take `max_turn`.
    pub(super) async fn stream_decoded(
        &self,
        url: &str,
        body: &(dyn erased::Body + '_),
        decode: &mut Decode<'_>,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        let turn = async {
            let mut resp = self
                .with_timeout(self.send(Method::POST, url, Some(body), EVENT_STREAM))
                .await?;
            let content_type = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let essence = content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence == "application/json" && self.json_answers {
                // A protocol that answers a failure before any event as plain JSON: the
                // body is decoded as the stream's one event.
                let bytes = self.json_body(resp).await?;
                let data = String::from_utf8(bytes)
                    .map_err(|e| AgentError::Protocol(format!("answer is not UTF-8: {e}")))?;
                let sse = SseEvent {
                    event: super::sse::DEFAULT_EVENT_NAME.to_owned(),
                    data,
                };
                let mut acc = TurnAccumulator::with_limit(self.max_turn_bytes);
                let mut decoded = Vec::new();
                return fold_one(&sse, decode, &mut decoded, &mut acc, on_event)?
                    .unwrap_or(Err(AgentError::Incomplete));
            }
            if essence != EVENT_STREAM {
                return Err(AgentError::Protocol(format!(
                    "expected {EVENT_STREAM}, got content type {content_type:?}"
                )));
            }
            let mut parser = SseParser::new();
            let mut acc = TurnAccumulator::with_limit(self.max_turn_bytes);
            let mut decoded = Vec::new();
            loop {
                let chunk = self
                    .with_timeout(async { resp.chunk().await.map_err(|e| self.map_reqwest(e)) })
                    .await?;
                let events = match &chunk {
                    Some(bytes) => parser.feed(bytes)?,
                    None => parser.finish()?.into_iter().collect(),
                };
                for sse in events {
                    if let Some(result) = fold_one(&sse, decode, &mut decoded, &mut acc, on_event)?
                    {
                        // The contract ends the stream here; whatever follows is not read.
                        return result;
                    }
                }
                if chunk.is_none() {
                    return Err(AgentError::Incomplete);
                }
            }
        };
        match tokio::time::timeout(self.max_turn, turn).await {
            Ok(result) => result,
            Err(_) => Err(AgentError::TurnTooLong(self.max_turn)),
        }
    }

    /// `POST /v1/chats/{chat}/turns`, one attempt.
    pub async fn turn(
        &self,
        chat: &str,
        req: &TurnRequest,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        let url = self.chat_url(chat, &["turns"])?;
        self.stream(&url, req, on_event).await
    }

    /// `POST /v1/chats/{chat}/confirmations/{confirm_id}`.
    pub async fn confirm(
        &self,
        chat: &str,
        confirm_id: &str,
        approved: bool,
        turn_id: &str,
        on_event: &mut (dyn FnMut(&AgentEvent) + Send),
    ) -> Result<TurnOutcome, AgentError> {
        #[derive(Serialize)]
        struct Answer<'a> {
            approved: bool,
            turn_id: &'a str,
        }
        let url = self.chat_url(chat, &["confirmations", confirm_id])?;
        self.stream(&url, &Answer { approved, turn_id }, on_event)
            .await
    }

    /// `POST /v1/chats/{chat}/turns/{turn_id}/cancel`.
    pub async fn cancel(&self, chat: &str, turn_id: &str) -> Result<(), AgentError> {
        let url = self.chat_url(chat, &["turns", turn_id, "cancel"])?;
        self.call_empty(Method::POST, &url, Some(&serde_json::json!({})))
            .await
            .map(|_| ())
    }

    /// `GET /v1/chats/{chat}/context`.
    pub async fn context(&self, chat: &str) -> Result<ContextInfo, AgentError> {
        let url = self.chat_url(chat, &["context"])?;
        self.call_json(Method::GET, &url, None).await
    }

    /// `POST /v1/chats/{chat}/snapshots`.
    pub async fn save_snapshot(&self, chat: &str, name: &str) -> Result<SnapshotInfo, AgentError> {
        let url = self.chat_url(chat, &["snapshots"])?;
        self.call_json(
            Method::POST,
            &url,
            Some(&serde_json::json!({ "name": name })),
        )
        .await
    }

    /// `POST /v1/chats/{chat}/restore`.
    pub async fn restore(
        &self,
        chat: &str,
        snapshot: &str,
        from_chat: Option<&str>,
    ) -> Result<(), AgentError> {
        let url = self.chat_url(chat, &["restore"])?;
        let mut body = serde_json::json!({ "snapshot": snapshot });
        if let Some(from) = from_chat {
            body["from_chat"] = serde_json::Value::from(from);
        }
        self.call_empty(Method::POST, &url, Some(&body))
            .await
            .map(|_| ())
    }

    /// `DELETE /v1/chats/{chat}`; a 404 (already gone) counts as done.
    pub async fn delete_chat(&self, chat: &str) -> Result<(), AgentError> {
        let url = self.chat_url(chat, &[])?;
        match self.call_empty(Method::DELETE, &url, None).await {
            Ok(_) | Err(AgentError::Rejected { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<HealthInfo, AgentError> {
        let url = format!("{}/v1/health", self.base);
        self.call_json(Method::GET, &url, None).await
    }
}

/// Reads at most `cap` bytes of a body; the flag tells whether there was more.
async fn read_capped(mut resp: Response, cap: usize) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = cap.saturating_sub(out.len());
        if chunk.len() > room {
            out.extend_from_slice(&chunk[..room]);
            return Ok((out, true));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, false))
}

/// Object-safe JSON bodies, so that `send` takes any serializable body without being generic
/// (which keeps the futures small and the code in one copy).
pub(super) mod erased {
    use serde::Serialize;

    pub trait Body: Sync {
        fn to_json(&self) -> Result<Vec<u8>, serde_json::Error>;
    }

    impl<T: Serialize + Sync> Body for T {
        fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
            serde_json::to_vec(self)
        }
    }
}

/// Turns one server-sent event into the agent events it carries (pushed onto the vector).
pub(super) type Decode<'a> =
    dyn FnMut(&SseEvent, &mut Vec<AgentEvent>) -> Result<(), AgentError> + Send + 'a;

/// Decodes one server-sent event into `decoded` (emptied first) and folds each agent event
/// into `acc`, telling `on_event` of it; `Some`: the turn's result (the stream ends there).
fn fold_one(
    sse: &SseEvent,
    decode: &mut Decode<'_>,
    decoded: &mut Vec<AgentEvent>,
    acc: &mut TurnAccumulator,
    on_event: &mut (dyn FnMut(&AgentEvent) + Send),
) -> Result<Option<Result<TurnOutcome, AgentError>>, AgentError> {
    decoded.clear();
    decode(sse, decoded)?;
    for event in decoded.drain(..) {
        on_event(&event);
        if let Some(result) = acc.apply(&event) {
            return Ok(Some(result));
        }
    }
    Ok(None)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_segment_table() {
        let cases: &[(&str, &str)] = &[
            ("sfc-12", "sfc-12"),
            ("a/b", "a%2Fb"),
            ("a b", "a%20b"),
            ("100%", "100%25"),
            ("q?x#y", "q%3Fx%23y"),
            ("!room:example.org", "%21room%3Aexample.org"),
            ("é", "%C3%A9"),
            ("...", "..."),
            ("a.b_c~d", "a.b_c~d"),
        ];
        for (input, want) in cases {
            assert_eq!(
                encode_segment(input).ok().as_deref(),
                Some(*want),
                "{input}"
            );
        }
        for bad in ["", ".", ".."] {
            assert!(matches!(
                encode_segment(bad),
                Err(AgentError::InvalidChatId(_))
            ));
        }
    }

    #[test]
    fn retry_after_table() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("1", Some(1)),
            (" 120 ", Some(120)),
            ("-1", None),
            ("1.5", None),
            ("", None),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
            ("99999999999999999999999", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_retry_after(input),
                want.map(Duration::from_secs),
                "{input:?}"
            );
        }
    }

    #[test]
    fn constructor_validates() {
        let t = Duration::from_secs(1);
        assert!(HttpAgent::new("http://127.0.0.1:1", None, t).is_ok());
        assert!(HttpAgent::new("https://agents.example.org/a/3/", None, t).is_ok());
        for bad in [
            "",
            "not a url",
            "ftp://x",
            "mailto:a@b",
            "http://x/?q=1",
            "http://x/#f",
        ] {
            assert!(
                matches!(
                    HttpAgent::new(bad, None, t),
                    Err(AgentError::InvalidConfig(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            HttpAgent::new("http://x", None, Duration::ZERO),
            Err(AgentError::InvalidConfig(_))
        ));
        assert!(matches!(
            HttpAgent::new("http://x", Some("bad\ntoken".into()), t),
            Err(AgentError::InvalidConfig(msg)) if !msg.contains("bad")
        ));
    }

    #[test]
    fn urls_are_built_per_contract() {
        let a = HttpAgent::new("http://h:1/prefix/", None, Duration::from_secs(1));
        let Ok(a) = a else {
            panic!("constructor failed")
        };
        assert_eq!(a.base_url(), "http://h:1/prefix");
        assert_eq!(
            a.chat_url("sfc-1", &["turns"]).ok().as_deref(),
            Some("http://h:1/prefix/v1/chats/sfc-1/turns")
        );
        assert_eq!(
            a.chat_url("a/b", &["turns", "t 1", "cancel"])
                .ok()
                .as_deref(),
            Some("http://h:1/prefix/v1/chats/a%2Fb/turns/t%201/cancel")
        );
        assert!(matches!(
            a.chat_url("..", &[]),
            Err(AgentError::InvalidChatId(_))
        ));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let a = HttpAgent::new(
            "http://h:1",
            Some("sekrit-token".into()),
            Duration::from_secs(1),
        );
        let shown = format!("{a:?}");
        assert!(!shown.contains("sekrit"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
