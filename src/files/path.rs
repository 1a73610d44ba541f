//! Paths the agent gives us, made safe to open.
//!
//! An agent names a file it wants posted (`file` events, `docs/agent-api.md`) with a path
//! relative to its workspace root, or an absolute one as the agent sees it (`/workspace/...`,
//! its own container's mount) or as Surfaces sees it (`/agents/<n>/...`, the shared volume).
//! Two steps turn that into a file Surfaces may read:
//!
//! 1. [`normalize_agent_path`] (pure): strips the prefix, resolves `.` and `..` lexically and
//!    refuses anything that leaves the root on paper: `..` above the root, an absolute path
//!    elsewhere, another agent's `/agents/<m>/`, NUL and control characters. Backslashes count
//!    as separators, so `..\..\x` is a traversal too, not an odd file name.
//! 2. [`super::open::open_file_beneath`] (effectful): opens the result beneath the root one
//!    component at a time without following any symbolic link and without blocking, and
//!    refuses what does not exist and what is not a regular file (checked on the opened
//!    descriptor).
//!
//! The result of step 1 ([`RelPath`]) is also what Surfaces hands to agents for incoming files:
//! always relative, never an absolute path of either side.

use std::fmt;
use std::path::{Path, PathBuf};

/// First component of an absolute path as the agent sees its own workspace.
pub const AGENT_MOUNT: &str = "workspace";
/// First component of an absolute path on the shared volume: `/agents/<n>/...`.
pub const AGENTS_DIR: &str = "agents";
/// Longest path accepted from an agent, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// A path relative to an agent's workspace root: non-empty, `/`-separated, without `.`,
/// `..`, empty components, NUL or control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

impl RelPath {
    /// Builds one from components already known to be clean (callers in this module and
    /// [`super::name`]).
    pub(crate) fn from_clean_components<S: AsRef<str>>(parts: &[S]) -> RelPath {
        debug_assert!(!parts.is_empty());
        debug_assert!(parts.iter().all(|p| is_clean_component(p.as_ref())));
        RelPath(
            parts
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<&str>>()
                .join("/"),
        )
    }

    /// The path as text (`inbox/ab12/cd34-report.pdf`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The components.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// This path under `root` (no checks: see [`super::open::open_file_beneath`]).
    pub fn under(&self, root: &Path) -> PathBuf {
        let mut path = root.to_path_buf();
        path.extend(self.components());
        path
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a path from an agent is not used. The `Display` text is shown to people (after the
/// path), so it is short and plain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    /// Empty, or names the workspace root itself rather than a file in it.
    #[error("does not name a file")]
    Empty,
    /// NUL or another control character.
    #[error("contains control characters")]
    InvalidCharacter,
    /// Longer than [`MAX_PATH_BYTES`].
    #[error("is too long")]
    TooLong,
    /// `..` climbs above the workspace root.
    #[error("climbs out of the agent's workspace with `..`")]
    Escapes,
    /// Absolute, and not under `/workspace/` nor this agent's `/agents/<n>/`.
    #[error("is outside the agent's workspace")]
    OutsideWorkspace,
    /// Under another agent's root, `/agents/<other>/`.
    #[error("is in another agent's workspace")]
    OtherAgent(String),
    /// A symbolic link on the way (links in workspaces are not followed: they could point
    /// out of the root, or be swapped between a check and the open).
    #[error("is or goes through a symbolic link (links are not followed)")]
    Link,
    /// Nothing there.
    #[error("does not exist")]
    Missing,
    /// A directory or something else that is not a regular file.
    #[error("is not a regular file")]
    NotAFile,
    /// The file or the workspace root cannot be read (permissions, I/O).
    #[error("cannot be read ({0})")]
    Unreadable(String),
}

/// Whether `part` may be a component of a [`RelPath`].
fn is_clean_component(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && !part.contains(['/', '\\'])
        && !part.chars().any(char::is_control)
}

/// Normalizes a path given by the agent whose workspace root is named `agent_root_name`
/// (the last component of its `workspace`, e.g. `3` for `/agents/3`) to a path relative to
/// that root. Pure: no file system access; see the module docs for the rules.
///
/// | input | result |
/// |---|---|
/// | `out/a.png`, `./out/a.png`, `out//a.png`, `out\a.png` | `out/a.png` |
/// | `/workspace/out/a.png`, `/agents/3/out/a.png` | `out/a.png` |
/// | `out/../a.png` | `a.png` |
/// | `../a.png`, `/workspace/../x`, `/agents/3/../4/x` | [`PathRefusal::Escapes`] |
/// | `/agents/4/a.png` | [`PathRefusal::OtherAgent`] |
/// | `/etc/passwd`, `/agents`, `/` | [`PathRefusal::OutsideWorkspace`] |
/// | ``, `/workspace`, `a/..` | [`PathRefusal::Empty`] |
/// | `a\0b` | [`PathRefusal::InvalidCharacter`] |
pub fn normalize_agent_path(raw: &str, agent_root_name: &str) -> Result<RelPath, PathRefusal> {
    if raw.is_empty() {
        return Err(PathRefusal::Empty);
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathRefusal::TooLong);
    }
    if raw.chars().any(char::is_control) {
        return Err(PathRefusal::InvalidCharacter);
    }
    let unified = raw.replace('\\', "/");
    let absolute = unified.starts_with('/');
    let mut parts = unified.split('/').filter(|p| !p.is_empty() && *p != ".");
    if absolute {
        match parts.next() {
            Some(AGENT_MOUNT) => {}
            Some(AGENTS_DIR) => match parts.next() {
                Some(name) if name == agent_root_name && is_clean_component(name) => {}
                Some("..") | None => return Err(PathRefusal::OutsideWorkspace),
                Some(other) => return Err(PathRefusal::OtherAgent(other.to_owned())),
            },
            _ => return Err(PathRefusal::OutsideWorkspace),
        }
    }
    let mut kept: Vec<&str> = Vec::new();
    for part in parts {
        if part == ".." {
            if kept.pop().is_none() {
                return Err(PathRefusal::Escapes);
            }
        } else {
            kept.push(part);
        }
    }
    if kept.is_empty() {
        return Err(PathRefusal::Empty);
    }
    Ok(RelPath::from_clean_components(&kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Result<RelPath, PathRefusal> {
        Ok(RelPath(s.to_owned()))
    }

    #[test]
    fn normalization_table() {
        use PathRefusal::*;
        let cases: &[(&str, Result<RelPath, PathRefusal>)] = &[
            // Relative forms.
            ("x", ok("x")),
            ("out/chart.png", ok("out/chart.png")),
            ("./out/chart.png", ok("out/chart.png")),
            ("out/./chart.png", ok("out/chart.png")),
            ("out//chart.png", ok("out/chart.png")),
            ("out/chart.png/", ok("out/chart.png")),
            ("a/../b", ok("b")),
            ("a/b/../../c", ok("c")),
            ("out\\chart.png", ok("out/chart.png")),
            ("...", ok("...")),
            ("..hidden", ok("..hidden")),
            ("a..b/c", ok("a..b/c")),
            ("~/x", ok("~/x")),
            ("C:/x", ok("C:/x")),
            // Prefix forms.
            ("/workspace/x", ok("x")),
            ("/workspace/out/chart.png", ok("out/chart.png")),
            ("//workspace//out/chart.png", ok("out/chart.png")),
            ("/./workspace/x", ok("x")),
            ("\\workspace\\x", ok("x")),
            ("/agents/3/x", ok("x")),
            ("/agents/3/out/chart.png", ok("out/chart.png")),
            ("//agents//3//x", ok("x")),
            ("/workspace/a/../b", ok("b")),
            // The prefix is a whole component, not a string prefix.
            ("/workspacex/x", Err(OutsideWorkspace)),
            ("/agents/33/x", Err(OtherAgent("33".into()))),
            ("workspace/x", ok("workspace/x")),
            ("agents/4/x", ok("agents/4/x")),
            // Another agent.
            ("/agents/4/x", Err(OtherAgent("4".into()))),
            ("/agents/4", Err(OtherAgent("4".into()))),
            // Absolute elsewhere.
            ("/etc/passwd", Err(OutsideWorkspace)),
            ("/", Err(OutsideWorkspace)),
            ("//", Err(OutsideWorkspace)),
            ("/agents", Err(OutsideWorkspace)),
            ("/agents/", Err(OutsideWorkspace)),
            ("/agents/../etc/passwd", Err(OutsideWorkspace)),
            ("/tmp/workspace/x", Err(OutsideWorkspace)),
            // Traversal.
            ("..", Err(Escapes)),
            ("../x", Err(Escapes)),
            ("./../x", Err(Escapes)),
            ("a/../../x", Err(Escapes)),
            ("..\\..\\etc\\passwd", Err(Escapes)),
            ("a\\..\\..\\x", Err(Escapes)),
            ("/workspace/../x", Err(Escapes)),
            ("/workspace/../agents/4/x", Err(Escapes)),
            ("/agents/3/../4/x", Err(Escapes)),
            ("/agents/3/../3/x", Err(Escapes)),
            // Not a file.
            ("", Err(Empty)),
            (".", Err(Empty)),
            ("./", Err(Empty)),
            ("a/..", Err(Empty)),
            ("/workspace", Err(Empty)),
            ("/workspace/", Err(Empty)),
            ("/agents/3", Err(Empty)),
            ("/agents/3/.", Err(Empty)),
            // Characters.
            ("a\0b", Err(InvalidCharacter)),
            ("/workspace/a\0", Err(InvalidCharacter)),
            ("a\nb", Err(InvalidCharacter)),
            ("a\u{7f}", Err(InvalidCharacter)),
            ("a\u{85}b", Err(InvalidCharacter)),
            // Unicode is fine; look-alikes are not separators nor dots.
            ("out/résumé.pdf", ok("out/résumé.pdf")),
            ("/workspace/données/図.png", ok("données/図.png")),
            ("a\u{2215}..\u{2215}b", ok("a\u{2215}..\u{2215}b")),
            ("\u{ff0e}\u{ff0e}/x", ok("\u{ff0e}\u{ff0e}/x")),
            ("\u{2025}/x", ok("\u{2025}/x")),
            ("/agents/\u{0663}/x", Err(OtherAgent("\u{0663}".into()))),
        ];
        for (raw, want) in cases {
            assert_eq!(&normalize_agent_path(raw, "3"), want, "input {raw:?}");
        }
    }

    #[test]
    fn too_long_is_refused() {
        let long = "a/".repeat(MAX_PATH_BYTES);
        assert_eq!(normalize_agent_path(&long, "3"), Err(PathRefusal::TooLong));
        let fits = "a".repeat(MAX_PATH_BYTES);
        assert!(normalize_agent_path(&fits, "3").is_ok());
    }

    #[test]
    fn root_name_is_matched_exactly() {
        assert_eq!(normalize_agent_path("/agents/coder/x", "coder"), ok("x"));
        assert_eq!(
            normalize_agent_path("/agents/Coder/x", "coder"),
            Err(PathRefusal::OtherAgent("Coder".into()))
        );
        // A root without a usable name never matches `/agents/...`.
        assert_eq!(
            normalize_agent_path("/agents/../x", ".."),
            Err(PathRefusal::OutsideWorkspace)
        );
        assert_eq!(
            normalize_agent_path("/agents//x", ""),
            Err(PathRefusal::OtherAgent("x".into()))
        );
    }

    #[test]
    fn results_never_escape() {
        // Whatever the input, an accepted path is relative and clean.
        let inputs = [
            "a/b/../c",
            "/workspace/./a",
            "x\\y",
            "/agents/3/q/../r",
            "./././z",
            "a/b/c/../..",
        ];
        for raw in inputs {
            let rel = normalize_agent_path(raw, "3").unwrap();
            assert!(!rel.as_str().starts_with('/'), "{rel}");
            assert!(rel.components().all(is_clean_component), "{rel}");
        }
    }

    #[test]
    fn rel_path_accessors() {
        let rel = normalize_agent_path("out/sub/chart.png", "3").unwrap();
        assert_eq!(rel.file_name(), "chart.png");
        assert_eq!(rel.to_string(), "out/sub/chart.png");
        assert_eq!(
            rel.under(Path::new("/agents/3")),
            PathBuf::from("/agents/3/out/sub/chart.png")
        );
    }

    #[test]
    fn missing_root_is_unreadable() {
        let rel = normalize_agent_path("x", "3").unwrap();
        assert!(matches!(
            super::super::open::open_file_beneath(Path::new("/nonexistent/surfaces/root"), &rel),
            Err(PathRefusal::Unreadable(_))
        ));
    }
}
