//! Local cache of what the messengers hold, plus the counters they cannot hold.
//!
//! Why this module exists: the messenger is the source of truth (on Matrix each chat room
//! carries an `org.surfaces.room` state event, each Space an `org.surfaces.space` one), but
//! asking it on every message is slow. sled keeps a cache of users and rooms so routing is a
//! local lookup. Everything in the `users` and `rooms` trees can be rebuilt from the
//! messenger (see `surface::Capabilities::chat_state`); the
//! counters in `meta` (the platform chat sequence, the "unmanaged room already told" marks)
//! cannot, so they are never reset and never go backwards.
//!
//! sled writes are durable only after a flush, so every write method here is `async` and
//! awaits a flush before returning: once a method returns `Ok`, the write survives a
//! crash. In particular a chat sequence number is flushed before it is handed out, so an id
//! is never reused, even across restarts.
//!
//! Layout: trees `users` (key: user id), `rooms` (key: room id), `meta` (key `chat_seq`: u64
//! big-endian; keys `unmanaged_notified/<room id>`). Records are JSON.

mod group_commit;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::group_commit::GroupCommit;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const USERS_TREE: &str = "users";
const ROOMS_TREE: &str = "rooms";
const META_TREE: &str = "meta";
/// Key of the platform chat sequence in `meta`: the last value handed out.
const CHAT_SEQ_KEY: &str = "chat_seq";
/// Meta key of the number of room records, kept in the same transaction as every write
/// to them (so the status page and `/metrics` never walk a million records).
const ROOM_COUNT_KEY: &str = "room_count";
/// Prefix of the per-room "explanation already sent" marks in `meta`.
const UNMANAGED_NOTIFIED_PREFIX: &str = "unmanaged_notified/";
/// Value of a set mark.
const MARK: &[u8] = b"1";
/// How long [`Store::open`] waits for a file lock held by a just-dropped store.
pub const OPEN_LOCK_WAIT: Duration = Duration::from_secs(3);
/// Pause between two attempts to take the lock.
const OPEN_LOCK_RETRY: Duration = Duration::from_millis(20);
/// The first chat index of a new user ("Chat 1").
pub const FIRST_CHAT_INDEX: u32 = 1;

/// Whether retrying an operation may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// I/O trouble (disk full, lock held by another process...): retry later.
    Transient,
    /// Corrupt data or a bug: retrying will not help; rebuild the record from Matrix.
    Permanent,
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("cannot open the store at {}: {source}", path.display())]
    Open {
        /// The store directory.
        path: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// sled failed (I/O, on-disk corruption, bug).
    #[error("store error: {0}")]
    Sled(#[from] sled::Error),
    /// A flush failed (sled's I/O error), or did not complete (the runtime is shutting
    /// down).
    #[error("the store flush did not complete: {0}")]
    Flush(String),
    /// A record could not be decoded.
    #[error("corrupt record {tree}/{key}: {message}")]
    Corrupt {
        /// The tree holding the record.
        tree: &'static str,
        /// The record's key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A record could not be encoded (a bug).
    #[error("cannot encode record {tree}/{key}: {message}")]
    Encode {
        /// The tree the record was meant for.
        tree: &'static str,
        /// The record's key.
        key: String,
        /// The encoder's message.
        message: String,
    },
}

fn sled_kind(e: &sled::Error) -> StoreErrorKind {
    match e {
        sled::Error::Io(_) => StoreErrorKind::Transient,
        _ => StoreErrorKind::Permanent,
    }
}

impl StoreError {
    /// Transient (I/O) or permanent (corruption, bug).
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Open { source, .. } => sled_kind(source),
            StoreError::Sled(e) => sled_kind(e),
            StoreError::Flush(_) => StoreErrorKind::Transient,
            StoreError::Corrupt { .. } | StoreError::Encode { .. } => StoreErrorKind::Permanent,
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind() == StoreErrorKind::Transient
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What we know about a user of the bot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The user's Matrix id.
    pub user_id: String,
    /// The user's Space, once made.
    #[serde(default)]
    pub space_id: Option<String>,
    /// The direct chat with the bot.
    #[serde(default)]
    pub dm_room_id: Option<String>,
    /// The agent new chats go to (None: the default agent).
    #[serde(default)]
    pub selected_agent: Option<String>,
    /// The index the user's next chat room gets ("Chat 3").
    #[serde(default = "first_chat_index")]
    pub next_chat_index: u32,
}

fn first_chat_index() -> u32 {
    FIRST_CHAT_INDEX
}

/// The messenger of records from before there was more than one.
pub const DEFAULT_SURFACE: &str = "matrix";

fn default_surface() -> String {
    DEFAULT_SURFACE.to_owned()
}

impl UserRecord {
    /// A user we have not seen before.
    pub fn new(user_id: impl Into<String>) -> Self {
        UserRecord {
            user_id: user_id.into(),
            space_id: None,
            dm_room_id: None,
            selected_agent: None,
            next_chat_index: FIRST_CHAT_INDEX,
        }
    }
}

/// A chat managed by the bot (on Matrix, the mirror of its `org.surfaces.room` state event;
/// on a messenger without chat state, the source of truth).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRecord {
    /// The chat's id on its messenger (a Matrix room id).
    pub room_id: String,
    /// Its messenger (`crate::surface::Surface::name`); records written before there was more
    /// than one are Matrix's.
    #[serde(default = "default_surface")]
    pub surface: String,
    /// The user the room belongs to.
    pub owner: String,
    /// The agent the room talks to.
    pub agent_id: String,
    /// The conversation id on the agent platform (`sfc-<n>`).
    pub platform_chat_id: String,
    /// The room's number among the owner's chats.
    pub chat_index: u32,
    /// Whether the room was archived (no longer answered).
    #[serde(default)]
    pub archived: bool,
    /// The room's name, when known.
    #[serde(default)]
    pub name: Option<String>,
}

/// The sled cache. Cheap to clone (sled's handles are reference-counted).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    users: sled::Tree,
    rooms: sled::Tree,
    meta: sled::Tree,
    durability: Durability,
    /// Flushes shared by the callers that ask at about the same time.
    group: Arc<GroupCommit>,
    /// Bumped after every write of room records: a [`RoomRecordCache`] filled before it is
    /// stale.
    room_generation: Arc<std::sync::atomic::AtomicU64>,
    /// The journal's in-memory index of its pending entries, built by the first
    /// `Journal::open` on this store and shared by every later one (and their clones), so
    /// every journal handle of one store agrees on what is pending.
    pending_index: Arc<parking_lot::Mutex<Option<crate::journal::PendingIndex>>>,
}

/// One room's record as its actor last read it, with the store's room generation then: a
/// turn reads its chat's record without a tree lookup and a decode while no room record was
/// written since ([`Store::room_cached`]; that read was 7% of a message's instructions).
#[derive(Default)]
pub struct RoomRecordCache(parking_lot::Mutex<Option<(u64, Arc<RoomRecord>)>>);

/// Whether [`Store::flush`] makes writes durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every commit point flushes (the product, always).
    #[default]
    Flushed,
    /// Flushes are skipped; writes reach the disk when sled's background thread gets to
    /// them. Only for the pipeline benchmark, to show what the flushes cost: a crash loses
    /// what was not flushed.
    Unflushed,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// `value` as a record of `tree` (JSON); `key` names it in the error.
pub(crate) fn encode<T: Serialize>(tree: &'static str, key: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode {
        tree,
        key: key.to_owned(),
        message: e.to_string(),
    })
}

fn decode<T: DeserializeOwned>(tree: &'static str, key: &[u8], bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

/// Whether sled failed to open because another handle holds the file lock.
fn is_lock_error(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

/// A counter of the meta tree at `key` (8 bytes, big-endian).
fn decode_meta_u64(key: &str, bytes: &[u8]) -> Result<u64> {
    decode_u64(META_TREE, key.as_bytes(), bytes)
}

/// A big-endian `u64` read from `tree` (a counter, a time, a sequence number; as a value or
/// a key), or why it is not one.
pub(crate) fn decode_u64(tree: &'static str, key: &[u8], bytes: &[u8]) -> Result<u64> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        message: format!("expected 8 bytes, found {}", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(array))
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    ///
    /// sled locks its files; a store of this process that was just dropped releases the
    /// lock from a background thread a moment later. So a lock held elsewhere is retried
    /// for up to [`OPEN_LOCK_WAIT`] (blocking the calling thread: open at start-up, or from
    /// a blocking task) before giving up with a transient error.
    pub fn open(dir: &Path) -> Result<Store> {
        Self::open_with(dir, Durability::Flushed)
    }

    /// Opens the store with the given durability (see [`Durability`]).
    pub fn open_with(dir: &Path, durability: Durability) -> Result<Store> {
        let open_err = |source| StoreError::Open {
            path: dir.to_path_buf(),
            source,
        };
        let started = Instant::now();
        let db = loop {
            match sled::Config::new().path(dir).open() {
                Ok(db) => break db,
                Err(e) if is_lock_error(&e) && started.elapsed() < OPEN_LOCK_WAIT => {
                    std::thread::sleep(OPEN_LOCK_RETRY);
                }
                Err(e) => return Err(open_err(e)),
            }
        };
        let users = db.open_tree(USERS_TREE).map_err(open_err)?;
        let rooms = db.open_tree(ROOMS_TREE).map_err(open_err)?;
        let meta = db.open_tree(META_TREE).map_err(open_err)?;
        let store = Store {
            db,
            users,
            rooms,
            meta,
            durability,
            group: Arc::default(),
            room_generation: Arc::default(),
            pending_index: Arc::default(),
        };
        store.count_rooms_once()?;
        Ok(store)
    }

    /// The underlying database, for modules keeping trees of their own (the journal).
    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The journal's pending index of this store: the one built before, or `build`'s.
    pub(crate) fn pending_index<E>(
        &self,
        build: impl FnOnce() -> std::result::Result<crate::journal::PendingIndex, E>,
    ) -> std::result::Result<crate::journal::PendingIndex, E> {
        let mut shared = self.pending_index.lock();
        if let Some(index) = &*shared {
            return Ok(index.clone());
        }
        let index = build()?;
        *shared = Some(index.clone());
        Ok(index)
    }

    /// Makes every write so far durable.
    ///
    /// Group commit ([`group_commit`]): the callers that ask while a flush runs share the
    /// next one, which starts after they asked, so each caller's writes are durable when
    /// this returns `Ok`, with one fsync for many commit points. The flush is a blocking
    /// `flush` on tokio's blocking pool, not sled's `flush_async`: concurrent `flush_async`
    /// calls were seen to hang forever (several tests flushing at once).
    pub async fn flush(&self) -> Result<()> {
        if self.durability == Durability::Unflushed {
            return Ok(());
        }
        let db = self.db.clone();
        let flush = move || {
            let db = db.clone();
            async move {
                match tokio::task::spawn_blocking(move || db.flush()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(join) => Err(join.to_string()),
                }
            }
        };
        self.group.flush(flush).await.map_err(StoreError::Flush)
    }

    /// How many flushes ran (each shared by every commit point that asked before it
    /// started): for the benchmarks' flushes per message.
    pub fn flushes(&self) -> u64 {
        self.group.flushes()
    }

    fn get<T: DeserializeOwned>(
        tree: &sled::Tree,
        name: &'static str,
        key: &str,
    ) -> Result<Option<T>> {
        match tree.get(key.as_bytes())? {
            Some(bytes) => decode(name, key.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn all<T: DeserializeOwned>(tree: &sled::Tree, name: &'static str) -> Result<Vec<T>> {
        tree.iter()
            .map(|item| {
                let (key, bytes) = item?;
                decode(name, &key, &bytes)
            })
            .collect()
    }

    /// The user's record, if cached.
    pub fn user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        let record: Option<UserRecord> = Self::get(&self.users, USERS_TREE, user_id)?;
        match record {
            Some(r) if r.user_id != user_id => Err(StoreError::Corrupt {
                tree: USERS_TREE,
                key: user_id.to_owned(),
                message: format!("record is for {}", r.user_id),
            }),
            other => Ok(other),
        }
    }

    /// Stores the user's record (keyed by its `user_id`); durable when this returns.
    pub async fn put_user(&self, record: &UserRecord) -> Result<()> {
        let bytes = encode(USERS_TREE, &record.user_id, record)?;
        self.users.insert(record.user_id.as_bytes(), bytes)?;
        self.flush().await
    }

    /// Every cached user.
    pub fn users(&self) -> Result<Vec<UserRecord>> {
        Self::all(&self.users, USERS_TREE)
    }

    /// The room's record, if cached.
    pub fn room(&self, room_id: &str) -> Result<Option<RoomRecord>> {
        let record: Option<RoomRecord> = Self::get(&self.rooms, ROOMS_TREE, room_id)?;
        match record {
            Some(r) if r.room_id != room_id => Err(StoreError::Corrupt {
                tree: ROOMS_TREE,
                key: room_id.to_owned(),
                message: format!("record is for {}", r.room_id),
            }),
            other => Ok(other),
        }
    }

    /// [`Store::room`], through `cache`: read again only when a room record was written
    /// since `cache` was filled (any room's: writes are rare, turns are not). Shared, not
    /// copied: a turn reads its record without allocating.
    pub fn room_cached(
        &self,
        room_id: &str,
        cache: &RoomRecordCache,
    ) -> Result<Option<Arc<RoomRecord>>> {
        use std::sync::atomic::Ordering;
        // Read before the record: a write finishing after this makes the next call read again.
        let generation = self.room_generation.load(Ordering::Acquire);
        if let Some((seen, record)) = &*cache.0.lock() {
            if *seen == generation && record.room_id == room_id {
                return Ok(Some(Arc::clone(record)));
            }
        }
        let record = self.room(room_id)?.map(Arc::new);
        *cache.0.lock() = record.clone().map(|record| (generation, record));
        Ok(record)
    }

    /// Stores the room's record (keyed by its `room_id`); durable when this returns.
    pub async fn put_room(&self, record: &RoomRecord) -> Result<()> {
        let bytes = encode(ROOMS_TREE, &record.room_id, record)?;
        self.write_rooms(&[(record.room_id.as_bytes(), bytes)], &[])?;
        self.flush().await
    }

    /// Forgets the room; returns whether it was cached. Durable when this returns.
    pub async fn remove_room(&self, room_id: &str) -> Result<bool> {
        let existed = self.write_rooms(&[], &[room_id])? < 0;
        self.flush().await?;
        Ok(existed)
    }

    /// Every cached room.
    pub fn rooms(&self) -> Result<Vec<RoomRecord>> {
        Self::all(&self.rooms, ROOMS_TREE)
    }

    /// The first `limit` cached rooms (in id order) not in `skip`: a page of idle rooms for
    /// the status page, without reading every record.
    pub fn rooms_except(
        &self,
        skip: &std::collections::HashSet<&str>,
        limit: usize,
    ) -> Result<Vec<RoomRecord>> {
        let mut out = Vec::new();
        for item in self.rooms.iter() {
            if out.len() >= limit {
                break;
            }
            let (key, bytes) = item?;
            if skip.contains(String::from_utf8_lossy(&key).as_ref()) {
                continue;
            }
            out.push(decode(ROOMS_TREE, &key, &bytes)?);
        }
        Ok(out)
    }

    /// Number of cached rooms (kept with every write: no walk).
    pub fn room_count(&self) -> Result<usize> {
        let count = match self.meta.get(ROOM_COUNT_KEY)? {
            Some(bytes) => decode_meta_u64(ROOM_COUNT_KEY, &bytes)?,
            None => 0,
        };
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    /// A store written before the count was kept: walks the records once (slow at a
    /// million, then never again).
    fn count_rooms_once(&self) -> Result<()> {
        if self.meta.get(ROOM_COUNT_KEY)?.is_none() {
            let walked = u64::try_from(self.rooms.len()).unwrap_or(u64::MAX);
            self.meta.insert(ROOM_COUNT_KEY, &walked.to_be_bytes())?;
        }
        Ok(())
    }

    /// Writes room records and removes others, with the count, in one transaction; returns
    /// how the count changed.
    fn write_rooms(&self, puts: &[(&[u8], Vec<u8>)], removes: &[&str]) -> Result<i64> {
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        use sled::Transactional;
        let written = (&self.rooms, &self.meta).transaction(|(rooms, meta)| {
            let mut delta: i64 = 0;
            for (key, bytes) in puts {
                if rooms.insert(*key, bytes.as_slice())?.is_none() {
                    delta += 1;
                }
            }
            for key in removes {
                if rooms.remove(key.as_bytes())?.is_some() {
                    delta -= 1;
                }
            }
            if delta != 0 {
                let current = match meta.get(ROOM_COUNT_KEY)? {
                    Some(bytes) => decode_meta_u64(ROOM_COUNT_KEY, &bytes)
                        .map_err(ConflictableTransactionError::Abort)?,
                    None => 0,
                };
                let next = u64::try_from(
                    i64::try_from(current)
                        .unwrap_or(i64::MAX)
                        .saturating_add(delta),
                )
                .unwrap_or(0);
                meta.insert(ROOM_COUNT_KEY, &next.to_be_bytes())?;
            }
            Ok(delta)
        });
        self.room_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        written.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        })
    }

    /// The cached rooms of one owner, ordered by chat index.
    pub fn rooms_of(&self, owner: &str) -> Result<Vec<RoomRecord>> {
        let mut rooms: Vec<RoomRecord> = self
            .rooms()?
            .into_iter()
            .filter(|r| r.owner == owner)
            .collect();
        rooms.sort_by_key(|r| r.chat_index);
        Ok(rooms)
    }

    /// Atomically applies `step` to the chat sequence (missing = 0) and flushes; returns
    /// the new value. A corrupt stored value is left untouched and reported.
    async fn update_seq(&self, step: impl Fn(u64) -> Option<u64>) -> Result<u64> {
        let mut problem: Option<StoreError> = None;
        let updated = self.meta.update_and_fetch(CHAT_SEQ_KEY, |old| {
            problem = None;
            let current = match old.map(|b| decode_meta_u64(CHAT_SEQ_KEY, b)).transpose() {
                Ok(value) => value.unwrap_or(0),
                Err(e) => {
                    problem = Some(e);
                    return old.map(<[u8]>::to_vec);
                }
            };
            match step(current) {
                Some(next) => Some(next.to_be_bytes().to_vec()),
                None => {
                    problem = Some(StoreError::Corrupt {
                        tree: META_TREE,
                        key: CHAT_SEQ_KEY.to_owned(),
                        message: "the chat sequence is exhausted".to_owned(),
                    });
                    old.map(<[u8]>::to_vec)
                }
            }
        })?;
        if let Some(e) = problem {
            return Err(e);
        }
        let value = match updated {
            Some(bytes) => decode_meta_u64(CHAT_SEQ_KEY, &bytes)?,
            None => 0,
        };
        self.flush().await?;
        Ok(value)
    }

    /// The next platform chat sequence number: starts at 1, strictly increasing, flushed
    /// before it is returned, so never handed out twice, even across restarts.
    pub async fn next_chat_seq(&self) -> Result<u64> {
        self.update_seq(|current| current.checked_add(1)).await
    }

    /// Records that sequence numbers up to `n` are taken (e.g. `sfc-<n>` ids found in Matrix
    /// during a rebuild): the next [`Store::next_chat_seq`] returns more than `n`. Never
    /// moves the counter backwards. Returns the counter's value afterwards.
    pub async fn ensure_chat_seq_at_least(&self, n: u64) -> Result<u64> {
        self.update_seq(move |current| Some(current.max(n))).await
    }

    /// Marks the unmanaged room as told; `true` the first time for this room (the caller
    /// then sends its one explanatory message), `false` afterwards. Durable when this
    /// returns, so the explanation is sent at most once per room.
    pub async fn mark_unmanaged_notified(&self, room_id: &str) -> Result<bool> {
        let key = format!("{UNMANAGED_NOTIFIED_PREFIX}{room_id}");
        let first = self
            .meta
            .compare_and_swap(key.as_bytes(), None as Option<&[u8]>, Some(MARK))?
            .is_ok();
        if first {
            self.flush().await?;
        }
        Ok(first)
    }

    /// Where the messenger `source` left off reading (its sync token or update offset),
    /// as stored by [`Store::set_cursor`].
    pub fn cursor(&self, source: &str) -> Result<Option<String>> {
        let key = format!("{CURSOR_PREFIX}{source}");
        match self.meta.get(key.as_bytes())? {
            Some(bytes) => {
                String::from_utf8(bytes.to_vec())
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        tree: META_TREE,
                        key,
                        message: e.to_string(),
                    })
            }
            None => Ok(None),
        }
    }

    /// Records where `source` left off, **without** flushing: the caller flushes it together
    /// with the journal entries of what it read ([`crate::journal::Journal::commit`]), so the
    /// cursor never moves past a message that is not durably journaled.
    pub fn set_cursor(&self, source: &str, value: &str) -> Result<()> {
        let key = format!("{CURSOR_PREFIX}{source}");
        self.meta.insert(key.as_bytes(), value.as_bytes())?;
        Ok(())
    }

    /// Whether a named flag (a marker in the meta tree) is set.
    pub fn flag(&self, name: &str) -> Result<bool> {
        Ok(self
            .meta
            .contains_key(format!("{FLAG_PREFIX}{name}").as_bytes())?)
    }

    /// Sets a named flag, durably.
    pub async fn set_flag(&self, name: &str) -> Result<()> {
        self.meta
            .insert(format!("{FLAG_PREFIX}{name}").as_bytes(), MARK)?;
        self.flush().await
    }

    /// Writes many records and removes rooms with one flush at the end (reconciliation of
    /// thousands of rooms would otherwise flush thousands of times).
    pub async fn apply(
        &self,
        rooms: &[RoomRecord],
        users: &[UserRecord],
        remove: &[String],
    ) -> Result<()> {
        let mut puts = Vec::with_capacity(rooms.len());
        for record in rooms {
            puts.push((
                record.room_id.as_bytes(),
                encode(ROOMS_TREE, &record.room_id, record)?,
            ));
        }
        let removes: Vec<&str> = remove.iter().map(String::as_str).collect();
        self.write_rooms(&puts, &removes)?;
        for record in users {
            let bytes = encode(USERS_TREE, &record.user_id, record)?;
            self.users.insert(record.user_id.as_bytes(), bytes)?;
        }
        self.flush().await
    }
}

/// Prefix of named flags in the meta tree.
const FLAG_PREFIX: &str = "flag:";
/// Prefix of the messengers' read cursors in the meta tree.
const CURSOR_PREFIX: &str = "cursor:";

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: &str, owner: &str, index: u32) -> RoomRecord {
        RoomRecord {
            room_id: id.to_owned(),
            surface: DEFAULT_SURFACE.to_owned(),
            owner: owner.to_owned(),
            agent_id: "echo".to_owned(),
            platform_chat_id: format!("sfc-{index}"),
            chat_index: index,
            archived: false,
            name: Some(format!("Chat {index}")),
        }
    }

    fn cached(store: &Store, room_id: &str, cache: &RoomRecordCache) -> Option<RoomRecord> {
        store
            .room_cached(room_id, cache)
            .unwrap()
            .map(|record| (*record).clone())
    }

    #[tokio::test]
    async fn a_cached_record_is_read_again_after_any_room_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cache = RoomRecordCache::default();
        let mut r1 = room("!r1:e.org", "@a:e.org", 1);
        assert_eq!(cached(&store, "!r1:e.org", &cache), None);
        store.put_room(&r1).await.unwrap();
        assert_eq!(cached(&store, "!r1:e.org", &cache), Some(r1.clone()));
        // Written behind the store's back: the cache is what answers.
        let mut behind = r1.clone();
        behind.agent_id = "behind".to_owned();
        let bytes = encode(ROOMS_TREE, &behind.room_id, &behind).unwrap();
        store.rooms.insert("!r1:e.org", bytes).unwrap();
        assert_eq!(cached(&store, "!r1:e.org", &cache), Some(r1.clone()));
        // Any room's write through the store makes it read again.
        store
            .put_room(&room("!r2:e.org", "@a:e.org", 2))
            .await
            .unwrap();
        assert_eq!(cached(&store, "!r1:e.org", &cache), Some(behind));
        r1.archived = true;
        store.put_room(&r1).await.unwrap();
        assert_eq!(cached(&store, "!r1:e.org", &cache), Some(r1));
        // Another room through the same cache is its own record.
        assert_eq!(
            cached(&store, "!r2:e.org", &cache).map(|r| r.chat_index),
            Some(2)
        );
        store.remove_room("!r2:e.org").await.unwrap();
        assert_eq!(cached(&store, "!r2:e.org", &cache), None);
    }

    #[tokio::test]
    async fn cursors_are_per_source_and_durable_after_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.cursor("matrix").unwrap(), None);
            store.set_cursor("matrix", "s1_2_3").unwrap();
            store.set_cursor("matrix", "s4_5_6").unwrap();
            store.set_cursor("telegram", "17").unwrap();
            store.flush().await.unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.cursor("matrix").unwrap().as_deref(), Some("s4_5_6"));
        assert_eq!(store.cursor("telegram").unwrap().as_deref(), Some("17"));
    }

    #[tokio::test]
    async fn users_and_rooms_round_trip_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut alice = UserRecord::new("@alice:example.org");
        alice.space_id = Some("!space:example.org".into());
        alice.dm_room_id = Some("!dm:example.org".into());
        alice.selected_agent = Some("coder".into());
        alice.next_chat_index = 3;
        let r1 = room("!r1:example.org", "@alice:example.org", 2);
        let r2 = room("!r2:example.org", "@alice:example.org", 1);
        let r3 = room("!r3:example.org", "@bob:example.org", 1);
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.user("@alice:example.org").unwrap(), None);
            store.put_user(&alice).await.unwrap();
            for r in [&r1, &r2, &r3] {
                store.put_room(r).await.unwrap();
            }
            assert_eq!(
                store.user("@alice:example.org").unwrap(),
                Some(alice.clone())
            );
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.user("@alice:example.org").unwrap(),
            Some(alice.clone())
        );
        assert_eq!(store.users().unwrap(), vec![alice]);
        assert_eq!(store.room("!r1:example.org").unwrap(), Some(r1.clone()));
        assert_eq!(store.rooms().unwrap().len(), 3);
        assert_eq!(
            store.rooms_of("@alice:example.org").unwrap(),
            vec![r2.clone(), r1.clone()]
        );

        // Overwrite.
        let mut archived = r1.clone();
        archived.archived = true;
        store.put_room(&archived).await.unwrap();
        assert!(store.room("!r1:example.org").unwrap().unwrap().archived);
    }

    #[tokio::test]
    async fn remove_room() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = room("!r:example.org", "@a:example.org", 1);
        store.put_room(&r).await.unwrap();
        assert!(store.remove_room("!r:example.org").await.unwrap());
        assert!(!store.remove_room("!r:example.org").await.unwrap());
        assert_eq!(store.room("!r:example.org").unwrap(), None);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.room("!r:example.org").unwrap(), None);
        assert!(store.rooms().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_room_count_follows_every_write_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.room_count().unwrap(), 0);
        store.put_room(&room("!a:hs", "@o:hs", 1)).await.unwrap();
        assert_eq!(store.room_count().unwrap(), 1);
        // Added, written again (not a new room), removed twice, added in a batch.
        store.put_room(&room("!b:hs", "@o:hs", 2)).await.unwrap();
        store.put_room(&room("!b:hs", "@o:hs", 2)).await.unwrap();
        assert_eq!(store.room_count().unwrap(), 2);
        assert!(store.remove_room("!a:hs").await.unwrap());
        assert!(!store.remove_room("!a:hs").await.unwrap());
        assert_eq!(store.room_count().unwrap(), 1);
        let batch = [room("!c:hs", "@o:hs", 3), room("!b:hs", "@o:hs", 2)];
        store
            .apply(&batch, &[], &["!nope:hs".to_owned()])
            .await
            .unwrap();
        assert_eq!(store.room_count().unwrap(), 2);
        assert_eq!(store.rooms().unwrap().len(), 2, "the records agree");
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.room_count().unwrap(), 2);
        // A store written before the count was kept is walked once at open.
        store.meta.remove(ROOM_COUNT_KEY).unwrap();
        store.flush().await.unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.room_count().unwrap(), 2);
    }

    #[tokio::test]
    async fn chat_seq_starts_at_one_and_never_repeats_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = Vec::new();
        {
            let store = Store::open(dir.path()).unwrap();
            for _ in 0..3 {
                seen.push(store.next_chat_seq().await.unwrap());
            }
        }
        assert_eq!(seen, vec![1, 2, 3]);
        {
            let store = Store::open(dir.path()).unwrap();
            seen.push(store.next_chat_seq().await.unwrap());
            // A rebuild found sfc-10 in Matrix.
            assert_eq!(store.ensure_chat_seq_at_least(10).await.unwrap(), 10);
            // Never backwards.
            assert_eq!(store.ensure_chat_seq_at_least(5).await.unwrap(), 10);
            seen.push(store.next_chat_seq().await.unwrap());
        }
        let store = Store::open(dir.path()).unwrap();
        seen.push(store.next_chat_seq().await.unwrap());
        assert_eq!(seen, vec![1, 2, 3, 4, 11, 12]);
    }

    #[tokio::test]
    async fn chat_seq_is_unique_under_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..10 {
                    got.push(store.next_chat_seq().await.unwrap());
                }
                got
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (1..=80).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn unmanaged_notice_is_marked_once_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(store
                .mark_unmanaged_notified("!x:example.org")
                .await
                .unwrap());
            assert!(!store
                .mark_unmanaged_notified("!x:example.org")
                .await
                .unwrap());
            assert!(store
                .mark_unmanaged_notified("!y:example.org")
                .await
                .unwrap());
        }
        let store = Store::open(dir.path()).unwrap();
        assert!(!store
            .mark_unmanaged_notified("!x:example.org")
            .await
            .unwrap());
        assert!(!store
            .mark_unmanaged_notified("!y:example.org")
            .await
            .unwrap());
        // The marks are not mistaken for the counter.
        assert_eq!(store.next_chat_seq().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn corrupt_records_are_permanent_errors_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .users
            .insert("@broken:example.org", &b"not json"[..])
            .unwrap();
        let err = store.user("@broken:example.org").unwrap_err();
        assert!(!err.is_transient());
        assert_eq!(err.kind(), StoreErrorKind::Permanent);
        assert!(
            err.to_string().contains("users/@broken:example.org"),
            "{err}"
        );
        assert!(store.users().is_err());

        // A record stored under another key.
        let other = serde_json::to_vec(&room("!other:e.org", "@a:e.org", 1)).unwrap();
        store.rooms.insert("!r:e.org", other).unwrap();
        let err = store.room("!r:e.org").unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");

        // A corrupt counter is reported and left alone.
        store.meta.insert(CHAT_SEQ_KEY, &b"xyz"[..]).unwrap();
        let err = store.next_chat_seq().await.unwrap_err();
        assert!(err.to_string().contains("meta/chat_seq"), "{err}");
        assert!(!err.is_transient());
        assert_eq!(&store.meta.get(CHAT_SEQ_KEY).unwrap().unwrap()[..], b"xyz");
    }

    #[tokio::test]
    async fn missing_optional_fields_take_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .users
            .insert("@old:e.org", &br#"{"user_id":"@old:e.org"}"#[..])
            .unwrap();
        let user = store.user("@old:e.org").unwrap().unwrap();
        assert_eq!(user, UserRecord::new("@old:e.org"));
    }

    #[test]
    fn io_errors_are_transient() {
        let io = sled::Error::Io(std::io::Error::other("disk full"));
        assert!(StoreError::Sled(io).is_transient());
        let bug = sled::Error::ReportableBug("x".into());
        assert!(!StoreError::Sled(bug).is_transient());
    }

    #[test]
    fn a_lock_held_elsewhere_is_a_transient_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Store::open(dir.path()).unwrap();
        let started = Instant::now();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(started.elapsed() >= OPEN_LOCK_WAIT);
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(err.is_transient(), "{err}");
    }

    #[test]
    fn opening_a_file_as_a_store_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = Store::open(&file).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
    }
}
