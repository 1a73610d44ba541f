//! Files in-process: into the agent's workspace and its turn, held for the next message,
//! refused past the limit or without a workspace, and the agent's files posted back.

use surfaces_testkit::inproc::{AgentSetup, Bot, Setup};
use surfaces_testkit::memory::PostBody;

use crate::support::expect;

fn with_files(limit: u64) -> Setup {
    Setup {
        agent: AgentSetup::Reference,
        extra_toml: format!("\n[files]\nmax_bytes = {limit}\n"),
        ..Setup::default()
    }
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[actix_rt::test]
async fn files_reach_the_workspace_and_come_back() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(with_files(1_000_000), "alice").await?;
    let agent = bot.reference()?;

    // A captioned file is a turn of its own; its name is sanitized on disk only.
    let report = bytes(5000, 1);
    let name = "../secret/.Q1 report:final.pdf";
    let id = bot.world.send_file(
        &alice,
        &chat,
        name,
        "application/pdf",
        &report,
        Some("summarise this"),
    );
    let reply = bot.answer(&chat, &id).await?;
    expect(reply.text(), "got: summarise this");
    let turn = agent
        .turns()
        .into_iter()
        .find(|t| t.text == "summarise this")
        .expect("the captioned turn");
    assert_eq!(turn.attachments.len(), 1, "{turn:?}");
    let att = &turn.attachments[0];
    assert!(att.path.starts_with("inbox/"), "{}", att.path);
    assert!(att.path.ends_with("-Q1 report_final.pdf"), "{}", att.path);
    assert_eq!(att.name, name);
    assert_eq!(att.size, report.len() as u64);
    assert_eq!(std::fs::read(bot.workspace.join(&att.path))?, report);

    // A file alone waits for the next message.
    let chart = bytes(300, 2);
    let id = bot
        .world
        .send_file(&alice, &chat, "chart.png", "image/png", &chart, None);
    let held = bot.answer(&chat, &id).await?;
    assert!(held.is_notice());
    expect(held.text(), "next message");
    let reply = bot.ask_text(&alice, &chat, "what is in it?").await?;
    expect(&reply, "[attachments: chart.png]");
    let thanks = agent.turns().len();
    bot.ask(&alice, &chat, "thanks").await?;
    assert_eq!(agent.turns().len(), thanks + 1);
    assert!(agent
        .turns()
        .last()
        .is_some_and(|t| t.attachments.is_empty()));

    // The agent posts files by a relative path and by its /workspace/ path.
    std::fs::create_dir_all(bot.workspace.join("out"))?;
    // (the path the agent names, the file in the workspace, its MIME type, what is asked)
    let table = [
        (
            "out/result.png",
            "out/result.png",
            "image/png",
            "draw a chart",
        ),
        (
            "/workspace/out/notes.txt",
            "out/notes.txt",
            "text/plain",
            "write notes",
        ),
    ];
    for (i, (named, on_disk, mime, ask)) in table.into_iter().enumerate() {
        let data = bytes(2000 + i * 1000, 3 + i as u8);
        std::fs::write(bot.workspace.join(on_disk), &data)?;
        let name = on_disk.rsplit('/').next().unwrap_or(on_disk);
        agent.file_next(named, name, mime);
        bot.ask(&alice, &chat, ask).await?;
        let posted = bot.bot_says(&chat, 0, name).await?;
        let expected = PostBody::File {
            name: name.into(),
            mime: mime.into(),
            data,
        };
        assert_eq!(posted.body, expected, "{named}");
    }
    Ok(())
}

#[actix_rt::test]
async fn a_file_over_the_limit_is_refused_and_nothing_is_lost() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(with_files(1000), "alice").await?;
    let agent = bot.reference()?;
    let id = bot.world.send_file(
        &alice,
        &chat,
        "big.bin",
        "application/octet-stream",
        &bytes(5000, 4),
        Some("take it"),
    );
    let refused = bot.answer(&chat, &id).await?;
    assert!(refused.is_notice());
    expect(refused.text(), "big.bin is over the");
    assert!(agent.turns().iter().all(|t| t.attachments.is_empty()));
    let reply = bot.ask_text(&alice, &chat, "next").await?;
    assert_eq!(reply, "ref-agent ref got: next");
    Ok(())
}

#[actix_rt::test]
async fn an_agent_without_a_workspace_cannot_take_files() -> anyhow::Result<()> {
    let (bot, alice, chat) = Bot::with_person(Setup::default(), "alice").await?;
    let id = bot
        .world
        .send_file(&alice, &chat, "notes.txt", "text/plain", b"hello", None);
    let refused = bot.answer(&chat, &id).await?;
    assert!(refused.is_notice());
    expect(refused.text(), "cannot take files here");
    Ok(())
}

/// Issue 12, item 9: a FIFO (opening it would block for ever), a symlink to outside and a
/// symlinked directory named by the agent, and an inbox the agent swapped for a link, each
/// end in a notice, and the room answers the next message.
#[cfg(unix)]
#[actix_rt::test]
async fn hostile_workspace_files_end_in_notices_and_never_hang_the_room() -> anyhow::Result<()> {
    use std::os::unix::fs::symlink;
    let (bot, alice, chat) = Bot::with_person(with_files(1_000_000), "alice").await?;
    let agent = bot.reference()?;
    let ws = bot.workspace.clone();
    let outside = ws.parent().expect("the agents dir").join("outside");
    std::fs::create_dir_all(&outside)?;
    std::fs::write(outside.join("secret.txt"), b"secret")?;
    std::fs::create_dir_all(ws.join("out/real"))?;
    std::fs::write(ws.join("out/real/r.txt"), b"real")?;
    rustix::fs::mknodat(
        rustix::fs::CWD,
        ws.join("out/pipe").as_path(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )?;
    symlink(outside.join("secret.txt"), ws.join("out/leak.txt"))?;
    symlink(ws.join("out/real"), ws.join("out/linked"))?;

    let cases = [
        ("out/pipe", "not a regular file"),
        ("out/leak.txt", "symbolic link"),
        ("out/linked/r.txt", "symbolic link"),
    ];
    for (i, (path, reason)) in cases.into_iter().enumerate() {
        agent.file_next(path, "x.txt", "text/plain");
        let id = bot.world.say(&alice, &chat, &format!("send {i}"));
        let answers = bot.answers(&chat, &id, 2).await?;
        let refused = answers
            .iter()
            .find(|p| p.text().contains("could not post"))
            .unwrap_or_else(|| panic!("{path}: no refusal in {answers:?}"));
        expect(refused.text(), reason);
        let next = format!("after {i}");
        assert_eq!(
            bot.ask_text(&alice, &chat, &next).await?,
            format!("ref-agent ref got: {next}")
        );
    }
    assert!(bot
        .world
        .bot_posts(&chat)
        .iter()
        .all(|p| !matches!(p.body, PostBody::File { .. })));

    // Inbound: the inbox is a link (to a directory inside the workspace, even).
    let elsewhere = ws.join("elsewhere");
    std::fs::create_dir_all(&elsewhere)?;
    symlink(&elsewhere, ws.join("inbox"))?;
    let id = bot.world.send_file(
        &alice,
        &chat,
        "n.txt",
        "text/plain",
        b"hello",
        Some("read it"),
    );
    let refused = bot.answer(&chat, &id).await?;
    assert!(refused.is_notice());
    expect(refused.text(), "n.txt");
    assert_eq!(
        std::fs::read_dir(&elsewhere)?.count(),
        0,
        "written through the link"
    );
    assert_eq!(
        bot.ask_text(&alice, &chat, "and now?").await?,
        "ref-agent ref got: and now?"
    );
    Ok(())
}

/// Issue 14 (polish): a file sent alone is acknowledged with "it goes with your next
/// message", and that holds across a restart of the bot in between.
#[actix_rt::test]
async fn a_file_waiting_for_the_next_message_survives_a_restart() -> anyhow::Result<()> {
    let (mut bot, alice, chat) = Bot::with_person(with_files(1_000_000), "alice").await?;
    let chart = bytes(300, 3);
    let id = bot
        .world
        .send_file(&alice, &chat, "chart.png", "image/png", &chart, None);
    let held = bot.answer(&chat, &id).await?;
    expect(held.text(), "next message");
    bot.restart().await?;
    let reply = bot.ask_text(&alice, &chat, "what is in it?").await?;
    expect(&reply, "[attachments: chart.png]");
    // Taken by that turn: the next one goes without it.
    let agent = bot.reference()?;
    bot.ask(&alice, &chat, "thanks").await?;
    assert!(agent
        .turns()
        .last()
        .is_some_and(|t| t.text == "thanks" && t.attachments.is_empty()));
    Ok(())
}
