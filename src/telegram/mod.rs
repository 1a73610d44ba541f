//! The Telegram adapter: a second messenger through the same core.
//!
//! Why this exists: the system Surfaces replaces served Matrix and Telegram through one
//! core. This adapter implements the core's seam ([`crate::surface`]) over the Telegram Bot
//! API and nothing else: room actors, commands, router, journal and agent connections are
//! the same code as on Matrix.
//!
//! The mapping ("threaded mode", as the previous system did it): a person's private chat
//! with the bot is their home, and each conversation is a topic of it (created by `!new` or
//! `/new`); without topics, the private chat is their one conversation. Telegram keeps no
//! chat state, so a conversation's binding lives in the core's store only — the store is
//! the source of truth for Telegram, and reconciliation never touches its records.
//!
//! - [`ids`][]: chats, topics, people and messages as the core's ids;
//! - [`render`][]: markdown to Telegram's HTML;
//! - [`updates`][]: what an update means (pure);
//! - [`api`][]: the Bot API calls and their errors;
//! - [`sent`][]: what was sent per key (Telegram has no transaction ids);
//! - [`surface`][]: the core's outbound calls;
//! - [`intake`][]: updates to the core, journaled before they are acknowledged;
//! - [`poller`][]: the supervised long-polling loop;
//! - [`webhook`][]: the supervised webhook receiver (instead of polling);
//! - [`connector`][]: start-up.

pub mod api;
pub mod connector;
pub mod ids;
pub mod intake;
pub mod poller;
pub mod render;
pub mod sent;
pub mod surface;
pub mod updates;
pub mod webhook;

pub use connector::TelegramConnector;
