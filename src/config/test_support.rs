//! Helpers shared by the unit tests of the configuration's files.
//!
//! Why this file exists: most tests of a section, of the environment provider or of the
//! legacy inputs load a whole configuration from a temporary TOML file and a given
//! environment; the helpers doing that are written once, here.

use std::path::PathBuf;

use super::{Config, ConfigError};

pub(super) const MINIMAL: &str = r#"
[matrix]
homeserver_url = "https://matrix.example.org"
user_id = "@surfaces:example.org"
password = "file-password"
"#;

pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A temp dir with `surfaces.toml` holding `toml`.
pub(super) fn dir_with(toml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("surfaces.toml");
    std::fs::write(&path, toml).unwrap();
    (dir, path)
}

pub(super) fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let (dir, path) = dir_with(toml);
    Config::load_in(dir.path(), Some(&path), &env(vars))
}

pub(super) fn load_ok(toml: &str, vars: &[(&str, &str)]) -> Config {
    match load(toml, vars) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got: {e}"),
    }
}

pub(super) fn load_err(toml: &str, vars: &[(&str, &str)]) -> ConfigError {
    match load(toml, vars) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}
