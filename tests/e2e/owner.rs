//! Owner-only commands against a real Synapse (issue 12, item 4): a member the owner
//! invited cannot clear the owner's conversation; the owner cannot redact the bot's binding
//! (the room's power levels put `redact` above the owner's level).

use matrix_sdk::ruma::OwnedEventId;
use surfaces::texts;

use crate::edits::{chat_id, slow_stack};
use crate::spine::{ask, onboard};
use crate::support::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_clear_and_the_owner_cannot_redact_the_binding() -> anyhow::Result<()> {
    let stack = slow_stack(&[]).await?;
    let alice = stack.person("alice").await?;
    let bob = stack.person("bob").await?;
    let a = onboard(&stack, &alice).await?;
    let c1 = chat_id(&alice, &a.chat).await?;

    // Alice invites bob into her chat; bob joins and knows the bot is there.
    alice.invite(&a.chat, bob.user_id()).await?;
    bob.wait_for_invite(|i| i.room_id == a.chat, WAIT).await?;
    bob.join(&a.chat).await?;
    bob.wait_for_joined_member(&a.chat, stack.bot_id(), WAIT)
        .await?;
    alice
        .wait_for_joined_member(&a.chat, bob.user_id(), WAIT)
        .await?;

    let refused = ask(&stack, &bob, &a.chat, "!clear").await?;
    assert_eq!(refused.msgtype, "m.notice");
    assert_eq!(refused.body, texts::OWNER_ONLY);
    assert_eq!(
        chat_id(&alice, &a.chat).await?,
        c1,
        "alice's conversation is untouched"
    );
    // Bob may still talk to the agent in the room he was invited to.
    let reply = ask(&stack, &bob, &a.chat, "hi from bob").await?;
    assert_eq!(reply.body, "ref-agent ref got: hi from bob");

    // The binding is the bot's: Synapse refuses the owner's redaction of it.
    let binding_id: OwnedEventId = alice
        .room_state(&a.chat)
        .await?
        .into_iter()
        .find(|e| e["type"] == "org.surfaces.room")
        .and_then(|e| e["event_id"].as_str().and_then(|id| id.try_into().ok()))
        .expect("the binding's event id");
    let redacted = alice.redact(&a.chat, &binding_id).await;
    assert!(redacted.is_err(), "the owner redacted the bot's binding");
    assert_eq!(chat_id(&alice, &a.chat).await?, c1);
    // She can still redact her own messages.
    let own = alice.send_text(&a.chat, "oops").await?;
    alice.redact(&a.chat, &own).await?;
    Ok(())
}
