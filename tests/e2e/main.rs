//! End-to-end tests against a real Synapse (installed by `ops/synapse/install`).
//!
//! One test binary: every scenario is a module here, sharing `support`.
//! Each test starts its own Synapse (fresh tempdir, free loopback port), its
//! own simulated humans and, when needed, the real `surfaces` binary; every
//! process is stopped by pid when the owning value is dropped.

mod support;

mod agent_a2a;
mod agent_http;
mod agent_openai;
mod catch_up;
mod commands;
mod crypto;
mod delivery;
mod edits;
mod exit_code;
mod files;
mod harness_smoke;
mod limits;
mod long_replies;
mod matrix_glue;
mod ops;
mod output;
mod owner;
mod poison;
mod spine;
mod streaming;
mod telegram;
mod trust;
