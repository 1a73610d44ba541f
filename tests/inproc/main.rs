//! In-process tests of the core: the real runtime over the in-memory messenger
//! (`surfaces_testkit::memory`), no homeserver. They carry the behaviour of the room actor,
//! every command, confirmations, files, busy and cancel, restarts and reconciliation, and
//! run in seconds; the end-to-end tests (`tests/e2e`) prove the Matrix adapter for real.

mod busy;
mod commands;
mod confirmations;
mod edits;
mod files;
mod latency;
mod limits;
mod long_replies;
mod message_path;
mod output;
mod owner;
mod passivation;
mod poison;
mod room_story;
mod shutdown;
mod streaming;
mod support;
mod telegram;
mod trust;
