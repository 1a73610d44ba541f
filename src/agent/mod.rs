//! The agent platform client: how Surfaces talks to the AI agents of the Lambda platform.
//!
//! This module exists so that the rest of Surfaces (room actors, commands) sees one small,
//! transport-free API for "send a user message to an agent and get its reply", whatever kind of
//! agent is behind it. The contract is `docs/agent-api.md`; the kinds are:
//!
//! - [`http::HttpAgent`]: a real agent server, over HTTP with a Server-Sent-Events reply stream;
//! - [`echo::EchoAgent`]: the built-in agent used when no platform is configured (demo, tests);
//! - [`openai::OpenAiAgent`]: an OpenAI-compatible chat completions server;
//! - [`a2a::A2aAgent`]: an agent speaking the A2A protocol.
//!
//! It also owns the error model ([`AgentError`], split by [`RetryKind`] into network /
//! transient / permanent failures) and the retry loop ([`turn_with_retry`]) that relies on the
//! contract's idempotency: a turn retried with the same `turn_id` never runs twice on the agent.
//!
//! The module does not read configuration: callers map their config to the constructor
//! arguments of [`AgentClient`].

pub mod a2a;
pub mod about;
pub mod accumulator;
pub mod client;
pub mod echo;
pub mod error;
pub mod http;
pub mod openai;
pub mod sse;
pub mod types;

pub use self::accumulator::TurnAccumulator;
pub use self::client::{turn_with_retry, turn_with_retry_observed, AgentClient};
pub use self::error::{AgentError, AUTH_REQUIRED_CODE, CANCELLED_CODE};
pub use self::types::*;
pub use crate::retry::{RetryKind, RetryPolicy};
pub use a2a::A2aAgent;
pub use echo::EchoAgent;
pub use http::HttpAgent;
pub use openai::OpenAiAgent;
