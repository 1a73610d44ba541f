//! The chat commands people type in their rooms (`!help`, `!new`, `!rename`, …).
//!
//! Why this module exists: a chat room is the bot's only user interface, so every message has
//! to be sorted into "for the agent" or "for the bot" before anything else happens, and the
//! sorting must be identical everywhere (room actors, the direct chat, tests). This module owns
//! that decision and nothing else: it is pure (no Matrix, no actors, no I/O), so the whole
//! command grammar can be tested as tables of strings.
//!
//! - [`parse()`] turns a message body into [`Parsed`]: not a command, a [`Command`], or an
//!   [`CommandError`] whose `Display` is the friendly sentence to send back.
//! - [`COMMANDS`] is the single list of commands (names, aliases, usage, one-line help);
//!   [`help_text`] builds the `!help` answer from it, so help can never drift from the parser.
//!
//! Carrying a command out (creating rooms, talking to agents, asking for confirmation) is the
//! job of the runtime, which matches on [`Command`]. The grammar and its decisions (what counts
//! as a command, multi-line messages, name rules) are documented in `parse.rs`.

mod parse;
pub mod permission;

pub use parse::{
    help_text, lookup, parse, Argument, Command, CommandError, CommandInfo, Parsed, COMMANDS,
    MAX_COMMAND_WORD_CHARS, MAX_NAME_CHARS,
};
pub use permission::{may_cancel, may_run, permission, Asker, Permission};
