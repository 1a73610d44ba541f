//! Retention of the files people sent: `inbox/` does not grow forever.
//!
//! Why this exists: every file a person sends is written to their chat's agent's workspace
//! (`inbox/<room hash>/<event hash>-<name>`) and nothing else ever deletes it; a person
//! could fill the shared volume. A sweep (hourly, from the runtime) deletes the files older
//! than `limits.inbox_retention_hours` and the room directories it leaves empty.
//!
//! The agent can write in its workspace, so the sweep trusts nothing it finds there: it
//! works beneath directory handles (`openat`/`unlinkat`, never following a link), deletes a
//! planted symlink itself rather than what it points to, and never descends deeper than the
//! layout the bot writes. The decision per entry ([`verdict`]) is pure and table-tested.

use std::ffi::CStr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{openat, statat, unlinkat, AtFlags, Dir, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;

/// How often the runtime sweeps the inboxes.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);
/// The directory people's files go to, under each workspace root.
pub const INBOX_DIR: &str = "inbox";

/// What one directory entry is, as the sweep sees it (without following links).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A symbolic link (never followed).
    Link,
    /// A directory.
    Dir,
    /// Anything else (FIFO, socket, device).
    Other,
}

/// What to do with one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Older than the retention: delete it (a link: the link itself).
    Delete,
    /// Keep it.
    Keep,
    /// A room directory: sweep inside it, then remove it if it is empty.
    Descend,
}

/// The decision for an entry at `depth` (0: directly in `inbox/`, 1: in a room directory),
/// modified `age` ago (`None`: in the future).
pub fn verdict(kind: Kind, depth: usize, age: Option<Duration>, retention: Duration) -> Verdict {
    let old = age.is_some_and(|age| age > retention);
    match kind {
        Kind::Dir if depth == 0 => Verdict::Descend,
        Kind::Dir | Kind::Other => Verdict::Keep,
        Kind::File | Kind::Link if old => Verdict::Delete,
        Kind::File | Kind::Link => Verdict::Keep,
    }
}

/// What a sweep did in one workspace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Files (and links) deleted.
    pub deleted: usize,
    /// Room directories removed because they were empty.
    pub removed_dirs: usize,
    /// Entries that could not be read or deleted (logged).
    pub errors: usize,
}

/// Sweeps `root/inbox`: deletes what is older than `retention` at `now`. A workspace
/// without an inbox is fine (nothing to do).
pub fn sweep(root: &Path, retention: Duration, now: SystemTime) -> std::io::Result<SweepReport> {
    let mut report = SweepReport::default();
    let root = match openat(CWD, root, dir_flags(), Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(report),
        Err(e) => return Err(e.into()),
    };
    let inbox = match openat(&root, INBOX_DIR, dir_flags(), Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(report),
        Err(e) => return Err(e.into()),
    };
    sweep_dir(&inbox, 0, retention, now, &mut report)?;
    Ok(report)
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn sweep_dir(
    dir: &OwnedFd,
    depth: usize,
    retention: Duration,
    now: SystemTime,
    report: &mut SweepReport,
) -> std::io::Result<()> {
    let names: Vec<_> = Dir::read_from(dir)?
        .filter_map(|entry| match entry {
            Ok(entry) => Some(entry.file_name().to_owned()),
            Err(error) => {
                tracing::warn!(%error, "cannot read an inbox directory entry");
                report.errors += 1;
                None
            }
        })
        .filter(|name| name.as_bytes() != b"." && name.as_bytes() != b"..")
        .collect();
    for name in names {
        if let Err(error) = sweep_entry(dir, &name, depth, retention, now, report) {
            tracing::warn!(%error, entry = %name.to_string_lossy(), "cannot sweep an inbox entry");
            report.errors += 1;
        }
    }
    Ok(())
}

fn sweep_entry(
    dir: &OwnedFd,
    name: &CStr,
    depth: usize,
    retention: Duration,
    now: SystemTime,
    report: &mut SweepReport,
) -> std::io::Result<()> {
    let stat = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let kind = match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Kind::File,
        FileType::Symlink => Kind::Link,
        FileType::Directory => Kind::Dir,
        _ => Kind::Other,
    };
    let modified =
        UNIX_EPOCH + Duration::from_secs(u64::try_from(stat.st_mtime).unwrap_or_default());
    let age = now.duration_since(modified).ok();
    match verdict(kind, depth, age, retention) {
        Verdict::Keep => {}
        Verdict::Delete => {
            unlinkat(dir, name, AtFlags::empty())?;
            report.deleted += 1;
        }
        Verdict::Descend => {
            let inner = openat(dir, name, dir_flags(), Mode::empty())?;
            sweep_dir(&inner, depth + 1, retention, now, report)?;
            match unlinkat(dir, name, AtFlags::REMOVEDIR) {
                Ok(()) => report.removed_dirs += 1,
                Err(Errno::NOTEMPTY | Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn verdicts() {
        let week = 7 * DAY;
        let cases: &[(Kind, usize, Option<Duration>, Verdict)] = &[
            (Kind::File, 1, Some(8 * DAY), Verdict::Delete),
            (Kind::File, 1, Some(6 * DAY), Verdict::Keep),
            (Kind::File, 1, None, Verdict::Keep), // modified in the future
            (Kind::File, 0, Some(8 * DAY), Verdict::Delete), // a stray file in inbox/
            (Kind::Link, 1, Some(8 * DAY), Verdict::Delete), // the link, never its target
            (Kind::Link, 0, Some(DAY), Verdict::Keep),
            (Kind::Dir, 0, Some(8 * DAY), Verdict::Descend), // a room directory
            (Kind::Dir, 0, Some(DAY), Verdict::Descend),
            (Kind::Dir, 1, Some(8 * DAY), Verdict::Keep), // not a layout the bot writes
            (Kind::Other, 1, Some(8 * DAY), Verdict::Keep), // a FIFO: never touched
        ];
        for (kind, depth, age, want) in cases {
            assert_eq!(
                verdict(*kind, *depth, *age, week),
                *want,
                "{kind:?} at depth {depth}, age {age:?}"
            );
        }
    }

    #[test]
    fn a_sweep_deletes_old_files_and_empty_rooms_and_nothing_outside() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("ws");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(root.join("inbox/room-a")).expect("mkdir");
        fs::create_dir_all(root.join("inbox/room-b")).expect("mkdir");
        fs::create_dir_all(&outside).expect("mkdir");
        fs::write(root.join("inbox/room-a/old.txt"), "x").expect("write");
        fs::write(root.join("inbox/room-b/new.txt"), "x").expect("write");
        fs::write(outside.join("old.txt"), "precious").expect("write");
        // The agent planted a link to a directory outside, named like a room.
        std::os::unix::fs::symlink(&outside, root.join("inbox/room-c")).expect("symlink");
        let set_old = |path: &Path| {
            let file = fs::File::options().write(true).open(path).expect("open");
            file.set_modified(SystemTime::now() - 30 * DAY)
                .expect("set mtime");
        };
        set_old(&root.join("inbox/room-a/old.txt"));
        set_old(&outside.join("old.txt"));

        let report = sweep(&root, 7 * DAY, SystemTime::now()).expect("sweep");

        assert!(
            !root.join("inbox/room-a").exists(),
            "old file and its empty room gone"
        );
        assert!(
            root.join("inbox/room-b/new.txt").exists(),
            "a recent file stays"
        );
        assert_eq!(
            fs::read_to_string(outside.join("old.txt")).expect("outside file"),
            "precious",
            "nothing outside the inbox is touched through a link"
        );
        assert_eq!(report.deleted, 1);
        assert_eq!(report.removed_dirs, 1);
        assert_eq!(report.errors, 0);
    }

    #[test]
    fn a_workspace_without_an_inbox_is_fine() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let report = sweep(tmp.path(), DAY, SystemTime::now()).expect("sweep");
        assert_eq!(report, SweepReport::default());
        let missing = sweep(&tmp.path().join("missing"), DAY, SystemTime::now()).expect("sweep");
        assert_eq!(missing, SweepReport::default());
    }
}
