//! Files between rooms and the agent's workspace, end to end through a real Synapse:
//! uploads land in the workspace's inbox and reach the agent as relative paths; the agent's
//! files are posted (encrypted in encrypted rooms) and download to identical bytes; refused
//! paths and oversized files end in notices.

use std::path::{Path, PathBuf};

use matrix_sdk::attachment::AttachmentConfig;
use matrix_sdk::media::{MediaFormat, MediaRequestParameters};
use matrix_sdk::ruma::events::room::message::{
    FileInfo, FileMessageEventContent, MessageType, RoomMessageEventContent,
    TextMessageEventContent,
};
use matrix_sdk::ruma::events::room::MediaSource;
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, UInt};

use crate::spine::{self, answer_to, onboard, Stack};
use crate::support::person::{Person, ReceivedMessage};
use crate::support::reference_agent::{RecordedTurn, ReferenceAgent};
use crate::support::WAIT;

/// A stack whose agent has the workspace `<data>/agents/3` (when `with_workspace`), with
/// extra bot environment. Returns the stack and the workspace root.
async fn stack(with_workspace: bool, env: &[(&str, &str)]) -> anyhow::Result<(Stack, PathBuf)> {
    let toml = |agent: &ReferenceAgent, data: &std::path::Path| {
        let root = data.join("agents").join("3");
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(data.join("agents").join("4"))?;
        std::fs::write(data.join("agents/4/secret.txt"), b"agent 4 only")?;
        let mut toml = spine::agents_toml(agent);
        if with_workspace {
            toml.push_str(&format!("workspace = {:?}\n", root.display().to_string()));
        }
        Ok(toml)
    };
    let stack = Stack::start_configured(toml, env).await?;
    let root = stack.data.path().join("agents").join("3");
    Ok((stack, root))
}

/// The person sends `data` as a file named `name`, with an optional caption.
async fn upload(
    person: &Person,
    room: &OwnedRoomId,
    name: &str,
    mime: &str,
    data: Vec<u8>,
    caption: Option<&str>,
) -> anyhow::Result<OwnedEventId> {
    let room = person.room(room).await?;
    let mime: mime::Mime = mime.parse()?;
    let config = AttachmentConfig::new().caption(caption.map(TextMessageEventContent::plain));
    let response = room.send_attachment(name, &mime, data, config).await?;
    Ok(response.event_id)
}

/// The bot's first media message in the room with this `body` (the file name).
async fn media_from_bot(
    stack: &Stack,
    person: &Person,
    room: &OwnedRoomId,
    name: &str,
) -> anyhow::Result<(ReceivedMessage, MessageType)> {
    let bot = stack.bot_id().to_owned();
    let msg = person
        .wait_for_message(
            room,
            |m| {
                m.sender == bot
                    && (m.msgtype == "m.image" || m.msgtype == "m.file")
                    && m.body == name
            },
            WAIT,
        )
        .await?;
    let content: RoomMessageEventContent = serde_json::from_value(msg.content.clone())?;
    Ok((msg, content.msgtype))
}

/// Downloads (and decrypts) a media source with the person's own client.
pub(crate) async fn download(person: &Person, source: &MediaSource) -> anyhow::Result<Vec<u8>> {
    let request = MediaRequestParameters {
        source: source.clone(),
        format: MediaFormat::File,
    };
    Ok(person
        .client()
        .media()
        .get_media_content(&request, false)
        .await?)
}

/// Some bytes that are not all alike.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A PNG header of `w`×`h` followed by `extra` bytes (enough for the dimension sniffing).
fn png(w: u32, h: u32, extra: usize) -> Vec<u8> {
    let mut d = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    d.extend(w.to_be_bytes());
    d.extend(h.to_be_bytes());
    d.extend([8, 6, 0, 0, 0]);
    d.extend(bytes(extra, 7));
    d
}

fn turn_with_text(stack: &Stack, text: &str) -> Option<RecordedTurn> {
    stack.agent.turns().into_iter().find(|t| t.text == text)
}

/// Every file under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_travel_both_ways_in_an_encrypted_room() -> anyhow::Result<()> {
    let (stack, root) = stack(true, &[]).await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;
    assert!(alice.is_encrypted(&ob.chat).await?);

    // A captioned file is a turn of its own; the name is sanitized on disk, not for the agent.
    let report = bytes(5000, 1);
    let sent_name = "../secret/.Q1 report:final.pdf";
    let event = upload(
        &alice,
        &ob.chat,
        sent_name,
        "application/pdf",
        report.clone(),
        Some("summarise this"),
    )
    .await?;
    let reply = answer_to(&stack, &alice, &ob.chat, &event, None).await?;
    assert!(reply.body.contains("got: summarise this"), "{}", reply.body);
    let turn = turn_with_text(&stack, "summarise this").expect("the captioned turn");
    assert_eq!(turn.attachments.len(), 1, "{turn:?}");
    let att = &turn.attachments[0];
    assert!(
        !att.path.starts_with('/'),
        "the agent never gets an absolute path: {}",
        att.path
    );
    assert!(att.path.starts_with("inbox/"), "{}", att.path);
    assert!(att.path.ends_with("-Q1 report_final.pdf"), "{}", att.path);
    assert_eq!(att.path.split('/').count(), 3, "{}", att.path);
    assert_eq!(att.name, sent_name);
    assert_eq!(att.mime, "application/pdf");
    assert_eq!(att.size, report.len() as u64);
    assert_eq!(
        std::fs::read(root.join(&att.path))?,
        report,
        "decrypted into the workspace"
    );

    // A file alone waits for the person's next message.
    let image = png(32, 16, 300);
    let event = upload(
        &alice,
        &ob.chat,
        "chart.png",
        "image/png",
        image.clone(),
        None,
    )
    .await?;
    let held = answer_to(&stack, &alice, &ob.chat, &event, None).await?;
    assert_eq!(held.msgtype, "m.notice");
    assert!(held.body.contains("next message"), "{}", held.body);
    let before = stack.agent.turns().len();
    let reply = spine::ask(&stack, &alice, &ob.chat, "what is in it?").await?;
    assert!(
        reply.body.contains("[attachments: chart.png]"),
        "{}",
        reply.body
    );
    assert_eq!(
        stack.agent.turns().len(),
        before + 1,
        "the file alone made no turn"
    );
    let turn = turn_with_text(&stack, "what is in it?").expect("the text turn");
    assert_eq!(turn.attachments.len(), 1);
    assert_eq!(turn.attachments[0].mime, "image/png");
    assert_eq!(turn.attachments[0].size, image.len() as u64);
    assert_eq!(std::fs::read(root.join(&turn.attachments[0].path))?, image);
    // The next message carries nothing.
    spine::ask(&stack, &alice, &ob.chat, "thanks").await?;
    assert!(turn_with_text(&stack, "thanks")
        .unwrap()
        .attachments
        .is_empty());

    // The agent posts an image by a relative path: an encrypted m.image with its size info.
    std::fs::create_dir_all(root.join("out"))?;
    let chart = png(640, 480, 2000);
    std::fs::write(root.join("out/result.png"), &chart)?;
    stack
        .agent
        .file_next("out/result.png", "result.png", "image/png");
    spine::ask(&stack, &alice, &ob.chat, "draw a chart").await?;
    let (msg, msgtype) = media_from_bot(&stack, &alice, &ob.chat, "result.png").await?;
    assert!(msg.was_encrypted);
    let MessageType::Image(img) = msgtype else {
        panic!("not an m.image: {:?}", msg.content)
    };
    assert!(
        matches!(img.source, MediaSource::Encrypted(_)),
        "the upload is encrypted"
    );
    let info = img.info.as_deref().expect("image info");
    assert_eq!(info.width, Some(UInt::from(640u32)));
    assert_eq!(info.height, Some(UInt::from(480u32)));
    assert_eq!(info.size, Some(UInt::from(chart.len() as u32)));
    assert_eq!(info.mimetype.as_deref(), Some("image/png"));
    assert_eq!(download(&alice, &img.source).await?, chart);

    // And a file by its `/workspace/` path, and by its `/agents/<n>/` path: m.file.
    let notes = bytes(3000, 9);
    std::fs::write(root.join("out/notes.txt"), &notes)?;
    stack
        .agent
        .file_next("/workspace/out/notes.txt", "notes.txt", "text/plain");
    spine::ask(&stack, &alice, &ob.chat, "write notes").await?;
    let (_, msgtype) = media_from_bot(&stack, &alice, &ob.chat, "notes.txt").await?;
    let MessageType::File(file) = msgtype else {
        panic!("not an m.file")
    };
    assert_eq!(
        file.info.as_deref().and_then(|i| i.size),
        Some(UInt::from(3000u32))
    );
    assert_eq!(download(&alice, &file.source).await?, notes);

    let csv = b"a,b\n1,2\n".to_vec();
    std::fs::write(root.join("out/data.csv"), &csv)?;
    stack
        .agent
        .file_next("/agents/3/out/data.csv", "data.csv", "text/csv");
    spine::ask(&stack, &alice, &ob.chat, "export data").await?;
    let (_, msgtype) = media_from_bot(&stack, &alice, &ob.chat, "data.csv").await?;
    let MessageType::File(file) = msgtype else {
        panic!("not an m.file")
    };
    assert_eq!(download(&alice, &file.source).await?, csv);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_paths_and_oversized_files_end_in_notices() -> anyhow::Result<()> {
    let (stack, root) = stack(
        true,
        &[
            ("SURFACES__FILES__MAX_BYTES", "4096"),
            ("SURFACES__MATRIX__ENCRYPT_ROOMS", "false"),
        ],
    )
    .await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;
    assert!(!alice.is_encrypted(&ob.chat).await?);
    let bot = stack.bot_id().to_owned();

    // A plain (unencrypted) upload within the limit arrives.
    let small = bytes(1000, 3);
    let event = upload(
        &alice,
        &ob.chat,
        "small.bin",
        "application/octet-stream",
        small.clone(),
        Some("keep it"),
    )
    .await?;
    answer_to(&stack, &alice, &ob.chat, &event, None).await?;
    let turn = turn_with_text(&stack, "keep it").expect("turn");
    assert_eq!(std::fs::read(root.join(&turn.attachments[0].path))?, small);
    let inbox_files = files_under(&root.join("inbox")).len();

    // Announced over the limit: refused with the limit, nothing downloaded, no turn.
    let turns = stack.agent.turns().len();
    let event = upload(
        &alice,
        &ob.chat,
        "big.bin",
        "application/octet-stream",
        bytes(10_000, 4),
        Some("too big"),
    )
    .await?;
    let notice = answer_to(&stack, &alice, &ob.chat, &event, None).await?;
    assert_eq!(notice.msgtype, "m.notice");
    assert!(notice.body.contains("4 KiB limit"), "{}", notice.body);
    assert_eq!(
        files_under(&root.join("inbox")).len(),
        inbox_files,
        "nothing downloaded"
    );

    // Announced small but bigger in fact: the download stops at the limit.
    let uri = alice
        .client()
        .media()
        .upload(&mime::APPLICATION_OCTET_STREAM, bytes(10_000, 5), None)
        .await?
        .content_uri;
    let mut content = FileMessageEventContent::plain("liar.bin".into(), uri);
    let mut info = FileInfo::new();
    info.size = Some(UInt::from(100u32));
    content.info = Some(Box::new(info));
    content.body = "lying about its size".into();
    content.filename = Some("liar.bin".into());
    let event = alice
        .send_content(
            &ob.chat,
            RoomMessageEventContent::new(MessageType::File(content)),
        )
        .await?;
    let notice = answer_to(&stack, &alice, &ob.chat, &event, None).await?;
    assert!(notice.body.contains("4 KiB limit"), "{}", notice.body);
    assert_eq!(
        files_under(&root.join("inbox")).len(),
        inbox_files,
        "nothing kept"
    );
    assert_eq!(
        stack.agent.turns().len(),
        turns,
        "no turn for refused files"
    );

    // Paths the agent may not use.
    std::fs::create_dir_all(root.join("out"))?;
    std::fs::write(root.join("out/big.bin"), bytes(5000, 6))?;
    #[cfg(unix)]
    std::os::unix::fs::symlink(root.join("../4/secret.txt"), root.join("out/leak.txt"))?;
    let cases: &[(&str, &str)] = &[
        ("../4/secret.txt", "climbs out of the agent's workspace"),
        ("/agents/4/secret.txt", "another agent's workspace"),
        ("/etc/passwd", "outside the agent's workspace"),
        ("out/missing.png", "does not exist"),
        ("out/leak.txt", "symbolic link"),
        ("out/big.bin", "over the 4 KiB limit"),
    ];
    for (i, (path, reason)) in cases.iter().enumerate() {
        stack.agent.file_next(path, "x.txt", "text/plain");
        let text = format!("send file {i}");
        let event = alice.send_text(&ob.chat, &text).await?;
        let notice = answer_to(&stack, &alice, &ob.chat, &event, Some("m.notice")).await?;
        assert!(
            notice.body.contains("could not post"),
            "{path}: {}",
            notice.body
        );
        assert!(notice.body.contains(reason), "{path}: {}", notice.body);
    }
    let posted: Vec<_> = alice
        .messages_from(&ob.chat, &bot)
        .await
        .into_iter()
        .filter(|m| m.msgtype == "m.file" || m.msgtype == "m.image")
        .collect();
    assert!(posted.is_empty(), "nothing refused was posted: {posted:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_a_workspace_cannot_take_files() -> anyhow::Result<()> {
    let (stack, root) = stack(false, &[]).await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;
    let event = upload(
        &alice,
        &ob.chat,
        "a.txt",
        "text/plain",
        b"hello".to_vec(),
        Some("read this"),
    )
    .await?;
    let notice = answer_to(&stack, &alice, &ob.chat, &event, None).await?;
    assert_eq!(notice.msgtype, "m.notice");
    assert!(notice.body.contains("no workspace"), "{}", notice.body);
    assert!(stack.agent.turns().is_empty());
    assert!(files_under(&root).is_empty());
    Ok(())
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_workspace_files_never_hang_the_room() -> anyhow::Result<()> {
    let (stack, root) = stack(true, &[("SURFACES__MATRIX__ENCRYPT_ROOMS", "false")]).await?;
    let alice = stack.person("alice").await?;
    let ob = onboard(&stack, &alice).await?;

    // A FIFO (opening it for reading would block forever) and a directory behind a link.
    std::fs::create_dir_all(root.join("out/real"))?;
    std::fs::write(root.join("out/real/r.txt"), b"real")?;
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("out/pipe").as_path(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )?;
    std::os::unix::fs::symlink(root.join("out/real"), root.join("out/linked"))?;
    let cases = [
        ("out/pipe", "not a regular file"),
        ("out/linked/r.txt", "symbolic link"),
    ];
    for (i, (path, reason)) in cases.into_iter().enumerate() {
        stack.agent.file_next(path, "x.txt", "text/plain");
        let event = alice.send_text(&ob.chat, &format!("send file {i}")).await?;
        let notice = answer_to(&stack, &alice, &ob.chat, &event, Some("m.notice")).await?;
        assert!(notice.body.contains(reason), "{path}: {}", notice.body);
        // The room answers the next message.
        let text = format!("after {i}");
        let reply = spine::ask(&stack, &alice, &ob.chat, &text).await?;
        assert!(
            reply.body.contains(&format!("got: {text}")),
            "{}",
            reply.body
        );
    }

    // Inbound: the agent made its inbox a link; the file is refused, nothing is written
    // through it, and the room goes on.
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere)?;
    std::os::unix::fs::symlink(&elsewhere, root.join("inbox"))?;
    let event = upload(
        &alice,
        &ob.chat,
        "n.txt",
        "text/plain",
        b"hello".to_vec(),
        Some("read it"),
    )
    .await?;
    let notice = answer_to(&stack, &alice, &ob.chat, &event, None).await?;
    assert_eq!(notice.msgtype, "m.notice");
    assert!(notice.body.contains("n.txt"), "{}", notice.body);
    assert!(
        files_under(&elsewhere).is_empty(),
        "written through the link"
    );
    let reply = spine::ask(&stack, &alice, &ob.chat, "and now?").await?;
    assert!(reply.body.contains("got: and now?"), "{}", reply.body);
    Ok(())
}
