//! Test support for Surfaces, shared by the end-to-end tests (`tests/e2e`), the benchmarks
//! (`ops/bench`, `benches/`) and the demo (`ops/demo_person.rs`).
//!
//! It exists so that each piece of harness is written once: a real Synapse per test
//! ([`synapse`]) and users registered on it ([`register`]), simulated humans on matrix-sdk
//! ([`person`]), the `surfaces` binary as a child process ([`bot`]), an in-process
//! implementation of the agent API ([`reference_agent`]), bounded waits and child-process
//! helpers ([`wait`]), a proxy that holds back room keys ([`key_hold`]), and a counting
//! allocator for heap figures ([`alloc`]).
//!
//! For the Telegram adapter it starts an independent Telegram Bot API emulator
//! ([`telegram`]): the bot talks Bot API to it, the test plays the person through its client
//! routes, so the adapter is tested against a server that is not ours.
//!
//! For the core's own tests it also holds an in-memory messenger ([`memory`]) and the whole
//! core running in-process over it ([`inproc`]): the room actor, commands and restarts
//! tested in milliseconds, and the pipeline benchmark measuring the product itself.

pub mod a2a;
pub mod alloc;
pub mod bot;
pub mod fake_bot_api;
pub mod inproc;
pub mod key_hold;
pub mod litellm;
pub mod login;
pub mod memory;
pub mod person;
pub mod reference_agent;
pub mod register;
pub mod stats;
pub mod synapse;
pub mod telegram;
pub mod wait;
