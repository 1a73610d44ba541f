//! An in-memory messenger: the [`Surface`](surfaces::surface::Surface) the core is tested and
//! benchmarked against without a homeserver.
//!
//! Why this exists: the core's behaviour — the message path, every command, confirmations,
//! files, busy and cancel, reconciliation — must be testable in milliseconds, and the pipeline
//! benchmark must measure the product rather than a copy of it. A [`World`] is the messenger's
//! whole state (chats, members, homes, bindings, every post, files, an ordered log of what
//! people did); [`MemorySurface`] is the bot's outbound side of it and [`MemoryConnector`] its
//! inbound side, delivering the log to the core in batches with a cursor, as an adapter does.
//! People act through the world ([`World::invite_bot`], [`World::say`], [`World::send_file`]);
//! tests read what the bot did from it ([`World::posts`], [`World::facts`]).
//!
//! It is a messenger with every capability by default; [`Options`] takes some away (a
//! messenger without edits, without chat state, without homes) and [`Faults`] makes it fail
//! the way real ones do (transient send errors, revoked credentials, state writes refused for
//! want of power, slow declines). [`World::forge_chat`] makes a chat someone else created and
//! bound, and [`World::invite_bot_to_group`] an invite that is not a direct chat.

mod connector;
mod surface;
mod world;

pub use self::connector::{MemoryConnector, MAX_BATCH};
pub use self::surface::MemorySurface;
pub use self::world::{ChatState, Event, Faults, Options, Post, PostBody, World, SURFACE_NAME};
