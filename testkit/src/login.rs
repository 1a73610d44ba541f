//! A matrix-sdk client logged in with a password, its state in a store of its own.
//!
//! Why this file exists: simulated people (`person`), the benchmark's people and floor bot
//! (`ops/bench`) and the demo's person (`ops/demo_person.rs`) all start the same way: a
//! client on a sqlite store (its E2EE keys) and a password login as a new device.

use std::path::Path;

use anyhow::Context as _;
use matrix_sdk::encryption::EncryptionSettings;
use matrix_sdk::Client;
use surfaces::matrix::crypto::CollectStrategy;

/// Logs `user` (an id or a local part) in on `homeserver` as a new device named `device`,
/// keeping the client's state (E2EE keys included) in `store`.
pub async fn password_client(
    homeserver: &str,
    user: &str,
    password: &str,
    store: &Path,
    device: &str,
) -> anyhow::Result<Client> {
    password_client_sharing(
        homeserver,
        user,
        password,
        store,
        device,
        CollectStrategy::AllDevices,
    )
    .await
}

/// [`password_client`] whose room keys go to the devices `key_sharing` selects (Element's
/// "exclude insecure devices" is [`CollectStrategy::IdentityBasedStrategy`]). Like a
/// current client, it sets up cross-signing at its first login (the password answers the
/// homeserver's auth), so its device is signed by its owner and identity-based senders,
/// the bot among them, share their room keys with it.
pub async fn password_client_sharing(
    homeserver: &str,
    user: &str,
    password: &str,
    store: &Path,
    device: &str,
    key_sharing: CollectStrategy,
) -> anyhow::Result<Client> {
    let client = Client::builder()
        .homeserver_url(homeserver)
        .sqlite_store(store, None)
        .with_encryption_settings(EncryptionSettings {
            auto_enable_cross_signing: true,
            ..Default::default()
        })
        .with_room_key_recipient_strategy(key_sharing)
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
    // Cross-signing is set up in the background after login: wait for it, so the device is
    // signed before anyone decides whether to share keys with it.
    client
        .encryption()
        .wait_for_e2ee_initialization_tasks()
        .await;
    Ok(client)
}
