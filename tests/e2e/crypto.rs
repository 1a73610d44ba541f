//! End-to-end encryption that real clients trust, against the real Synapse: a person whose
//! client excludes insecure devices (Element's MSC4153 setting, matrix-sdk's
//! `IdentityBasedStrategy`) is read and answered by a fresh bot, because the bot
//! cross-signs its device at its first start; the bot's own room keys go only to devices
//! their owner has signed; a bot whose whole data dir was deleted while it was down comes
//! back with its recovery key and answers what was sent meanwhile, once; a message whose
//! room key comes late is answered when it comes, and missing keys are owned up to once.

use std::time::Duration;

use matrix_sdk::ruma::OwnedRoomId;
use surfaces::surface::encryption::fingerprint;

use crate::catch_up::metric;
use crate::spine::{agents_toml, answer_to, ask, onboard, Stack};
use crate::support::bot::BotProcess;
use crate::support::key_hold::KeyHold;
use crate::support::person::{CollectStrategy, Person};
use crate::support::reference_agent::ReferenceAgent;
use crate::support::synapse::Synapse;
use crate::support::{wait_until, POLL, WAIT};

/// The bot's log line once its identity is settled (with `elapsed_ms`).
const IDENTITY_CHECKED: &str = "end-to-end encryption identity checked";
/// The bot's log line after creating its cross-signing identity.
const BOOTSTRAPPED: &str = "created the bot's cross-signing identity";
/// The bot's log line after setting up recovery (names the key file).
const RECOVERY_SET_UP: &str = "key backup and recovery are set up. The recovery key";
/// The bot's log line after restoring from secret storage.
const RESTORED: &str = "restored the bot's identity and room keys";
/// matrix-sdk's warning when it has room keys to back up and no backup.
const NO_BACKUP_WARNING: &str = "no backup key was found";
/// How long the bot's key backup may take to hold a new room key.
const BACKUP_WAIT: Duration = Duration::from_secs(60);

/// A person on a client that shares room keys only with cross-signed devices.
async fn careful_person(stack: &Stack, localpart: &str) -> anyhow::Result<Person> {
    let creds = stack
        .synapse
        .registrar()
        .register(localpart, "person-password", false)
        .await?;
    Person::login_sharing(
        &stack.synapse,
        &creds,
        CollectStrategy::IdentityBasedStrategy,
    )
    .await
}

/// The `elapsed_ms` of the bot's identity check in this run's log.
fn identity_check_ms(stack: &Stack) -> Option<u64> {
    let log = stack.bot.log_text();
    let coloured = log.lines().find(|l| l.contains(IDENTITY_CHECKED))?;
    // Without the terminal colour codes (`ESC [ ... m`).
    let mut line = String::new();
    let mut in_escape = false;
    for c in coloured.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => line.push(c),
        }
    }
    // Past the field name (and any colour codes or `=`/`:`), the first run of digits.
    let rest = &line[line.find("elapsed_ms")? + "elapsed_ms".len()..];
    let digits: String = rest
        .chars()
        .skip_while(|c| *c != '=' && *c != ':')
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_who_excludes_insecure_devices_is_read_and_answered() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    assert!(
        stack.bot.log_contains(BOOTSTRAPPED),
        "the first start creates the identity:\n{}",
        stack.bot.log_tail(60)
    );
    eprintln!(
        "first start: identity + recovery set up in {:?} ms",
        identity_check_ms(&stack)
    );
    assert_crypto_health_shown(&stack).await?;
    let erin = careful_person(&stack, "erin").await?;
    let ob = onboard(&stack, &erin).await?;
    let reply = ask(&stack, &erin, &ob.chat, "can you read me?").await?;
    assert!(reply.was_encrypted, "the answer is encrypted: {reply:?}");
    assert_settings_show_the_keys_the_client_sees(&stack, &erin, &ob.chat).await?;
    // Item 6: with backup set up, matrix-sdk has a backup key for every sync's room keys.
    assert!(
        !stack.bot.log_contains(NO_BACKUP_WARNING),
        "no 'no backup key' warnings with backup set up:\n{}",
        stack.bot.log_tail(40)
    );
    // Item 6: nor the "not found" errors matrix-sdk expects while it sets up (secret
    // storage, cross-signing keys and the backup do not exist before the first start).
    let log = stack.bot.log_text();
    let expected_404s: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("404"))
        .collect();
    assert!(
        expected_404s.is_empty(),
        "no ERROR lines for expected 404s:\n{}",
        expected_404s.join("\n")
    );
    Ok(())
}

/// Item 5: `!settings` shows the bot's identity and device keys, the same the person's
/// client sees for the bot, grouped as clients show them.
async fn assert_settings_show_the_keys_the_client_sees(
    stack: &Stack,
    person: &Person,
    chat: &OwnedRoomId,
) -> anyhow::Result<()> {
    let encryption = person.client().encryption();
    let identity = encryption
        .get_user_identity(stack.bot_id())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the person's client sees no identity of the bot"))?;
    let master = identity
        .master_key()
        .get_first_key()
        .ok_or_else(|| anyhow::anyhow!("the bot's identity has no master key"))?
        .to_base64();
    let devices = encryption.get_user_devices(stack.bot_id()).await?;
    let device = devices
        .devices()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the person's client knows no device of the bot"))?;
    let device_key = device
        .ed25519_key()
        .ok_or_else(|| anyhow::anyhow!("the bot's device has no ed25519 key"))?
        .to_base64();
    let settings = ask(stack, person, chat, "!settings").await?.body;
    for (what, expected) in [
        ("identity", fingerprint(&master)),
        ("device id", device.device_id().to_string()),
        ("device key", fingerprint(&device_key)),
    ] {
        assert!(
            settings.contains(&expected),
            "!settings shows the bot's {what} {expected}:\n{settings}"
        );
    }
    Ok(())
}

/// Item 4: `/status.json` and `/readyz?verbose` show the bot's encryption state.
async fn assert_crypto_health_shown(stack: &Stack) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let url = format!("{}/status.json", stack.bot.ops_url());
    // The device's own signature shows once the bot's keys query sees it (a sync or two),
    // and the snapshot is refreshed every 30 s.
    let status: serde_json::Value = wait_until(Duration::from_secs(90), POLL, || async {
        let status: serde_json::Value = http.get(&url).send().await.ok()?.json().await.ok()?;
        (status["encryption"]["cross_signed"] == true).then_some(status)
    })
    .await?;
    let crypto = &status["encryption"];
    assert_eq!(crypto["backup_enabled"], true, "{status:#}");
    assert!(crypto["backup_version"].is_string(), "{status:#}");
    assert_eq!(crypto["recovery"], "enabled", "{status:#}");
    assert!(
        crypto["one_time_keys"].as_u64().is_some_and(|n| n > 0),
        "{status:#}"
    );
    let verbose = http
        .get(format!("{}/readyz?verbose", stack.bot.ops_url()))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        verbose.contains("[+] encryption: device cross-signed, key backup enabled (version"),
        "{verbose}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_shares_its_room_keys_only_with_signed_devices() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;
    // A second device that alice never verified: no cross-signing keys, so unsigned.
    let rogue = alice.another_device(&stack.synapse).await?;
    rogue.room(&ob.chat).await?;
    let reply = ask(&stack, &alice, &ob.chat, "who can read this?").await?;
    // The reply reaches the unsigned device only as an event it cannot decrypt.
    let withheld = wait_until(WAIT, POLL, || async {
        rogue
            .undecryptable(&ob.chat)
            .await
            .contains(&reply.event_id.to_string())
            .then_some(())
    })
    .await;
    assert!(
        withheld.is_ok(),
        "the unsigned device got no key for the bot's reply {}; it read: {:?}",
        reply.event_id,
        rogue.messages(&ob.chat).await
    );
    Ok(())
}

/// Waits until the homeserver's key backup of the bot holds a key of `room`.
async fn wait_for_backup_of(stack: &Stack, room: &OwnedRoomId) -> anyhow::Result<()> {
    let session: serde_json::Value = serde_json::from_slice(&std::fs::read(
        stack.bot.data_dir().join("matrix-session.json"),
    )?)?;
    let token = session["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let http = reqwest::Client::new();
    let base = stack.synapse.base_url.clone();
    wait_until(BACKUP_WAIT, POLL, || {
        let (http, token, base) = (http.clone(), token.clone(), base.clone());
        async move {
            let version: serde_json::Value = http
                .get(format!("{base}/_matrix/client/v3/room_keys/version"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let version = version["version"].as_str()?.to_owned();
            let keys: serde_json::Value = http
                .get(format!(
                    "{base}/_matrix/client/v3/room_keys/keys?version={version}"
                ))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            keys["rooms"].get(room.as_str()).map(|_| ())
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("the bot's key backup never held a key of {room}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_restored_with_its_recovery_key_answers_what_was_sent_while_it_was_down(
) -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    assert!(
        stack.bot.log_contains(RECOVERY_SET_UP),
        "the first start sets up recovery and names the key file:\n{}",
        stack.bot.log_tail(60)
    );
    let key_path = stack.bot.data_dir().join("recovery-key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the recovery key file is private");
    }
    let recovery_key = std::fs::read_to_string(&key_path)?.trim().to_owned();
    assert!(
        !stack.bot.log_contains(&recovery_key),
        "the recovery key itself is never logged"
    );

    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;
    let first = alice.send_text(&ob.chat, "before the redeploy").await?;
    let bot = stack.bot_id().to_owned();
    alice
        .wait_for_message(
            &ob.chat,
            |m| m.sender == bot && m.in_reply_to.as_ref() == Some(&first),
            WAIT,
        )
        .await?;
    // The room key of alice's session reached the backup before the bot goes down.
    wait_for_backup_of(&stack, &ob.chat).await?;
    assert!(
        !stack.bot.log_contains(NO_BACKUP_WARNING),
        "no 'no backup key' warnings with backup set up:\n{}",
        stack.bot.log_tail(40)
    );

    // Down, and its whole data dir (crypto store, journal, session) is gone.
    let status = stack.bot.stop().await?;
    assert!(status.success(), "the bot exits 0 on SIGTERM: {status:?}");
    std::fs::remove_dir_all(stack.bot.data_dir())?;
    let while_down = alice
        .send_text(&ob.chat, "sent while you were away")
        .await?;

    stack
        .relaunch(&[("SURFACES__MATRIX__RECOVERY_KEY", recovery_key.as_str())])
        .await?;
    assert!(
        stack.bot.log_contains(RESTORED),
        "the new device restores the identity:\n{}",
        stack.bot.log_tail(60)
    );
    alice
        .wait_for_message(
            &ob.chat,
            |m| m.sender == bot && m.in_reply_to.as_ref() == Some(&while_down),
            WAIT,
        )
        .await?;
    // Answered once, and the message from before the redeploy not again.
    let history = alice.history(&ob.chat).await?;
    let answers_to = |id: &matrix_sdk::ruma::OwnedEventId| {
        history
            .iter()
            .filter(|m| m.sender == bot && m.in_reply_to.as_ref() == Some(id))
            .count()
    };
    assert_eq!(answers_to(&while_down), 1, "answered once");
    assert_eq!(
        answers_to(&first),
        1,
        "the old message is not answered again"
    );
    // The new device is cross-signed: a careful person is answered too.
    let erin = careful_person(&stack, "erin").await?;
    let ob_erin = onboard(&stack, &erin).await?;
    ask(&stack, &erin, &ob_erin.chat, "still there?").await?;
    Ok(())
}

/// The failure the bootstrap fixes, shown with the real binary: a bot that cannot create its
/// identity (an access-token login, no password) says what the operator must do, and a
/// careful person's message stays unreadable to it, while the same person's message from a
/// client that shares with every device, sent after it in the same room, is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_bot_says_what_to_do_and_cannot_read_a_careful_person() -> anyhow::Result<()> {
    let synapse = Synapse::start().await?;
    let bot_creds = synapse
        .registrar()
        .register("surfaces", "bot-password", false)
        .await?;
    let agent = ReferenceAgent::start("ref").await;
    let data = tempfile::TempDir::new()?;
    let mut bot = BotProcess::start(
        &synapse,
        &bot_creds,
        &data.path().join("bot"),
        &[
            ("SURFACES__MATRIX__PASSWORD", ""),
            (
                "SURFACES__MATRIX__ACCESS_TOKEN",
                bot_creds.access_token.as_str(),
            ),
        ],
        Some(&agents_toml(&agent)),
    )
    .await?;
    bot.wait_for_log("surfaces is running", WAIT).await?;
    for needle in [
        "the bot's device is not cross-signed",
        "set matrix.password (or SURFACES__MATRIX__PASSWORD) for one start",
    ] {
        assert!(
            bot.log_contains(needle),
            "expected {needle:?} in the log:\n{}",
            bot.log_tail(60)
        );
    }
    let stack = Stack {
        bot_toml: agents_toml(&agent),
        synapse,
        agent,
        bot_creds,
        bot,
        data,
        bot_env: Vec::new(),
    };
    let erin = careful_person(&stack, "erin").await?;
    let ob = onboard(&stack, &erin).await?;
    let unread = erin.send_text(&ob.chat, "from the careful client").await?;
    // Erin's other client shares with every device: its message, sent after, is answered.
    let laptop = Person::login(&stack.synapse, &erin_creds(&erin)).await?;
    laptop.room(&ob.chat).await?;
    let later = laptop.send_text(&ob.chat, "from the laptop").await?;
    let bot_id = stack.bot_id().to_owned();
    erin.wait_for_message(
        &ob.chat,
        |m| m.sender == bot_id && m.in_reply_to.as_ref() == Some(&later),
        WAIT,
    )
    .await?;
    let bot = stack.bot_id().to_owned();
    let answered = erin
        .history(&ob.chat)
        .await?
        .iter()
        .any(|m| m.sender == bot && m.in_reply_to.as_ref() == Some(&unread));
    assert!(
        !answered,
        "an unsigned bot cannot read a person who excludes insecure devices"
    );
    Ok(())
}

/// Erin's credentials again (registered with the password every test person has).
fn erin_creds(erin: &Person) -> crate::support::synapse::UserCreds {
    crate::support::synapse::UserCreds {
        user_id: erin.user_id().to_owned(),
        localpart: erin.user_id().localpart().to_owned(),
        password: "person-password".to_owned(),
        access_token: String::new(),
        device_id: String::new(),
    }
}

/// Item 5: a person asking to verify the bot's device sees the request cancelled by the
/// bot (it cannot compare emoji), instead of a request left waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_request_to_the_bot_is_cancelled() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let alice = stack.person("alice").await?;
    onboard(&stack, &alice).await?;
    let encryption = alice.client().encryption();
    let devices = encryption.get_user_devices(stack.bot_id()).await?;
    let device = devices
        .devices()
        .next()
        .ok_or_else(|| anyhow::anyhow!("alice knows no device of the bot"))?;
    let request = device.request_verification().await?;
    wait_until(WAIT, POLL, || async {
        request.is_cancelled().then_some(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("the bot never cancelled the request: {e}"))?;
    assert!(
        stack.bot.log_contains("cancelled a verification request"),
        "{}",
        stack.bot.log_tail(30)
    );
    Ok(())
}

/// The grace period of the undecryptable-message test (short, so giving up is quick to see;
/// long enough for a released key to reach the bot well within it).
const UNDECRYPTABLE_GRACE_SECS: &str = "8";

/// The bot's `/status.json` `undecryptable` section.
async fn undecryptable_status(stack: &Stack) -> anyhow::Result<serde_json::Value> {
    let status: serde_json::Value = reqwest::get(format!("{}/status.json", stack.bot.ops_url()))
        .await?
        .json()
        .await?;
    Ok(status["undecryptable"].clone())
}

/// Waits until the bot's `/status.json` says `field` of `undecryptable` is `n`.
async fn wait_for_undecryptable(stack: &Stack, field: &str, n: u64) -> anyhow::Result<()> {
    wait_until(WAIT, POLL, || async {
        let status = undecryptable_status(stack).await.ok()?;
        (status[field].as_u64() == Some(n)).then_some(())
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "undecryptable.{field} never became {n}: {e}\n{}",
            stack.bot.log_tail(40)
        )
    })
}

/// Item 3: a message whose room key reaches the bot late is held and answered once the key
/// arrives; messages whose key never arrives bring one notice (per person and room) after
/// the grace period, and stay held in the journal (on `/status`, in `/metrics`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_keys_are_answered_and_missing_keys_are_owned_up_to_once() -> anyhow::Result<()> {
    let stack = Stack::start_with_env(&[(
        "SURFACES__MATRIX__UNDECRYPTABLE_GRACE_SECS",
        UNDECRYPTABLE_GRACE_SECS,
    )])
    .await?;
    let hold = KeyHold::start(&stack.synapse.base_url).await?;
    let creds = stack
        .synapse
        .registrar()
        .register("gina", "person-password", false)
        .await?;
    let gina = Person::login_at(hold.url(), &creds, CollectStrategy::AllDevices).await?;
    let ob = onboard(&stack, &gina).await?;
    let bot = stack.bot_id().to_owned();
    let room = gina.room(&ob.chat).await?;

    // The key comes late: the message is held, then answered when the key arrives.
    hold.hold(true);
    let late = gina
        .send_text(&ob.chat, "a question whose key is late")
        .await?;
    anyhow::ensure!(
        hold.kept() > 0,
        "the person's client sent no room key to hold"
    );
    wait_for_undecryptable(&stack, "waiting_now", 1).await?;
    assert!(
        stack.agent.turns().is_empty(),
        "nothing reaches the agent before the key"
    );
    hold.release().await?;
    let answer = answer_to(&stack, &gina, &ob.chat, &late, None).await?;
    assert!(
        answer.body.contains("a question whose key is late"),
        "{answer:?}"
    );
    assert_eq!(
        answer.msgtype, "m.text",
        "the agent's answer, not a notice: {answer:?}"
    );
    wait_for_undecryptable(&stack, "waiting_now", 0).await?;
    assert_eq!(
        metric(
            &stack,
            "surfaces_undecryptable_messages_total{event=\"decrypted\"}"
        )
        .await?,
        1.0
    );

    // The key never comes (a new session, its key dropped): two messages, one notice.
    room.discard_room_key().await?;
    hold.hold(true);
    let lost = [
        gina.send_text(&ob.chat, "first message without a key")
            .await?,
        gina.send_text(&ob.chat, "second message without a key")
            .await?,
    ];
    anyhow::ensure!(
        hold.discard() > 0,
        "the person's client sent no room key to drop"
    );
    wait_for_undecryptable(&stack, "given_up_now", 2).await?;
    let notice = gina
        .wait_for_message(
            &ob.chat,
            |m| m.sender == bot && m.body.contains("could not read your encrypted message"),
            WAIT,
        )
        .await?;
    assert_eq!(notice.msgtype, "m.notice", "{notice:?}");
    assert_eq!(
        notice.in_reply_to.as_ref(),
        Some(&lost[0]),
        "the notice answers the oldest message: {notice:?}"
    );
    // The room still works (a fresh key reaches the bot); by the time this is answered any
    // second notice would have been sent long before.
    room.discard_room_key().await?;
    ask(&stack, &gina, &ob.chat, "can you read this one?").await?;
    let notices = gina
        .messages(&ob.chat)
        .await
        .into_iter()
        .filter(|m| m.sender == bot && m.body.contains("could not read your encrypted message"))
        .count();
    assert_eq!(
        notices, 1,
        "one notice per person and room, not per message"
    );
    // Nothing is lost: both are still held (answered if their key ever comes).
    let status = undecryptable_status(&stack).await?;
    assert_eq!(status["given_up_now"], 2, "{status}");
    assert_eq!(status["held"], 3, "{status}");
    assert_eq!(
        metric(
            &stack,
            "surfaces_undecryptable_messages_total{event=\"given_up\"}"
        )
        .await?,
        2.0
    );
    let verbose = reqwest::get(format!("{}/readyz?verbose", stack.bot.ops_url()))
        .await?
        .text()
        .await?;
    assert!(
        verbose.contains("undecryptable messages: 0 waiting for their key, 2 given up"),
        "{verbose}"
    );
    // The agent saw the late message and the last one, never the two without a key.
    let texts: Vec<String> = stack.agent.turns().into_iter().map(|t| t.text).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    Ok(())
}
