//! Surfaces: talk to the AI agents of the Lambda platform from a messenger (Matrix today).
//!
//! A person invites the bot once; the bot builds them a home (a Matrix Space); every
//! conversation is a chat in it, bound to one agent and one upstream conversation. The core
//! (`runtime`, `commands`, `journal`, `store`) speaks to messengers only through `surface`;
//! `matrix` is the Matrix adapter. The runtime is a tree of supervised actors (the `actors`
//! crate); see `docs/ARCHITECTURE.md`.

pub mod access;
pub mod agent;
pub mod allocator;
pub mod commands;
pub mod config;
pub mod confirmations;
pub mod crash;
pub mod files;
pub mod hex;
pub mod idmap;
pub mod journal;
pub mod limits;
pub mod matrix;
pub mod metrics;
pub mod ops;
pub mod redact;
pub mod retry;
pub mod runtime;
pub mod store;
pub mod surface;
pub mod telegram;
pub mod telemetry;
pub mod texts;
