//! Test support for Surfaces, shared by the end-to-end tests (`tests/e2e`), the benchmarks
//! (`ops/bench`, `benches/`) and the demo (`ops/demo_person.rs`).
//!
//! It exists so that each piece of harness is written once: a real Synapse per test
//! ([`synapse`]) and users registered on it ([`register`]), simulated humans on matrix-sdk
//! ([`person`]), the `surfaces` binary as a child process ([`bot`]), an in-process
//! implementation of the agent API ([`reference_agent`]), bounded waits and child-process
//! helpers ([`wait`]), and a counting allocator for heap figures ([`alloc`]).
//!
//! It does not depend on the `surfaces` crate: it drives Surfaces from the outside, as a
//! homeserver, a user and an agent would.

pub mod alloc;
pub mod bot;
pub mod person;
pub mod reference_agent;
pub mod register;
pub mod synapse;
pub mod wait;
