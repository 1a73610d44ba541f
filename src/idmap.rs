//! Hash maps keyed by ids (of chats, messages, agents), hashed with foldhash.
//!
//! Why this exists: std's default hasher (SipHash-1-3) was about 8% of the pipeline
//! benchmark's instructions — 10,000 per message (callgrind: `BuildHasher::hash_one` and
//! `sip::Hasher::write`), spread over the maps every message passes through: the journal's
//! pending index, the room directory, the stories, the route table, the echo agent. foldhash
//! (hashbrown's own default) hashes a short id in a few dozen instructions. Its state is
//! seeded at random per map, so ids chosen by someone else (room and event ids come from
//! homeservers) cannot be picked ahead of time to collide; maps of what people write
//! (their texts) are not keyed here.

/// A map keyed by ids.
pub type IdMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
