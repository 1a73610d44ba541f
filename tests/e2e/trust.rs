//! Issue 12 items 1, 2, 3 and 13 against a real Synapse: a room someone else created and
//! bound (naming another person's conversation, or a chat id at the end of the range) is
//! never adopted, with or without the bot's store, and `/status` lists it as rejected; a
//! room where the bot lost the power to write back its binding does not stop start-up and
//! is listed as failed; `!new` still works; a group invite is declined and many strangers'
//! invites do not hold up an allowed person's onboarding.
//!
//! Nothing sleeps: every wait polls.

use std::time::Duration;

use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoomRequest;
use matrix_sdk::ruma::{OwnedRoomId, RoomVersionId};
use serde_json::{json, Value};
use surfaces::runtime::STORE_DIR;

use crate::spine::{ask, field, onboard, Stack};
use crate::support::person::Person;
use crate::support::WAIT;

const ROOM_EVENT: &str = "org.surfaces.room";

/// `/status.json` of the running bot.
async fn status(stack: &Stack) -> anyhow::Result<Value> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let response = http
        .get(format!("{}/status.json", stack.bot.ops_url()))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "/status.json: {}",
        response.status()
    );
    Ok(serde_json::from_str(&response.text().await?)?)
}

/// The room ids in `/status`'s reconciliation list `list` (`rejected` or `failed`).
fn listed(status: &Value, list: &str) -> Vec<String> {
    status["reconciliation"][list]
        .as_array()
        .map(|rooms| {
            rooms
                .iter()
                .map(|r| field(r, "room_id").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `person` opens a direct chat with the bot, waits until the bot joined, then writes
/// `binding` into it themselves (they created the room: they have the power to).
async fn forge(stack: &Stack, person: &Person, binding: Value) -> anyhow::Result<OwnedRoomId> {
    let bot = stack.bot_id();
    let room = person.create_dm(bot).await?;
    person.wait_for_joined_member(&room, bot, WAIT).await?;
    person
        .room(&room)
        .await?
        .send_state_event_raw(ROOM_EVENT, "", binding)
        .await?;
    person
        .wait_for_state_event(&room, ROOM_EVENT, "", |_| true, WAIT)
        .await?;
    Ok(room)
}

async fn chat_id(person: &Person, room: &OwnedRoomId) -> anyhow::Result<String> {
    let binding = person
        .wait_for_state_event(room, ROOM_EVENT, "", |_| true, WAIT)
        .await?;
    Ok(field(&binding, "platform_chat_id").to_owned())
}

/// Mallory speaks in her forged room; Alice's next turn proves the bot went on; the agent
/// must never have seen Mallory's words.
async fn forged_room_reaches_no_agent(
    stack: &Stack,
    alice: &Person,
    chat: &OwnedRoomId,
    mallory: &Person,
    forged: &OwnedRoomId,
    text: &str,
) -> anyhow::Result<()> {
    mallory.send_text(forged, text).await?;
    let reply = ask(stack, alice, chat, &format!("after {text}")).await?;
    assert!(
        reply.body.contains(&format!("after {text}")),
        "{}",
        reply.body
    );
    assert!(
        stack.agent.turns().iter().all(|t| t.text != text),
        "the forged room reached the agent"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_bindings_are_rejected_and_a_room_without_power_does_not_stop_start_up(
) -> anyhow::Result<()> {
    let mut stack = Stack::start().await?;
    let bot = stack.bot_id().to_owned();
    let alice = stack.person("alice").await?;
    let a = onboard(&stack, &alice).await?;
    ask(&stack, &alice, &a.chat, "hello").await?;
    let c1 = chat_id(&alice, &a.chat).await?;

    // Mallory (allowed) binds rooms of her own: one to Alice's conversation, one to the
    // end of the chat id range with an index at the end of its type.
    let mallory = stack.person("mallory").await?;
    let stolen = forge(
        &stack,
        &mallory,
        json!({"agent_id": "ref", "platform_chat_id": c1, "owner": alice.user_id().as_str(), "chat_index": 1}),
    )
    .await?;
    let end_of_range = forge(
        &stack,
        &mallory,
        json!({"agent_id": "ref", "platform_chat_id": "sfc-18446744073709551615", "owner": mallory.user_id().as_str(), "chat_index": 4294967295u64}),
    )
    .await?;

    // A chat the bot made (through another device of its own) for Alice in a room version
    // where a creator can give up power, with a binding without chat id to complete; then
    // it gave away its power to write the binding.
    let bot_device = Person::login(&stack.synapse, &stack.bot_creds).await?;
    let mut request = CreateRoomRequest::new();
    request.name = Some("legacy".to_owned());
    request.invite = vec![alice.user_id().to_owned()];
    request.room_version = Some(RoomVersionId::V10);
    let legacy = bot_device
        .client()
        .create_room(request)
        .await?
        .room_id()
        .to_owned();
    alice.wait_for_invite(|i| i.room_id == legacy, WAIT).await?;
    alice.join(&legacy).await?;
    let room = bot_device.room(&legacy).await?;
    room.send_state_event_raw(
        ROOM_EVENT,
        "",
        json!({"agent_id": "ref", "platform_chat_id": "", "owner": alice.user_id().as_str(), "chat_index": 2}),
    )
    .await?;
    let mut levels = bot_device
        .room_state_event(&legacy, "m.room.power_levels", "")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no power levels"))?;
    levels["users"][bot.as_str()] = json!(50);
    levels["events"][ROOM_EVENT] = json!(100);
    room.send_state_event_raw("m.room.power_levels", "", levels)
        .await?;
    alice
        .wait_for_state_event(
            &legacy,
            "m.room.power_levels",
            "",
            |l| l["users"][bot.as_str()] == json!(50),
            WAIT,
        )
        .await?;

    // With the store: the forged rooms were never known; they are walked and rejected.
    stack.restart_bot().await?;
    let s = status(&stack).await?;
    let rejected = listed(&s, "rejected");
    assert!(
        rejected.contains(&stolen.to_string()) && rejected.contains(&end_of_range.to_string()),
        "{s}"
    );
    assert!(stack.bot.log_contains("not adopting a room"), "logged");
    assert_eq!(listed(&s, "failed"), vec![legacy.to_string()], "{s}");
    forged_room_reaches_no_agent(&stack, &alice, &a.chat, &mallory, &stolen, "steal 1").await?;

    // Without the store: everything is walked; start-up goes on past the unwritable room.
    let status_code = stack.bot.stop().await?;
    assert!(status_code.success());
    std::fs::remove_dir_all(stack.data.path().join("bot").join(STORE_DIR))?;
    stack.relaunch(&[]).await?;
    let s = status(&stack).await?;
    let rejected = listed(&s, "rejected");
    assert!(
        rejected.contains(&stolen.to_string()) && rejected.contains(&end_of_range.to_string()),
        "{s}"
    );
    assert_eq!(listed(&s, "failed"), vec![legacy.to_string()], "{s}");
    assert!(
        !rejected.contains(&a.chat.to_string()) && !rejected.contains(&legacy.to_string()),
        "{s}"
    );
    forged_room_reaches_no_agent(&stack, &alice, &a.chat, &mallory, &stolen, "steal 2").await?;
    assert_eq!(
        chat_id(&alice, &a.chat).await?,
        c1,
        "Alice's conversation is hers"
    );
    assert!(stack
        .agent
        .turns()
        .iter()
        .filter(|t| t.chat == c1)
        .all(|t| !t.text.starts_with("steal")));

    // The forged number moved nothing: `!new` mints the next small id.
    let made = ask(&stack, &alice, &a.chat, "!new").await?;
    assert!(made.body.contains("New chat"), "{}", made.body);
    let chat3 = alice
        .wait_for_invite(|i| !i.is_space && i.inviter.as_deref() == Some(&*bot), WAIT)
        .await?;
    alice.join(&chat3).await?;
    let id = chat_id(&alice, &chat3).await?;
    let seq: u64 = id.trim_start_matches("sfc-").parse()?;
    assert!(seq < 10, "the counter did not jump: {id}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_invites_are_declined_and_strangers_do_not_hold_up_onboarding() -> anyhow::Result<()>
{
    const STRANGERS: usize = 12;
    let mut stack = Stack::start().await?;
    let bot: matrix_sdk::ruma::OwnedUserId = stack.bot_id().to_owned();
    let server = bot.server_name().to_owned();
    let allowed = format!("@alice:{server}, @carol:{server}");
    let status_code = stack.bot.stop().await?;
    assert!(status_code.success());
    stack
        .relaunch(&[("SURFACES__ACCESS__ALLOWED_USERS", allowed.as_str())])
        .await?;

    // An allowed person's group room (not a direct chat): declined, no Space made.
    let carol = stack.person("carol").await?;
    let group = carol
        .create_room(Some("a group"), &[&*bot], false, false)
        .await?;
    let left = |c: &Value| field(c, "membership") == "leave";
    carol
        .wait_for_state_event(&group, "m.room.member", bot.as_str(), left, WAIT)
        .await?;
    assert!(
        carol.invites().await.is_empty(),
        "no Space for a group invite"
    );

    // Strangers invite the bot all at once, then Alice: she is onboarded, and every
    // stranger's invite is declined.
    let mut strangers = Vec::new();
    for i in 0..STRANGERS {
        strangers.push(stack.person(&format!("stranger{i}")).await?);
    }
    let mut rooms = Vec::new();
    for stranger in &strangers {
        rooms.push(stranger.create_dm(&bot).await?);
    }
    let alice = stack.person("alice").await?;
    let a = onboard(&stack, &alice).await?;
    let reply = ask(&stack, &alice, &a.chat, "hi").await?;
    assert!(reply.body.contains("hi"), "{}", reply.body);
    for (stranger, room) in strangers.iter().zip(&rooms) {
        stranger
            .wait_for_state_event(room, "m.room.member", bot.as_str(), left, WAIT)
            .await?;
    }
    assert!(
        stack.bot.log_contains("not a direct chat with the bot"),
        "the group invite's reason is logged"
    );
    Ok(())
}
