//! Folding a turn's event stream into its outcome.
//!
//! Why this file exists: every agent kind must end a stream the same way (text from `done`
//! or from the deltas, files, a question, an error), so the fold is shared. It also bounds
//! what a turn may accumulate: an agent is not trusted to stop, so past the limit the turn
//! ends there, cut, as if the agent had said `done`.

use super::error::AgentError;
use super::types::{AgentEvent, ConfirmEvent, FileEvent, TurnOutcome};

/// Default limit of what one turn may accumulate (text and file events), in bytes: 1 MiB.
pub const DEFAULT_MAX_TURN_BYTES: usize = 1024 * 1024;

/// Folds a turn's events into its [`TurnOutcome`]; shared by every agent kind so that they end
/// streams the same way.
#[derive(Debug)]
pub struct TurnAccumulator {
    deltas: String,
    files: Vec<FileEvent>,
    /// Bytes accumulated so far (deltas and file events).
    held: usize,
    /// Most bytes a turn may accumulate.
    max_bytes: usize,
}

impl Default for TurnAccumulator {
    fn default() -> Self {
        Self::with_limit(DEFAULT_MAX_TURN_BYTES)
    }
}

impl TurnAccumulator {
    /// A fresh accumulator for one stream, with [`DEFAULT_MAX_TURN_BYTES`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh accumulator that cuts the turn past `max_bytes` of text and file events.
    pub fn with_limit(max_bytes: usize) -> Self {
        TurnAccumulator {
            deltas: String::new(),
            files: Vec::new(),
            held: 0,
            max_bytes,
        }
    }

    /// The turn so far, cut: the stream ends here.
    fn cut(&mut self) -> Option<Result<TurnOutcome, AgentError>> {
        tracing::warn!(
            max_bytes = self.max_bytes,
            "the agent's turn is over the accumulation limit; cutting it (replies.max_turn_bytes)"
        );
        Some(Ok(TurnOutcome {
            reply: std::mem::take(&mut self.deltas),
            files: std::mem::take(&mut self.files),
            confirm: None,
            truncated: true,
        }))
    }

    /// Applies one event; returns the turn's result when the event ends the stream
    /// (`done`, `confirm`, `error`, or the accumulation limit), `None` otherwise.
    pub fn apply(&mut self, event: &AgentEvent) -> Option<Result<TurnOutcome, AgentError>> {
        match event {
            AgentEvent::Delta { text } => {
                let room = self.max_bytes.saturating_sub(self.held);
                if text.len() > room {
                    let head = &text[..floor_char_boundary(text, room)];
                    self.deltas.push_str(head);
                    return self.cut();
                }
                self.held += text.len();
                self.deltas.push_str(text);
                None
            }
            AgentEvent::Status { .. } => None,
            AgentEvent::File { path, name, mime } => {
                let size = path.len() + name.len() + mime.len();
                if size > self.max_bytes.saturating_sub(self.held) {
                    return self.cut();
                }
                self.held += size;
                self.files.push(FileEvent {
                    path: path.clone(),
                    name: name.clone(),
                    mime: mime.clone(),
                });
                None
            }
            AgentEvent::Confirm { confirm_id, prompt } => Some(Ok(TurnOutcome {
                reply: std::mem::take(&mut self.deltas),
                files: std::mem::take(&mut self.files),
                confirm: Some(ConfirmEvent {
                    confirm_id: confirm_id.clone(),
                    prompt: prompt.clone(),
                }),
                truncated: false,
            })),
            AgentEvent::Done { text } => {
                let (reply, truncated) = if text.is_empty() {
                    (std::mem::take(&mut self.deltas), false)
                } else if text.len() > self.max_bytes {
                    let head = &text[..floor_char_boundary(text, self.max_bytes)];
                    (head.to_owned(), true)
                } else {
                    (text.clone(), false)
                };
                if truncated {
                    self.deltas = reply;
                    return self.cut();
                }
                Some(Ok(TurnOutcome {
                    reply,
                    files: std::mem::take(&mut self.files),
                    confirm: None,
                    truncated: false,
                }))
            }
            AgentEvent::Error { code, message } => Some(Err(AgentError::TurnFailed {
                code: code.clone(),
                message: message.clone(),
            })),
        }
    }
}

/// The largest char boundary of `s` at or before `at`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while at > 0 && !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulator_folds_a_stream() {
        let mut acc = TurnAccumulator::new();
        assert!(acc
            .apply(&AgentEvent::Status { text: "s".into() })
            .is_none());
        assert!(acc.apply(&AgentEvent::Delta { text: "a".into() }).is_none());
        assert!(acc
            .apply(&AgentEvent::File {
                path: "out/x.png".into(),
                name: "x.png".into(),
                mime: "image/png".into()
            })
            .is_none());
        assert!(acc.apply(&AgentEvent::Delta { text: "b".into() }).is_none());
        let out = acc.apply(&AgentEvent::Done { text: "ab!".into() });
        let out = match out {
            Some(Ok(o)) => o,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(out.reply, "ab!");
        assert_eq!(out.files.len(), 1);
        assert_eq!(out.confirm, None);
    }

    #[test]
    fn accumulator_done_without_text_uses_deltas() {
        let mut acc = TurnAccumulator::new();
        acc.apply(&AgentEvent::Delta { text: "he".into() });
        acc.apply(&AgentEvent::Delta { text: "llo".into() });
        let out = acc.apply(&AgentEvent::Done {
            text: String::new(),
        });
        assert_eq!(
            out.and_then(Result::ok).map(|o| o.reply),
            Some("hello".into())
        );
    }

    #[test]
    fn accumulator_confirm_and_error() {
        let mut acc = TurnAccumulator::new();
        let out = acc.apply(&AgentEvent::Confirm {
            confirm_id: "c1".into(),
            prompt: "Delete?".into(),
        });
        let out = out.and_then(Result::ok).and_then(|o| o.confirm);
        assert_eq!(out.map(|c| c.confirm_id), Some("c1".into()));
        let mut acc = TurnAccumulator::new();
        let err = acc.apply(&AgentEvent::Error {
            code: "cancelled".into(),
            message: "by user".into(),
        });
        assert!(matches!(err, Some(Err(e)) if e.is_cancelled()));
    }

    #[test]
    fn accumulator_cuts_a_turn_past_its_limit() {
        // Deltas: the stream ends at the limit, on a char boundary, marked truncated.
        let mut acc = TurnAccumulator::with_limit(10);
        assert!(acc
            .apply(&AgentEvent::Delta {
                text: "12345".into()
            })
            .is_none());
        let out = acc.apply(&AgentEvent::Delta {
            text: "678€€".into(),
        });
        let out = out.and_then(Result::ok).expect("cut");
        assert_eq!((out.reply.as_str(), out.truncated), ("12345678", true));

        // A `done` carrying more than the limit.
        let mut acc = TurnAccumulator::with_limit(4);
        let out = acc.apply(&AgentEvent::Done {
            text: "abcdef".into(),
        });
        let out = out.and_then(Result::ok).expect("cut");
        assert_eq!((out.reply.as_str(), out.truncated), ("abcd", true));

        // File events count too: an endless list of files ends the turn.
        let mut acc = TurnAccumulator::with_limit(100);
        let file = AgentEvent::File {
            path: "out/x.png".into(),
            name: "x.png".into(),
            mime: "image/png".into(),
        };
        let ended = (0..100).find_map(|_| acc.apply(&file));
        let out = ended.and_then(Result::ok).expect("cut");
        assert!(out.truncated && out.files.len() < 10);

        // Within the limit nothing changes.
        let mut acc = TurnAccumulator::with_limit(6);
        acc.apply(&AgentEvent::Delta { text: "abc".into() });
        let out = acc.apply(&AgentEvent::Done {
            text: "abcdef".into(),
        });
        let out = out.and_then(Result::ok).expect("done");
        assert_eq!((out.reply.as_str(), out.truncated), ("abcdef", false));
    }
}
