//! Per-person limits against a real Synapse: one person's flood is cut at their burst and
//! they are told once, while another person is answered; `!new` stops at the cap of chats.

use crate::spine::{ask, onboard, Stack};
use crate::support::WAIT;

const BURST: usize = 3;
const FLOOD: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_cut_and_told_once_while_others_are_answered() -> anyhow::Result<()> {
    let stack = Stack::start_with_env(&[
        ("SURFACES__LIMITS__MESSAGES_BURST", "3"),
        ("SURFACES__LIMITS__MESSAGES_PER_MINUTE", "1"),
        ("SURFACES__LIMITS__MAX_CHATS_PER_PERSON", "1"),
    ])
    .await?;
    let alice = stack.person("alice").await?;
    let bob = stack.person("bob").await?;
    let (a, b) = (onboard(&stack, &alice).await?, onboard(&stack, &bob).await?);
    let bot = stack.bot_id().to_owned();

    let mut sent = Vec::new();
    for i in 0..FLOOD {
        sent.push(alice.send_text(&a.chat, &format!("flood {i}")).await?);
    }
    for (i, event) in sent.iter().take(BURST).enumerate() {
        let reply = alice
            .wait_for_message(
                &a.chat,
                |m| m.sender == bot && m.in_reply_to.as_ref() == Some(event),
                WAIT,
            )
            .await?;
        assert!(reply.body.contains(&format!("flood {i}")), "{}", reply.body);
    }
    let told = alice
        .wait_for_message(
            &a.chat,
            |m| m.sender == bot && m.in_reply_to.as_ref() == Some(&sent[BURST]),
            WAIT,
        )
        .await?;
    assert_eq!(told.msgtype, "m.notice");
    assert_eq!(told.body, surfaces::texts::limits::rate_limited(3, 1));

    // Bob is answered; he runs into the cap of chats, not into alice's flood.
    let reply = ask(&stack, &bob, &b.chat, "hello").await?;
    assert!(reply.body.contains("hello"), "{}", reply.body);
    let refused = ask(&stack, &bob, &b.chat, "!new").await?;
    assert_eq!(refused.body, surfaces::texts::limits::too_many_chats(1));

    // By now alice's whole flood went through the intake: nothing past the burst was
    // answered, and she was told once.
    let history = alice.history(&a.chat).await?;
    let from_bot: Vec<_> = history.iter().filter(|m| m.sender == bot).collect();
    for event in &sent[BURST + 1..] {
        assert!(
            !from_bot
                .iter()
                .any(|m| m.in_reply_to.as_ref() == Some(event)),
            "a refused message was answered: {from_bot:#?}"
        );
    }
    let notices = from_bot.iter().filter(|m| m.body == told.body).count();
    assert_eq!(notices, 1, "{from_bot:#?}");
    Ok(())
}
