//! Per-person limits: one person's flood must not slow anyone else down.
//!
//! Why this exists: every messenger lets a person send as fast as their client can, and a
//! chat bot that serves the public meets people (and scripts) who do. The core enforces:
//! - a token bucket per person for everything they send ([`bucket`], [`people`]): past it,
//!   their messages are not taken, and they are told once per flood, not per message;
//! - a bound on `!cancel` work in flight ([`cancels`]), which runs beside the room actors;
//! - the cap on chats per person (at `!new`, in the provisioner) and the retention of the
//!   agents' `inbox/` files (`files::retention`) use the same `[limits]` section.
//!
//! The limits are configuration (`[limits]`, `config::LimitsConfig`); the decisions here are
//! pure and table-tested, the effects are the intake's.

pub mod bucket;
pub mod cancels;
pub mod people;

pub use self::bucket::{Rate, TokenBucket};
pub use self::cancels::{CancelGate, CancelPermit, CancelRefusal};
pub use self::people::{Admission, PersonLimiter};
