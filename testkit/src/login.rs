//! A matrix-sdk client logged in with a password, its state in a store of its own.
//!
//! Why this file exists: simulated people (`person`), the benchmark's people and floor bot
//! (`ops/bench`) and the demo's person (`ops/demo_person.rs`) all start the same way: a
//! client on a sqlite store (its E2EE keys) and a password login as a new device.

use std::path::Path;

use anyhow::Context as _;
use matrix_sdk::Client;

/// Logs `user` (an id or a local part) in on `homeserver` as a new device named `device`,
/// keeping the client's state (E2EE keys included) in `store`.
pub async fn password_client(
    homeserver: &str,
    user: &str,
    password: &str,
    store: &Path,
    device: &str,
) -> anyhow::Result<Client> {
    let client = Client::builder()
        .homeserver_url(homeserver)
        .sqlite_store(store, None)
        .build()
        .await
        .context("building the matrix-sdk client")?;
    client
        .matrix_auth()
        .login_username(user, password)
        .initial_device_display_name(device)
        .send()
        .await
        .with_context(|| format!("logging in as {user}"))?;
    Ok(client)
}
