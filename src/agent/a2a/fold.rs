//! An A2A task's stream, folded into Surfaces' turn events. Pure: table-tested.
//!
//! Why this file exists: the mapping of A2A's tasks onto what Surfaces already does is the
//! heart of the `a2a` kind, and it must not depend on a socket to be tested.
//!
//! - **The reply** is the text of the task's artifacts (in the order they appeared, a blank
//!   line between two), growing as `artifactUpdate`s append to them; each growth becomes a
//!   `delta` (live replies). An artifact replaced rather than appended to changes the reply
//!   without a delta: the final text (`done`) is authoritative. A task that completes with no
//!   artifact text replies with its final status message, else with its last progress line;
//!   an agent answering with a bare message replies with that message.
//! - **Progress**: the text of a `working` status message is a `status` line, not the reply.
//! - **The end**: `completed` → `done`; `input-required` → `confirm` (the task id is the
//!   confirmation id, the status message the question); `failed`, `rejected`,
//!   `auth-required`, `canceled` → `error` with codes [`FAILED_CODE`], [`REJECTED_CODE`],
//!   [`AUTH_REQUIRED_CODE`], and [`CANCELLED_CODE`].
//! - **Files**: file parts of artifacts are collected ([`TaskFold::files`]) for the caller to
//!   fetch, check and post.
//!
//! A snapshot of the task (the first event of a stream, the answer of `GetTask` or of a
//! resubscription) replaces what was folded so far, so a resumed stream continues where the
//! person's view stands: only text not yet shown becomes a delta.

use super::wire::{text_of, Artifact, FilePart, Message, Part, StreamItem, Task, TaskState};
use crate::agent::{AgentEvent, AUTH_REQUIRED_CODE, CANCELLED_CODE};

/// The error code of a task that failed.
pub const FAILED_CODE: &str = "failed";
/// The error code of a task the agent refused.
pub const REJECTED_CODE: &str = "rejected";

/// Where a task's stream stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFold {
    /// The task, once an event named it.
    pub task_id: Option<String>,
    state: TaskState,
    artifacts: Vec<Artifact>,
    /// The text of the latest status message.
    status_text: String,
    /// The text of the latest `working` status message.
    progress: String,
    /// A bare message answering without a task.
    direct: Option<String>,
    /// The reply text shown so far as deltas.
    shown: String,
}

impl TaskFold {
    /// Applies one event of the stream, pushing the turn events it means onto `out`; true
    /// when the stream ends with it.
    pub fn apply(&mut self, item: StreamItem, out: &mut Vec<AgentEvent>) -> bool {
        if let Some(task) = item.task {
            self.snapshot(task);
        }
        if let Some(message) = item.message {
            if let Some(task_id) = message.task_id.clone().filter(|t| !t.is_empty()) {
                self.task_id.get_or_insert(task_id);
            }
            self.direct = Some(message.text());
            self.state = TaskState::Completed;
        }
        if let Some(update) = item.status_update {
            if !update.task_id.is_empty() {
                self.task_id.get_or_insert(update.task_id);
            }
            self.set_status(update.status.state, update.status.message.as_ref(), out);
        }
        if let Some(update) = item.artifact_update {
            if !update.task_id.is_empty() {
                self.task_id.get_or_insert(update.task_id);
            }
            self.merge(update.artifact, update.append);
        }
        self.show_growth(out);
        if self.state.ends_stream() {
            out.push(self.ending());
            return true;
        }
        false
    }

    /// Replaces what was folded with the task as a whole.
    fn snapshot(&mut self, task: Task) {
        if !task.id.is_empty() {
            self.task_id = Some(task.id);
        }
        self.artifacts = task.artifacts;
        self.state = task.status.state;
        self.status_text = task
            .status
            .message
            .as_ref()
            .map(Message::text)
            .unwrap_or_default();
    }

    fn set_status(
        &mut self,
        state: TaskState,
        message: Option<&Message>,
        out: &mut Vec<AgentEvent>,
    ) {
        self.state = state;
        let text = message.map(Message::text).unwrap_or_default();
        if state == TaskState::Working && !text.trim().is_empty() && text != self.progress {
            out.push(AgentEvent::Status { text: text.clone() });
            self.progress = text.clone();
        }
        self.status_text = text;
    }

    fn merge(&mut self, artifact: Artifact, append: bool) {
        match self
            .artifacts
            .iter_mut()
            .find(|a| a.artifact_id == artifact.artifact_id)
        {
            Some(existing) if append => existing.parts.extend(artifact.parts),
            Some(existing) => *existing = artifact,
            None => self.artifacts.push(artifact),
        }
    }

    /// The reply as it stands: the artifacts' text.
    fn artifact_text(&self) -> String {
        let texts: Vec<String> = self
            .artifacts
            .iter()
            .map(|a| text_of(&a.parts))
            .filter(|t| !t.trim().is_empty())
            .collect();
        texts.join("\n\n")
    }

    /// The whole reply of a task that ended now.
    pub fn reply(&self) -> String {
        if let Some(direct) = &self.direct {
            return direct.clone();
        }
        let text = self.artifact_text();
        if !text.is_empty() || self.state != TaskState::Completed {
            return text;
        }
        if !self.status_text.trim().is_empty() {
            return self.status_text.clone();
        }
        self.progress.clone()
    }

    /// A delta for the reply text not shown yet (nothing when the text was replaced).
    fn show_growth(&mut self, out: &mut Vec<AgentEvent>) {
        let text = self.artifact_text();
        if text == self.shown {
            return;
        }
        if let Some(new) = text.strip_prefix(self.shown.as_str()) {
            out.push(AgentEvent::Delta {
                text: new.to_owned(),
            });
        }
        self.shown = text;
    }

    /// The event that ends the turn, for the state the task is in.
    fn ending(&self) -> AgentEvent {
        let said = self.status_text.trim();
        let error = |code: &str, fallback: &str| AgentEvent::Error {
            code: code.to_owned(),
            message: if said.is_empty() { fallback } else { said }.to_owned(),
        };
        match self.state {
            TaskState::InputRequired => AgentEvent::Confirm {
                confirm_id: self.task_id.clone().unwrap_or_default(),
                prompt: if said.is_empty() {
                    crate::texts::A2A_INPUT_REQUIRED.to_owned()
                } else {
                    said.to_owned()
                },
            },
            TaskState::Failed => error(FAILED_CODE, crate::texts::A2A_TASK_FAILED),
            TaskState::Rejected => error(REJECTED_CODE, crate::texts::A2A_TASK_REJECTED),
            TaskState::AuthRequired => error(AUTH_REQUIRED_CODE, crate::texts::A2A_AUTH_REQUIRED),
            TaskState::Canceled => error(CANCELLED_CODE, "cancelled"),
            TaskState::Completed
            | TaskState::Working
            | TaskState::Submitted
            | TaskState::Unspecified => AgentEvent::Done { text: self.reply() },
        }
    }

    /// The file parts of the task's artifacts, in order.
    pub fn files(&self) -> Vec<FilePart> {
        self.artifacts
            .iter()
            .flat_map(|a| a.parts.iter().filter_map(Part::file))
            .collect()
    }

    /// Whether the task has ended or waits (no more events will come for this turn).
    pub fn ended(&self) -> bool {
        self.state.ends_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::a2a::wire::{ArtifactUpdate, StatusUpdate, TaskStatus};

    fn text_part(text: &str) -> Part {
        Part {
            text: Some(text.to_owned()),
            ..Part::default()
        }
    }

    fn chunk(id: &str, text: &str, append: bool) -> StreamItem {
        StreamItem {
            artifact_update: Some(ArtifactUpdate {
                task_id: "t1".into(),
                artifact: Artifact {
                    artifact_id: id.into(),
                    name: None,
                    parts: vec![text_part(text)],
                },
                append,
            }),
            ..StreamItem::default()
        }
    }

    fn status(state: TaskState, text: Option<&str>) -> StreamItem {
        StreamItem {
            status_update: Some(StatusUpdate {
                task_id: "t1".into(),
                status: TaskStatus {
                    state,
                    message: text.map(|t| Message {
                        task_id: None,
                        parts: vec![text_part(t)],
                    }),
                },
            }),
            ..StreamItem::default()
        }
    }

    fn task(state: TaskState, artifact_text: &str) -> StreamItem {
        StreamItem {
            task: Some(Task {
                id: "t1".into(),
                context_id: "c".into(),
                status: TaskStatus {
                    state,
                    message: None,
                },
                artifacts: vec![Artifact {
                    artifact_id: "a".into(),
                    name: None,
                    parts: vec![text_part(artifact_text)],
                }],
            }),
            ..StreamItem::default()
        }
    }

    /// Folds `items`; returns the events and whether the last one ended the stream.
    fn fold(fold: &mut TaskFold, items: Vec<StreamItem>) -> (Vec<AgentEvent>, bool) {
        let mut out = Vec::new();
        let mut ended = false;
        for item in items {
            ended = fold.apply(item, &mut out);
        }
        (out, ended)
    }

    fn delta(text: &str) -> AgentEvent {
        AgentEvent::Delta { text: text.into() }
    }

    #[test]
    fn the_stream_maps_onto_turn_events() {
        use TaskState::*;
        let done = |t: &str| AgentEvent::Done { text: t.into() };
        let error = |c: &str, m: &str| AgentEvent::Error {
            code: c.into(),
            message: m.into(),
        };
        let table: Vec<(&str, Vec<StreamItem>, Vec<AgentEvent>)> = vec![
            (
                "artifact chunks are deltas, completion is done",
                vec![
                    task(Submitted, ""),
                    status(Working, Some("Thinking...")),
                    chunk("a", "You ", false),
                    chunk("a", "said", true),
                    status(Completed, None),
                ],
                vec![
                    AgentEvent::Status {
                        text: "Thinking...".into(),
                    },
                    delta("You "),
                    delta("said"),
                    done("You said"),
                ],
            ),
            (
                "two artifacts, a blank line between",
                vec![
                    chunk("a", "one", false),
                    chunk("b", "two", false),
                    status(Completed, None),
                ],
                vec![delta("one"), delta("\n\ntwo"), done("one\n\ntwo")],
            ),
            (
                "a replaced artifact shows no delta; done is the final text",
                vec![
                    chunk("a", "draft", false),
                    chunk("a", "final", false),
                    status(Completed, None),
                ],
                vec![delta("draft"), done("final")],
            ),
            (
                "completed with no artifact: the status message is the reply",
                vec![status(Working, None), status(Completed, Some("All done."))],
                vec![done("All done.")],
            ),
            (
                "input-required asks, the task id answers",
                vec![status(InputRequired, Some("Proceed?"))],
                vec![AgentEvent::Confirm {
                    confirm_id: "t1".into(),
                    prompt: "Proceed?".into(),
                }],
            ),
            (
                "failed, with the agent's reason",
                vec![status(Failed, Some("The tool crashed."))],
                vec![error(FAILED_CODE, "The tool crashed.")],
            ),
            (
                "rejected without a reason",
                vec![status(Rejected, None)],
                vec![error(REJECTED_CODE, crate::texts::A2A_TASK_REJECTED)],
            ),
            (
                "auth-required",
                vec![status(AuthRequired, Some("Sign in."))],
                vec![error(AUTH_REQUIRED_CODE, "Sign in.")],
            ),
            (
                "canceled",
                vec![chunk("a", "tick ", false), status(Canceled, None)],
                vec![delta("tick "), error(CANCELLED_CODE, "cancelled")],
            ),
            (
                "a bare message is the whole answer",
                vec![StreamItem {
                    message: Some(Message {
                        task_id: None,
                        parts: vec![text_part("Hi there")],
                    }),
                    ..StreamItem::default()
                }],
                vec![done("Hi there")],
            ),
            (
                "a completed task snapshot (SendMessage's answer)",
                vec![task(Completed, "whole answer")],
                vec![delta("whole answer"), done("whole answer")],
            ),
        ];
        for (name, items, want) in table {
            let mut f = TaskFold::default();
            let (events, ended) = fold(&mut f, items);
            assert_eq!(events, want, "{name}");
            assert!(ended, "{name}: the stream ends");
        }
    }

    #[test]
    fn a_resumed_stream_shows_only_what_is_new() {
        let mut f = TaskFold::default();
        let (events, ended) = fold(&mut f, vec![chunk("a", "partial ", false)]);
        assert_eq!(events, vec![delta("partial ")]);
        assert!(!ended);
        assert_eq!(f.task_id.as_deref(), Some("t1"));
        // The resubscription starts with the task as it stands.
        let (events, ended) = fold(
            &mut f,
            vec![
                task(TaskState::Working, "partial and"),
                chunk("a", " whole.", true),
                status(TaskState::Completed, None),
            ],
        );
        assert_eq!(
            events,
            vec![
                delta("and"),
                delta(" whole."),
                AgentEvent::Done {
                    text: "partial and whole.".into()
                }
            ]
        );
        assert!(ended);
    }

    #[test]
    fn files_of_artifacts_are_collected() {
        let mut f = TaskFold::default();
        let file = Part {
            raw: Some("cmVwb3J0".into()),
            filename: Some("report.txt".into()),
            media_type: Some("text/plain".into()),
            ..Part::default()
        };
        let item = StreamItem {
            artifact_update: Some(ArtifactUpdate {
                task_id: "t1".into(),
                artifact: Artifact {
                    artifact_id: "f".into(),
                    name: Some("report.txt".into()),
                    parts: vec![file],
                },
                append: false,
            }),
            ..StreamItem::default()
        };
        let (events, _) = fold(
            &mut f,
            vec![
                item,
                chunk("a", "Here.", false),
                status(TaskState::Completed, None),
            ],
        );
        assert_eq!(
            events.last(),
            Some(&AgentEvent::Done {
                text: "Here.".into()
            })
        );
        let files = f.files();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "report.txt");
    }
}
