//! Folding a turn's event stream into its outcome.
//!
//! Why this file exists: every agent kind must end a stream the same way (text from `done`
//! or from the deltas, files, a question, an error), so the fold is shared.

use super::error::AgentError;
use super::types::{AgentEvent, ConfirmEvent, FileEvent, TurnOutcome};

/// Folds a turn's events into its [`TurnOutcome`]; shared by every agent kind so that they end
/// streams the same way.
#[derive(Debug, Default)]
pub struct TurnAccumulator {
    deltas: String,
    files: Vec<FileEvent>,
}

impl TurnAccumulator {
    /// A fresh accumulator for one stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event; returns the turn's result when the event ends the stream
    /// (`done`, `confirm`, `error`), `None` otherwise.
    pub fn apply(&mut self, event: &AgentEvent) -> Option<Result<TurnOutcome, AgentError>> {
        match event {
            AgentEvent::Delta { text } => {
                self.deltas.push_str(text);
                None
            }
            AgentEvent::Status { .. } => None,
            AgentEvent::File { path, name, mime } => {
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
            })),
            AgentEvent::Done { text } => {
                let reply = if text.is_empty() {
                    std::mem::take(&mut self.deltas)
                } else {
                    text.clone()
                };
                Some(Ok(TurnOutcome {
                    reply,
                    files: std::mem::take(&mut self.files),
                    confirm: None,
                }))
            }
            AgentEvent::Error { code, message } => Some(Err(AgentError::TurnFailed {
                code: code.clone(),
                message: message.clone(),
            })),
        }
    }
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
}
