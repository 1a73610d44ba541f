//! Server-Sent-Events parsing for agent turn streams.
//!
//! This module exists to keep the wire format apart from the transport: [`SseParser`] is a pure,
//! incremental parser (bytes in, complete events out) that can be fed whatever chunks the network
//! delivers, and [`parse_agent_event`] turns one SSE event into an [`AgentEvent`] of the contract
//! (`docs/agent-api.md`). Neither does I/O, so both are tested exhaustively with tables,
//! hostile input included.
//!
//! Parsing follows the HTML standard's event-stream rules (lines end with `\n`, `\r\n` or `\r`;
//! `:` starts a comment; `data` lines accumulate; a blank line dispatches; `id` and `retry` are
//! ignored because a turn is never resumed by the client), with two deliberate differences:
//! invalid UTF-8 is an error instead of being replaced (an agent must send UTF-8 JSON), and an
//! event still pending when the stream ends is dispatched by [`SseParser::finish`] instead of
//! being dropped, so that a final `done` without its trailing blank line still counts.
//!
//! Limits are named constants; exceeding one is a protocol error, never a panic or an unbounded
//! allocation.

use serde::Deserialize;

use super::{AgentError, AgentEvent};

/// Longest line accepted, in bytes (a line is kept in memory until its end arrives).
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Most `data` accepted for a single event, in bytes (the data of several lines adds up).
pub const MAX_EVENT_DATA_BYTES: usize = 1024 * 1024;

/// Event name used when an event has no `event:` field.
pub const DEFAULT_EVENT_NAME: &str = "message";

/// MIME type used for a `file` event that does not give one.
pub const DEFAULT_FILE_MIME: &str = "application/octet-stream";

/// One complete Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, or [`DEFAULT_EVENT_NAME`].
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental event-stream parser. Feed it chunks with [`SseParser::feed`], then call
/// [`SseParser::finish`] at the end of the stream. After an error it stays failed.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, unterminated line.
    line: Vec<u8>,
    /// `event:` of the pending event (empty: default).
    event: String,
    /// `data:` of the pending event, each line followed by `\n`.
    data: String,
    /// The last chunk ended with `\r`: a `\n` starting the next one belongs to that line end.
    skip_lf: bool,
    /// Whether the first line has been seen (a byte-order mark is stripped from it).
    started: bool,
    /// Set once an error occurred.
    failed: Option<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes a chunk (any size, cut anywhere) and returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, AgentError> {
        self.check_failed()?;
        let mut out = Vec::new();
        let result = self.feed_inner(chunk, &mut out);
        self.remember(result)?;
        Ok(out)
    }

    /// Ends the stream: processes a last line without its line break and returns the event
    /// still pending, if it has data.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, AgentError> {
        self.check_failed()?;
        let result = self.finish_inner();
        self.remember(result)
    }

    fn check_failed(&self) -> Result<(), AgentError> {
        match &self.failed {
            Some(msg) => Err(AgentError::Protocol(msg.clone())),
            None => Ok(()),
        }
    }

    fn remember<T>(&mut self, result: Result<T, String>) -> Result<T, AgentError> {
        result.map_err(|msg| {
            self.failed = Some(msg.clone());
            self.line = Vec::new();
            self.data = String::new();
            AgentError::Protocol(msg)
        })
    }

    fn feed_inner(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), String> {
        let mut rest = chunk;
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    self.push_bytes(&rest[..i])?;
                    let terminator = rest[i];
                    rest = &rest[i + 1..];
                    if terminator == b'\r' {
                        match rest.first() {
                            Some(b'\n') => rest = &rest[1..],
                            Some(_) => {}
                            None => self.skip_lf = true,
                        }
                    }
                    if let Some(ev) = self.end_line()? {
                        out.push(ev);
                    }
                }
                None => {
                    self.push_bytes(rest)?;
                    break;
                }
            }
        }
        Ok(())
    }

    fn finish_inner(&mut self) -> Result<Option<SseEvent>, String> {
        self.skip_lf = false;
        if !self.line.is_empty() {
            if let Some(ev) = self.end_line()? {
                return Ok(Some(ev));
            }
        }
        Ok(self.dispatch())
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.line.len().saturating_add(bytes.len()) > MAX_LINE_BYTES {
            return Err(format!(
                "event-stream line longer than {MAX_LINE_BYTES} bytes"
            ));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// Processes the complete line in `self.line`; returns an event when it was a blank line
    /// ending one.
    fn end_line(&mut self) -> Result<Option<SseEvent>, String> {
        let bytes = std::mem::take(&mut self.line);
        let mut line = String::from_utf8(bytes)
            .map_err(|e| format!("event stream is not valid UTF-8: {e}"))?;
        if !self.started {
            self.started = true;
            if let Some(stripped) = line.strip_prefix('\u{feff}') {
                line = stripped.to_owned();
            }
        }
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self
                    .data
                    .len()
                    .saturating_add(value.len())
                    .saturating_add(1)
                    > MAX_EVENT_DATA_BYTES
                {
                    return Err(format!(
                        "event-stream event data longer than {MAX_EVENT_DATA_BYTES} bytes"
                    ));
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            // `id` and `retry` only matter to a reconnecting EventSource; unknown fields are
            // ignored by the standard.
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        let mut data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return None;
        }
        data.pop();
        Some(SseEvent {
            event: if event.is_empty() {
                DEFAULT_EVENT_NAME.to_owned()
            } else {
                event
            },
            data,
        })
    }
}

#[derive(Deserialize)]
struct TextData {
    text: String,
}

#[derive(Deserialize)]
struct DoneData {
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct FileData {
    path: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    mime: Option<String>,
}

#[derive(Deserialize)]
struct ConfirmData {
    confirm_id: String,
    #[serde(default)]
    prompt: String,
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: String,
}

/// Code given to an `error` event that did not carry one.
pub const UNKNOWN_ERROR_CODE: &str = "unknown";

fn decode<'a, T: Deserialize<'a>>(name: &str, data: &'a str) -> Result<T, AgentError> {
    serde_json::from_str(data)
        .map_err(|e| AgentError::Protocol(format!("invalid `{name}` event data: {e}")))
}

/// Turns one SSE event into an [`AgentEvent`]. Unknown event names (including the default
/// `message`) are ignored: `Ok(None)`, so that agents can add events without breaking clients.
/// A known event whose data is not the expected JSON is a protocol error.
///
/// Leniency where the contract leaves room: `done` without `text` (the deltas make the reply),
/// `file` without `name` (the last path component) or `mime` ([`DEFAULT_FILE_MIME`]), `error`
/// without `code` ([`UNKNOWN_ERROR_CODE`]); unknown JSON fields are ignored.
pub fn parse_agent_event(name: &str, data: &str) -> Result<Option<AgentEvent>, AgentError> {
    let event = match name {
        "delta" => AgentEvent::Delta {
            text: decode::<TextData>(name, data)?.text,
        },
        "status" => AgentEvent::Status {
            text: decode::<TextData>(name, data)?.text,
        },
        "done" => AgentEvent::Done {
            text: decode::<DoneData>(name, data)?.text,
        },
        "file" => {
            let f = decode::<FileData>(name, data)?;
            if f.path.is_empty() {
                return Err(AgentError::Protocol(
                    "`file` event with an empty path".to_owned(),
                ));
            }
            let name = match f.name {
                Some(n) if !n.is_empty() => n,
                _ => f
                    .path
                    .rsplit('/')
                    .find(|s| !s.is_empty())
                    .unwrap_or(&f.path)
                    .to_owned(),
            };
            AgentEvent::File {
                path: f.path,
                name,
                mime: f
                    .mime
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| DEFAULT_FILE_MIME.to_owned()),
            }
        }
        "confirm" => {
            let c = decode::<ConfirmData>(name, data)?;
            if c.confirm_id.is_empty() {
                return Err(AgentError::Protocol(
                    "`confirm` event with an empty confirm_id".to_owned(),
                ));
            }
            AgentEvent::Confirm {
                confirm_id: c.confirm_id,
                prompt: c.prompt,
            }
        }
        "error" => {
            let e = decode::<ErrorData>(name, data)?;
            AgentEvent::Error {
                code: e
                    .code
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| UNKNOWN_ERROR_CODE.to_owned()),
                message: e.message,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.to_owned(),
            data: data.to_owned(),
        }
    }

    /// Feeds `chunks` then finishes; returns all events or the first error.
    fn run(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, AgentError> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(p.feed(c)?);
        }
        out.extend(p.finish()?);
        Ok(out)
    }

    /// Every way of cutting `input` in two, and byte by byte, gives `want`.
    fn assert_all_splits(name: &str, input: &[u8], want: &[SseEvent]) {
        assert_eq!(run(&[input]).ok().as_deref(), Some(want), "{name}: whole");
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(
                run(&[a, b]).ok().as_deref(),
                Some(want),
                "{name}: split at {i}"
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            run(&bytes).ok().as_deref(),
            Some(want),
            "{name}: byte by byte"
        );
    }

    #[test]
    fn parser_table() {
        let cases: Vec<(&str, &[u8], Vec<SseEvent>)> = vec![
            ("empty", b"", vec![]),
            (
                "single event",
                b"event: delta\ndata: {\"text\":\"hi\"}\n\n",
                vec![ev("delta", "{\"text\":\"hi\"}")],
            ),
            (
                "crlf",
                b"event: delta\r\ndata: x\r\n\r\n",
                vec![ev("delta", "x")],
            ),
            ("lone cr", b"event: a\rdata: x\r\r", vec![ev("a", "x")]),
            (
                "mixed endings",
                b"event: a\r\ndata: 1\n\revent: b\rdata: 2\r\n\n",
                vec![ev("a", "1"), ev("b", "2")],
            ),
            (
                "multi-line data",
                b"data: a\ndata: b\ndata:\n\n",
                vec![ev("message", "a\nb\n")],
            ),
            (
                "no space after colon",
                b"event:x\ndata:y\n\n",
                vec![ev("x", "y")],
            ),
            (
                "only one leading space stripped",
                b"data:  two\n\n",
                vec![ev("message", " two")],
            ),
            (
                "comments ignored",
                b": keep-alive\n:\nevent: a\n: mid\ndata: x\n\n",
                vec![ev("a", "x")],
            ),
            (
                "id and retry ignored",
                b"id: 7\nretry: 1000\nevent: a\ndata: x\n\n",
                vec![ev("a", "x")],
            ),
            (
                "unknown field ignored",
                b"foo: bar\ndata: x\n\n",
                vec![ev("message", "x")],
            ),
            ("field without colon", b"data\n\n", vec![ev("message", "")]),
            ("event without data not dispatched", b"event: a\n\n", vec![]),
            (
                "event name reset after dispatch",
                b"event: a\ndata: 1\n\ndata: 2\n\n",
                vec![ev("a", "1"), ev("message", "2")],
            ),
            (
                "missing final newline",
                b"event: done\ndata: {\"text\":\"x\"}",
                vec![ev("done", "{\"text\":\"x\"}")],
            ),
            (
                "missing final blank line",
                b"event: done\ndata: y\n",
                vec![ev("done", "y")],
            ),
            (
                "missing final blank line crlf",
                b"event: done\r\ndata: y\r\n",
                vec![ev("done", "y")],
            ),
            (
                "bom stripped",
                b"\xef\xbb\xbfevent: a\ndata: x\n\n",
                vec![ev("a", "x")],
            ),
            (
                "multibyte utf-8",
                "event: delta\ndata: {\"text\":\"héllo — 日本 🎉\"}\n\n".as_bytes(),
                vec![ev("delta", "{\"text\":\"héllo — 日本 🎉\"}")],
            ),
            (
                "colon in value kept",
                b"data: a: b: c\n\n",
                vec![ev("message", "a: b: c")],
            ),
            ("blank lines only", b"\n\n\r\n\r\r", vec![]),
            (
                "two events",
                b"event: delta\ndata: 1\n\nevent: done\ndata: 2\n\n",
                vec![ev("delta", "1"), ev("done", "2")],
            ),
        ];
        for (name, input, want) in &cases {
            assert_all_splits(name, input, want);
        }
    }

    #[test]
    fn cr_at_chunk_end_then_lf() {
        let mut p = SseParser::new();
        let mut out = p.feed(b"data: a\r").ok().unwrap_or_default();
        out.extend(p.feed(b"").ok().unwrap_or_default());
        out.extend(p.feed(b"\n\r\n").ok().unwrap_or_default());
        assert_eq!(out, vec![ev("message", "a")]);
    }

    #[test]
    fn invalid_utf8_is_a_protocol_error() {
        let cases: &[&[u8]] = &[
            b"data: \xff\n\n",
            b"event: \xc3\x28\n\n",
            b"data: \xe2\x82\n\n",
            b"data: ok\n\xed\xa0\x80\n",
        ];
        for input in cases {
            assert!(
                matches!(run(&[input]), Err(AgentError::Protocol(_))),
                "{input:?}"
            );
        }
        // Truncated UTF-8 at the very end of the stream.
        assert!(matches!(
            run(&[b"data: \xe2\x82"]),
            Err(AgentError::Protocol(_))
        ));
    }

    #[test]
    fn utf8_split_across_chunks_is_fine() {
        let s = "data: 🎉\n\n".as_bytes();
        // Cut inside the 4-byte emoji at every position.
        for i in 7..10 {
            let (a, b) = s.split_at(i);
            assert_eq!(
                run(&[a, b]).ok(),
                Some(vec![ev("message", "🎉")]),
                "cut at {i}"
            );
        }
    }

    #[test]
    fn huge_line_is_refused_not_buffered() {
        let mut p = SseParser::new();
        let chunk = vec![b'a'; 64 * 1024];
        let mut failed = false;
        for _ in 0..(MAX_LINE_BYTES / chunk.len() + 2) {
            if let Err(e) = p.feed(&chunk) {
                assert!(matches!(e, AgentError::Protocol(_)));
                failed = true;
                break;
            }
        }
        assert!(failed, "a line over the cap must fail");
        assert!(p.line.capacity() <= MAX_LINE_BYTES + chunk.len());
        // The parser stays failed.
        assert!(p.feed(b"\n\n").is_err());
        assert!(p.finish().is_err());
    }

    #[test]
    fn line_exactly_at_cap_is_accepted() {
        let mut input = b"data:".to_vec();
        input.resize(MAX_LINE_BYTES, b'x');
        input.extend_from_slice(b"\n\n");
        let out = run(&[&input]);
        assert_eq!(out.map(|v| v.len()).ok(), Some(1));
    }

    #[test]
    fn huge_event_data_is_refused() {
        let line = format!("data: {}\n", "y".repeat(100 * 1024));
        let mut p = SseParser::new();
        let mut failed = false;
        for _ in 0..(MAX_EVENT_DATA_BYTES / line.len() + 2) {
            if p.feed(line.as_bytes()).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet: &[u8] = b"\r\n:\n data event\xff\xc3\xa9{}\"";
        for _ in 0..500 {
            let len = rng.usize(0..200);
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.bool() {
                        alphabet[rng.usize(0..alphabet.len())]
                    } else {
                        rng.u8(..)
                    }
                })
                .collect();
            let mut p = SseParser::new();
            for chunk in input.chunks(rng.usize(1..8)) {
                if let Ok(events) = p.feed(chunk) {
                    for e in events {
                        let _ = parse_agent_event(&e.event, &e.data);
                    }
                }
            }
            let _ = p.finish();
        }
    }

    #[test]
    fn agent_event_table() {
        let cases: Vec<(&str, &str, Option<AgentEvent>)> = vec![
            (
                "delta",
                r#"{"text":"hi"}"#,
                Some(AgentEvent::Delta { text: "hi".into() }),
            ),
            (
                "status",
                r#"{"text":"searching","extra":1}"#,
                Some(AgentEvent::Status {
                    text: "searching".into(),
                }),
            ),
            (
                "file",
                r#"{"path":"out/chart.png","name":"chart.png","mime":"image/png"}"#,
                Some(AgentEvent::File {
                    path: "out/chart.png".into(),
                    name: "chart.png".into(),
                    mime: "image/png".into(),
                }),
            ),
            (
                "file",
                r#"{"path":"/workspace/out/a.txt"}"#,
                Some(AgentEvent::File {
                    path: "/workspace/out/a.txt".into(),
                    name: "a.txt".into(),
                    mime: DEFAULT_FILE_MIME.into(),
                }),
            ),
            (
                "confirm",
                r#"{"confirm_id":"c1","prompt":"Delete 3 files?"}"#,
                Some(AgentEvent::Confirm {
                    confirm_id: "c1".into(),
                    prompt: "Delete 3 files?".into(),
                }),
            ),
            (
                "done",
                r#"{"text":"full"}"#,
                Some(AgentEvent::Done {
                    text: "full".into(),
                }),
            ),
            (
                "done",
                r#"{}"#,
                Some(AgentEvent::Done {
                    text: String::new(),
                }),
            ),
            (
                "error",
                r#"{"code":"cancelled","message":"stopped"}"#,
                Some(AgentEvent::Error {
                    code: "cancelled".into(),
                    message: "stopped".into(),
                }),
            ),
            (
                "error",
                r#"{"message":"boom"}"#,
                Some(AgentEvent::Error {
                    code: UNKNOWN_ERROR_CODE.into(),
                    message: "boom".into(),
                }),
            ),
            ("message", r#"{"text":"x"}"#, None),
            ("ping", "not even json", None),
            ("DELTA", r#"{"text":"x"}"#, None),
        ];
        for (name, data, want) in cases {
            let got = parse_agent_event(name, data);
            assert_eq!(got.ok(), Some(want), "{name} {data}");
        }
    }

    #[test]
    fn agent_event_errors() {
        let cases: &[(&str, &str)] = &[
            ("delta", "{not json"),
            ("delta", ""),
            ("delta", r#"{"text":5}"#),
            ("delta", r#"{}"#),
            ("status", "[]"),
            ("done", r#"{"text":null}"#),
            ("file", r#"{"name":"x"}"#),
            ("file", r#"{"path":""}"#),
            ("confirm", r#"{"prompt":"x"}"#),
            ("confirm", r#"{"confirm_id":""}"#),
            ("error", "42"),
            ("done", "\"text\""),
        ];
        for (name, data) in cases {
            assert!(
                matches!(parse_agent_event(name, data), Err(AgentError::Protocol(_))),
                "{name} {data}"
            );
        }
    }
}
