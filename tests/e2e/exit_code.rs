//! Exit codes of the real binary: a revoked access token stops the bot with exit code 3
//! (`EXIT_INVALID_CREDENTIALS`, systemd's `RestartPreventExitStatus=3`), with the reason in
//! its log, instead of retrying forever.
//!
//! Nothing here sleeps: the test polls for the process's exit with a deadline.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use surfaces::surface::EXIT_INVALID_CREDENTIALS;

use crate::spine::{ask, onboard, Stack};
use crate::support::synapse::{Synapse, UserCreds};

/// How long the bot may take to notice the revocation and stop: the `/sync` in flight was
/// authorised before the revocation and may be held for its whole long poll (30 s), then
/// the next one is refused, then the actors drain within the shutdown grace period.
const EXIT_WAIT: Duration = Duration::from_secs(90);

/// Revokes every access token of `creds`' user for real: logs in as that user once more
/// (password login, a new device) and calls `POST /_matrix/client/v3/logout/all` with the
/// new token, which invalidates all of the user's tokens, the running bot's included.
async fn revoke_all_tokens(synapse: &Synapse, creds: &UserCreds) -> anyhow::Result<()> {
    let http = synapse.http();
    let login = http
        .post(format!("{}/_matrix/client/v3/login", synapse.base_url))
        .json(&json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": creds.localpart },
            "password": creds.password,
            "initial_device_display_name": "the operator's revocation",
        }))
        .send()
        .await
        .context("logging in as the bot a second time")?;
    let status = login.status();
    let body: Value = login.json().await.context("the login answer")?;
    if !status.is_success() {
        bail!("the second login was refused ({status}): {body}");
    }
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .with_context(|| format!("no access_token in the login answer: {body}"))?;
    let logout = http
        .post(format!("{}/_matrix/client/v3/logout/all", synapse.base_url))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .context("POST /logout/all")?;
    let status = logout.status();
    if !status.is_success() {
        let body = logout.text().await.unwrap_or_default();
        bail!("/logout/all was refused ({status}): {body}");
    }
    Ok(())
}

/// A live bot whose every token is revoked (`/logout/all` from a second login) notices it
/// in its sync loop and exits with code 3, saying why in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_access_token_stops_the_bot_with_exit_code_3() -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    let a = onboard(&stack, &alice).await?;
    let reply = ask(&stack, &alice, &a.chat, "are you live?").await?;
    assert!(reply.body.contains("are you live?"), "{}", reply.body);

    revoke_all_tokens(&stack.synapse, &stack.bot_creds).await?;

    let status = stack.bot.wait_for_exit(EXIT_WAIT).await?;
    assert_eq!(
        status.code(),
        Some(i32::from(EXIT_INVALID_CREDENTIALS)),
        "the bot exits {EXIT_INVALID_CREDENTIALS} on a revoked token ({status:?}); log tail:\n{}",
        stack.bot.log_tail(40)
    );
    // The log says why: the sync loop saw the token refused, and the process stopped for it.
    for needle in [
        "sync loop stopping: the access token was rejected",
        "stopping: the homeserver rejected the bot's access token",
        "SURFACES__MATRIX__PASSWORD",
    ] {
        assert!(
            stack.bot.log_contains(needle),
            "expected {needle:?} in the bot's log; tail:\n{}",
            stack.bot.log_tail(40)
        );
    }
    Ok(())
}
