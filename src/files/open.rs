//! Opening and writing files beneath a workspace root, one directory at a time, without
//! following links and without blocking.
//!
//! Why this exists: the agent can change its workspace at any moment, so a path checked and
//! then opened by name can be something else when it is opened: a FIFO (an `open` for
//! reading blocks until someone writes, and the room would wait forever), a symbolic link to
//! outside the root, a directory swapped for a link to another agent's root. Checking first
//! and opening afterwards cannot be made safe; this module never opens by a path it checked.
//! Instead it walks from a descriptor of the root, component by component, with `openat`:
//!
//! - every directory is opened with `O_DIRECTORY | O_NOFOLLOW` relative to the descriptor of
//!   its parent, so a symbolic link anywhere below the root is refused, not followed, and
//!   nothing swapped in a parent after it was opened can redirect the walk;
//! - the file is opened with `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY` (a FIFO opens at once
//!   instead of hanging), then `fstat` on the opened descriptor decides: a regular file only,
//!   and its size is read there, not from the path;
//! - incoming files are written into a temporary file created afresh (`O_CREAT | O_EXCL |
//!   O_NOFOLLOW`) in the directory's descriptor, then renamed into place within that same
//!   directory (a link at the final name is replaced, never written through).
//!
//! All descriptors are `O_CLOEXEC`. The root itself is the operator's configuration and may
//! be reached through a link (`/agents/3` mounted anywhere).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::path::{PathRefusal, RelPath};

/// Permissions of the directories created for incoming files.
pub const DIR_MODE: u32 = 0o755;
/// Permissions of incoming files.
pub const FILE_MODE: u32 = 0o644;

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// The descriptor of the workspace root (followed if it is a link: operator's config).
pub fn open_root(root: &Path) -> io::Result<OwnedFd> {
    Ok(rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// How opening a directory below the root failed.
#[derive(Debug)]
pub enum WalkError {
    /// A component is a symbolic link (not followed).
    Link,
    /// A component is missing (and was not to be created).
    Missing,
    /// A component is something other than a directory.
    NotADirectory,
    /// Anything else (permissions, I/O).
    Io(io::Error),
}

impl From<WalkError> for io::Error {
    fn from(error: WalkError) -> Self {
        match error {
            WalkError::Link => io::Error::new(
                io::ErrorKind::PermissionDenied,
                "a directory in the path is a symbolic link (not followed)",
            ),
            WalkError::Missing => io::Error::from(io::ErrorKind::NotFound),
            WalkError::NotADirectory => io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a component of the path is not a directory",
            ),
            WalkError::Io(e) => e,
        }
    }
}

/// The directory `name` in `parent`, not following a link; created first if missing and
/// `create`.
fn open_dir_at(parent: &OwnedFd, name: &str, create: bool) -> Result<OwnedFd, WalkError> {
    for _ in 0..2 {
        match rfs::openat(parent, name, dir_flags(), Mode::empty()) {
            Ok(fd) => return Ok(fd),
            Err(Errno::LOOP) => return Err(WalkError::Link),
            Err(Errno::NOTDIR) => {
                // Either `name` is not a directory, or it is a link (some kernels and file
                // systems answer ENOTDIR to O_DIRECTORY on a link): tell which.
                return match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                        Err(WalkError::Link)
                    }
                    _ => Err(WalkError::NotADirectory),
                };
            }
            Err(Errno::NOENT) if create => {
                match rfs::mkdirat(parent, name, Mode::from_raw_mode(DIR_MODE)) {
                    Ok(()) | Err(Errno::EXIST) => continue,
                    Err(e) => return Err(WalkError::Io(e.into())),
                }
            }
            Err(Errno::NOENT) => return Err(WalkError::Missing),
            Err(e) => return Err(WalkError::Io(e.into())),
        }
    }
    Err(WalkError::Missing)
}

/// The directory reached from `root` through `dirs`, each opened beneath the previous one
/// without following links; missing ones are created when `create`.
pub fn open_dirs_beneath<'a>(
    root: &Path,
    dirs: impl IntoIterator<Item = &'a str>,
    create: bool,
) -> Result<OwnedFd, WalkError> {
    let mut dir = open_root(root).map_err(WalkError::Io)?;
    for name in dirs {
        dir = open_dir_at(&dir, name, create)?;
    }
    Ok(dir)
}

/// The regular file `rel` names beneath `root`, opened for reading without following a link
/// anywhere below the root and without blocking, with its size as `fstat` tells it.
pub fn open_file_beneath(root: &Path, rel: &RelPath) -> Result<(File, u64), PathRefusal> {
    let parts: Vec<&str> = rel.components().collect();
    let (name, dirs) = parts.split_last().ok_or(PathRefusal::Empty)?;
    let dir = match open_dirs_beneath(root, dirs.iter().copied(), false) {
        Ok(dir) => dir,
        Err(WalkError::Link) => return Err(PathRefusal::Link),
        Err(WalkError::Missing | WalkError::NotADirectory) => return Err(PathRefusal::Missing),
        Err(WalkError::Io(e)) => return Err(PathRefusal::Unreadable(e.kind().to_string())),
    };
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rfs::openat(&dir, *name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Err(PathRefusal::Link),
        Err(Errno::NOENT | Errno::NOTDIR) => return Err(PathRefusal::Missing),
        Err(Errno::NXIO) => return Err(PathRefusal::NotAFile), // a socket, or a FIFO on some systems
        Err(e) => {
            return Err(PathRefusal::Unreadable(
                io::Error::from(e).kind().to_string(),
            ))
        }
    };
    let stat = rfs::fstat(&fd)
        .map_err(|e| PathRefusal::Unreadable(io::Error::from(e).kind().to_string()))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(PathRefusal::NotAFile);
    }
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    Ok((File::from(fd), size))
}

/// Writes `data` as `rel` beneath `root` (see the module docs): directories created as
/// needed without following links, the content written to a fresh temporary file and renamed
/// into place. Returns the final path (the canonical root joined with `rel`).
pub fn write_beneath(root: &Path, rel: &RelPath, data: &[u8]) -> io::Result<std::path::PathBuf> {
    let parts: Vec<&str> = rel.components().collect();
    let Some((name, dirs)) = parts.split_last() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"));
    };
    let dir = open_dirs_beneath(root, dirs.iter().copied(), true)?;
    let temp = format!(".{name}.part");
    match rfs::unlinkat(&dir, temp.as_str(), AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = rfs::openat(
        &dir,
        temp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(FILE_MODE),
    )?;
    let mut file = File::from(fd);
    let written = file
        .write_all(data)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            rfs::renameat(dir.as_fd(), temp.as_str(), dir.as_fd(), *name).map_err(io::Error::from)
        });
    drop(file);
    if let Err(e) = written {
        let _ = rfs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
        return Err(e);
    }
    Ok(rel.under(&root.canonicalize()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::path::normalize_agent_path;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn rel(s: &str) -> RelPath {
        normalize_agent_path(s, "3").unwrap()
    }

    #[test]
    fn open_table() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("3");
        let other = dir.path().join("4");
        std::fs::create_dir_all(root.join("out/sub")).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(root.join("out/chart.png"), b"png").unwrap();
        std::fs::write(root.join("out/sub/deep.txt"), b"deep").unwrap();
        std::fs::write(other.join("secret.txt"), b"secret").unwrap();
        symlink(other.join("secret.txt"), root.join("out/to_other_file")).unwrap();
        symlink(&other, root.join("out/to_other_dir")).unwrap();
        symlink("chart.png", root.join("out/inside_link")).unwrap();
        symlink("sub", root.join("out/dir_link")).unwrap();
        symlink("nothing", root.join("out/dangling")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("out/fifo").as_path(),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();

        use PathRefusal::*;
        let cases: &[(&str, Result<&[u8], PathRefusal>)] = &[
            ("out/chart.png", Ok(b"png")),
            ("out/sub/deep.txt", Ok(b"deep")),
            ("out/to_other_file", Err(Link)),
            ("out/to_other_dir/secret.txt", Err(Link)),
            ("out/inside_link", Err(Link)),
            ("out/dir_link/deep.txt", Err(Link)),
            ("out/dangling", Err(Link)),
            ("out/fifo", Err(NotAFile)),
            ("out", Err(NotAFile)),
            ("out/missing", Err(Missing)),
            ("out/chart.png/x", Err(Missing)),
            ("nowhere/x", Err(Missing)),
        ];
        for (path, want) in cases {
            let got = open_file_beneath(&root, &rel(path)).map(|(mut f, size)| {
                let mut data = Vec::new();
                f.read_to_end(&mut data).unwrap();
                assert_eq!(size, data.len() as u64);
                data
            });
            assert_eq!(got.as_deref().map_err(Clone::clone), want.clone(), "{path}");
        }

        // The root itself may be reached through a link.
        let link = dir.path().join("root_link");
        symlink(&root, &link).unwrap();
        assert!(open_file_beneath(&link, &rel("out/chart.png")).is_ok());
    }

    #[test]
    fn writes_create_directories_and_refuse_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("3");
        let other = dir.path().join("4");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        let written = write_beneath(&root, &rel("inbox/a/b.txt"), b"hi").unwrap();
        assert_eq!(written, root.canonicalize().unwrap().join("inbox/a/b.txt"));
        assert_eq!(std::fs::read(&written).unwrap(), b"hi");

        // A directory swapped for a link is not written through.
        std::fs::remove_dir_all(root.join("inbox/a")).unwrap();
        symlink(&other, root.join("inbox/a")).unwrap();
        let err = write_beneath(&root, &rel("inbox/a/b.txt"), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(std::fs::read_dir(&other).unwrap().count(), 0);

        // A file where a directory should be.
        std::fs::write(root.join("inbox/f"), b"").unwrap();
        assert!(write_beneath(&root, &rel("inbox/f/b.txt"), b"x").is_err());
    }
}
