//! Every sentence the bot says to a person, in one place.
//!
//! Why this module exists: wording is product, not plumbing. Keeping every user-facing
//! string here keeps the tone consistent (short, friendly, never technical), makes them easy
//! to review and change, and keeps them out of the actors' logic. The texts are light
//! markdown (the Matrix layer renders them to `formatted_body`); names and reasons that come
//! from elsewhere are escaped so they cannot break the formatting.

/// The longest "reason" we show a user before cutting it short.
pub const MAX_REASON_CHARS: usize = 160;

/// Base of the links that open a room in any Matrix client.
pub const MATRIX_TO_BASE: &str = "https://matrix.to/#/";

/// Generic notice when something failed on our side.
pub const INTERNAL_ERROR: &str =
    "Something went wrong on my side and I could not handle your message. \
     Please try again in a moment.";

/// Notice for a user who is not allowed to use the bot.
pub const ACCESS_DENIED: &str = "Sorry, I can't chat with you: this bot only serves the people \
     its operator has allowed. If you think you should have access, ask them.";

/// A link that opens a room (or user, or alias) in any Matrix client. A `via` server is
/// added when the room id carries one, so clients can find the room.
pub fn matrix_to(id: &str) -> String {
    let mut link = String::from(MATRIX_TO_BASE);
    link.push_str(&percent_encode(id));
    if id.starts_with('!') {
        if let Some((_, server)) = id.split_once(':') {
            if !server.is_empty() {
                link.push_str("?via=");
                link.push_str(&percent_encode(server));
            }
        }
    }
    link
}

/// Posted first in every new chat room.
pub fn welcome(agent_name: &str) -> String {
    let agent = escape_markdown(agent_name);
    format!(
        "👋 This chat is with **{agent}**. Just write your message here and {agent} will answer.\n\n\
         Send `!help` to see the commands."
    )
}

/// Sent in the direct chat once the user's Space exists: where to find it and the first chat.
pub fn space_pointer(space_name: &str, space_id: &str, first_chat_room_id: &str) -> String {
    format!(
        "I made you a Space: [{}]({}). All your chats with the agents live there.\n\n\
         Your first chat is ready: [open it]({}). Send `!help` there to see what you can do.",
        escape_markdown(space_name),
        matrix_to(space_id),
        matrix_to(first_chat_room_id),
    )
}

/// Sent in a new direct chat of a person who already has a Space: where it is.
pub fn space_existing(space_name: &str, space_id: &str, chat_room_id: &str) -> String {
    format!(
        "Your Space is already here: [{}]({}). All your chats with the agents live there.\n\n         Pick up where you left off: [open a chat]({}), or send `!new` in one for a fresh one.",
        escape_markdown(space_name),
        matrix_to(space_id),
        matrix_to(chat_room_id),
    )
}

/// Said once in a chat the bot does not manage, to a person who has a Space (e.g. their
/// onboarding direct chat): write in the chats there.
pub fn unmanaged_room_has_space(space_id: &str) -> String {
    format!(
        "I answer in the chats of [your Space]({}), not here. Open one of them to talk to an          agent, or send `!new` in one for a fresh chat.",
        matrix_to(space_id),
    )
}

/// Said once in a room the bot was invited to but does not manage.
pub fn unmanaged_room(bot_user_id: &str) -> String {
    format!(
        "Hi! I only answer in the chats I make for you. To get started, start a direct chat \
         with me ({}): I'll make you a Space with your own chat rooms.",
        escape_markdown(bot_user_id)
    )
}

/// The agent could not be reached (network error, agent down).
pub fn agent_unreachable(agent_name: &str, reason: &str) -> String {
    format!(
        "⚠️ {} is not answering right now ({}), so your message got no answer. Please \
         send it again in a moment.",
        escape_markdown(agent_name),
        short_reason(reason)
    )
}

/// The agent answered with an error for this message.
pub fn agent_error(agent_name: &str, reason: &str) -> String {
    format!(
        "⚠️ {} could not handle that message ({}). You can try again, \
         or say it differently.",
        escape_markdown(agent_name),
        short_reason(reason)
    )
}

/// A file for an OpenAI-compatible model that takes no files (`images` off).
pub fn model_takes_text_only(file_name: &str) -> String {
    format!("this model takes text only, so {file_name} was not sent; describe it in words instead")
}

/// A file that is not an image, for a model that takes images (`limit`: the largest image).
pub fn model_takes_images_only(file_name: &str, limit: &str) -> String {
    format!("this model takes images only (up to {limit} each), so {file_name} was not sent")
}

/// An image that could not be read for the model (gone, or past `limit`).
pub fn image_not_sent(file_name: &str, limit: &str) -> String {
    format!(
        "{file_name} could not be sent to the model: images must be readable and at most {limit}"
    )
}

/// An A2A agent's question with no words of its own.
pub const A2A_INPUT_REQUIRED: &str = "The agent needs more from you to go on.";
/// An A2A task that failed without saying why.
pub const A2A_TASK_FAILED: &str = "the task failed";
/// An A2A task the agent refused without saying why.
pub const A2A_TASK_REJECTED: &str = "the agent refused the task";
/// An A2A task waiting for credentials, without saying which.
pub const A2A_AUTH_REQUIRED: &str = "the agent needs credentials";
/// `!yes` / `!no` for an A2A question that a message already answered.
pub const A2A_ALREADY_ANSWERED: &str =
    "that question was already answered (by a message sent after it)";
/// A file an A2A agent offered at a URL that is not its own.
pub const A2A_FOREIGN_URL: &str = "it is offered at a URL that is not the agent's own";

/// A file too big to send to an A2A agent (`limit`: the largest sent).
pub fn a2a_file_too_large(file_name: &str, limit: &str) -> String {
    format!(
        "{file_name} could not be sent to the agent: files must be readable and at most {limit}"
    )
}

/// A file an A2A agent returned that could not be taken.
pub fn a2a_file_not_taken(file_name: &str, reason: &str) -> String {
    format!(
        "_(The agent's file {} could not be posted: {reason}.)_",
        escape_markdown(file_name)
    )
}

/// An A2A agent waits for credentials Surfaces does not have: the operator must act.
pub fn agent_needs_auth(agent_name: &str, said: &str) -> String {
    format!(
        "🔒 {} needs credentials I do not have to do that (it said: {}). Ask whoever runs me \
         to configure them for this agent (its `token` in the agents configuration).",
        escape_markdown(agent_name),
        short_reason(said)
    )
}

/// A command the chat's agent does not offer (`what`: the command).
pub fn agent_does_not_offer(agent_name: &str, what: &str) -> String {
    format!(
        "{} does not offer {what}: its protocol gives me no way to do that.",
        escape_markdown(agent_name)
    )
}

/// A turn ran past the agent's `max_turn_secs` (streaming all along).
pub fn agent_turn_too_long(agent_name: &str, ran_secs: u64) -> String {
    format!(
        "⏱️ {} was still working after {}, the most one answer may take here, so I stopped \
         waiting for it. Try asking for less at once, or ask whoever runs me to allow longer \
         turns.",
        escape_markdown(agent_name),
        human_duration(ran_secs)
    )
}

/// An agent stayed silent past `agents[].timeout_secs` (nothing, or no event of its stream).
pub fn agent_timeout(agent_name: &str, waited_secs: u64) -> String {
    format!(
        "⏱️ {} took too long to answer (nothing after {}), so I stopped waiting. \
         Send your message again to retry.",
        escape_markdown(agent_name),
        human_duration(waited_secs)
    )
}

/// The generic internal error notice.
pub fn internal_error() -> &'static str {
    INTERNAL_ERROR
}

/// The access denied notice.
pub fn access_denied() -> &'static str {
    ACCESS_DENIED
}

/// Cuts a technical reason down to one short line, escaped for markdown, with every URL and
/// network address (credentials included) replaced by [`ADDRESS_HIDDEN`] (see
/// [`crate::redact::for_people`]): errors shown to people never name internal services.
pub fn short_reason(reason: &str) -> String {
    let reason = crate::redact::for_people(reason);
    let one_line = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    let one_line = if one_line.is_empty() {
        "no details".to_owned()
    } else if one_line.chars().count() > MAX_REASON_CHARS {
        let cut: String = one_line.chars().take(MAX_REASON_CHARS - 1).collect();
        format!("{}…", cut.trim_end())
    } else {
        one_line
    };
    escape_markdown(&one_line)
}

/// "45 seconds", "2 minutes", "1 minute 30 seconds".
fn human_duration(secs: u64) -> String {
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    let (minutes, seconds) = (secs / 60, secs % 60);
    match (minutes, seconds) {
        (0, s) => plural(s, "second"),
        (m, 0) => plural(m, "minute"),
        (m, s) => format!("{} {}", plural(m, "minute"), plural(s, "second")),
    }
}

/// Backslash-escapes the characters markdown would interpret.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '~'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Percent-encodes what may not appear raw in a matrix.to fragment.
fn percent_encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'@' | b'#' | b'$' | b'+' | b':' | b'.' | b'-' | b'_' | b'~' | b'='
            )
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The name of a person's Space.
pub fn space_name(localpart: &str) -> String {
    format!("Surfaces · {localpart}")
}

/// The default name of a person's chat room number `index`.
pub fn chat_room_name(index: u32) -> String {
    format!("Chat {index}")
}

/// The room is bound to an agent that is no longer configured (a stale room).
pub fn agent_gone(agent_id: &str) -> String {
    format!(
        "This chat is bound to the agent `{}`, which is no longer available here, so I did not \
         forward your message. Pick an agent with `!agent`, then start a new chat with `!new`.",
        code_span(agent_id)
    )
}

/// The agent finished its turn without any text.
pub fn empty_reply(agent_name: &str) -> String {
    format!(
        "{} finished without saying anything.",
        escape_markdown(agent_name)
    )
}

/// Text shown inside a markdown code span (escapes do not work there: backticks are dropped).
fn code_span(text: &str) -> String {
    text.replace('`', "")
}

/// The room's agent has no workspace, so a file sent to it was not passed on.
pub fn files_no_workspace(agent_name: &str, file_name: &str) -> String {
    format!(
        "📎 {} cannot take files here (no workspace is set up for it), so {} was not passed \
         on. Paste the content as text instead, or ask the operator to give this agent a \
         workspace.",
        escape_markdown(agent_name),
        escape_markdown(file_name)
    )
}

/// A file over the size limit (`limit` already written for people, e.g. "20 MiB").
pub fn file_too_large(file_name: &str, limit: &str) -> String {
    format!(
        "📎 {} is over the {} limit for files, so I did not pass it on. Send a smaller file, \
         or a link to it.",
        escape_markdown(file_name),
        escape_markdown(limit)
    )
}

/// A file could not be fetched from the homeserver or stored for the agent.
pub fn file_receive_failed(file_name: &str, reason: &str) -> String {
    format!(
        "⚠️ I could not fetch {} ({}), so it was not passed on. Please send it again.",
        escape_markdown(file_name),
        short_reason(reason)
    )
}

/// A file without a caption waits for the person's next message in the room.
pub fn file_held(file_name: &str, agent_name: &str) -> String {
    format!(
        "📎 Got {}. It goes to {} with your next message: say what to do with it.",
        escape_markdown(file_name),
        escape_markdown(agent_name)
    )
}

/// Added to [`file_held`] when the waiting file could not be recorded (storage trouble):
/// the person knows a restart in between would leave it out.
pub const FILE_HELD_NOT_DURABLE: &str = "(I could not note it down safely: if I restart \
before your next message, send the file again.)";

/// The agent's reply had no text, only files (they follow this message).
pub fn files_only_reply(agent_name: &str, files: usize) -> String {
    let files = if files == 1 {
        "a file".to_owned()
    } else {
        format!("{files} files")
    };
    format!("📎 {} sent {files}.", escape_markdown(agent_name))
}

/// Files the agent wanted to post that were refused: `(path as given, reason)` pairs.
pub fn files_refused(agent_name: &str, refused: &[(String, String)]) -> String {
    let mut text = format!(
        "⚠️ {} wanted to send {} I could not post:",
        escape_markdown(agent_name),
        if refused.len() == 1 {
            "a file"
        } else {
            "files"
        }
    );
    for (path, reason) in refused {
        text.push_str(&format!(
            "\n- {}: {}",
            escape_markdown(&short_path(path)),
            short_reason(reason)
        ));
    }
    text
}

/// A path from elsewhere, cut short for a notice (one line, at most
/// [`MAX_REASON_CHARS`] characters).
fn short_path(path: &str) -> String {
    let flat: String = path
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    if flat.chars().count() > MAX_REASON_CHARS {
        let cut: String = flat.chars().take(MAX_REASON_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// The name of the file a reply too long for messages is attached as.
pub const REPLY_FILE_NAME: &str = "reply.md";

/// Added where a turn was cut at the accumulation limit (`limit` written for people).
pub fn reply_cut(limit: &str) -> String {
    format!(
        "✂️ *The reply was cut here: it went past the {} limit for one answer.*",
        escape_markdown(limit)
    )
}

/// A reply too long for messages follows as a file (`size` written for people).
pub fn reply_as_file(agent_name: &str, size: &str) -> String {
    format!(
        "📎 {}'s reply is long ({}), so it is attached as {}.",
        escape_markdown(agent_name),
        escape_markdown(size),
        escape_markdown(REPLY_FILE_NAME)
    )
}

/// The messenger refused the reply for good (too large, or not allowed here).
pub fn reply_undeliverable(agent_name: &str) -> String {
    format!(
        "⚠️ {} answered, but this chat refused the reply (it may be too long), so I could not \
         show it, or not all of it. Ask for a shorter answer or for a file.",
        escape_markdown(agent_name)
    )
}

// --- Chat commands -----------------------------------------------------------------

/// A short form of a platform chat id for people (the last 8 characters).
pub fn short_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    let start = chars.len().saturating_sub(8);
    chars[start..].iter().collect()
}

/// `!new` made a room.
pub fn new_chat_created(room_id: &str, agent_name: &str) -> String {
    format!(
        "New chat with {} ready: [open it]({}). I invited you.",
        escape_markdown(agent_name),
        matrix_to(room_id)
    )
}

/// `!new` without a Space.
pub const NEW_CHAT_NO_SPACE: &str =
    "You don't have a Space yet: start a direct chat with me first and I'll make one.";

/// `!new` with a selected agent that is gone.
pub fn new_chat_agent_gone(agent_id: &str) -> String {
    format!(
        "Your selected agent `{}` is no longer available. Pick another with `!agent <id>`.",
        agent_id.replace('`', "")
    )
}

/// `!rename` done.
pub fn renamed(name: &str) -> String {
    format!("Renamed this chat to “{}”.", escape_markdown(name))
}

/// `!archive` asks.
pub fn archive_ask(ttl_secs: u64) -> String {
    format!(
        "Archive this chat? It leaves your Space and I will stop answering here. \
         Answer `!yes` or `!no` (within {}).",
        human_duration(ttl_secs)
    )
}

/// The chat was archived.
pub const ARCHIVED_DONE: &str = "Archived. This chat left your Space; start a new one with `!new`.";

/// A message in an archived room.
pub const ROOM_ARCHIVED: &str =
    "This chat is archived, so I don't answer here any more. Start a new chat with `!new`.";

/// `!no` to an archive question.
pub const ARCHIVE_KEPT: &str = "OK, this chat stays as it is.";

/// `!yes`/`!no` with nothing pending for this person here.
pub const NOTHING_TO_CONFIRM: &str = "There is nothing waiting for your answer here.";

/// A confirmation expired.
pub const CONFIRMATION_EXPIRED: &str =
    "The question above expired without an answer, so nothing was done.";

/// An agent asks for confirmation.
pub fn agent_asks(agent_name: &str, prompt: &str, ttl_secs: u64) -> String {
    format!(
        "{} asks: {}\n\nAnswer `!yes` or `!no` (within {}).",
        escape_markdown(agent_name),
        prompt,
        human_duration(ttl_secs)
    )
}

/// An agent's question that any message answers (`ttl_secs`: how long it waits).
pub fn agent_asks_free(agent_name: &str, prompt: &str, ttl_secs: u64) -> String {
    format!(
        "{} asks: {}\n\nReply with your answer, or `!yes` / `!no` (within {}).",
        escape_markdown(agent_name),
        prompt,
        human_duration(ttl_secs)
    )
}

/// The agent's question was declined.
pub const AGENT_DECLINED: &str = "OK, I told the agent no.";

/// The skills an agent says it has, under its line of `!agent`.
pub fn agent_skills(skills: &[crate::agent::about::Skill]) -> String {
    let named: Vec<String> = skills
        .iter()
        .map(|s| {
            if s.description.trim().is_empty() {
                escape_markdown(&s.name)
            } else {
                format!(
                    "{} ({})",
                    escape_markdown(&s.name),
                    escape_markdown(s.description.trim())
                )
            }
        })
        .collect();
    format!("  skills: {}", named.join("; "))
}

/// The chat's agent, at the end of `!help`.
pub fn help_agent(name: &str, description: &str, skills: &[crate::agent::about::Skill]) -> String {
    let mut text = format!("This chat's agent: **{}**", escape_markdown(name));
    if !description.trim().is_empty() {
        text.push_str(&format!(": {}", escape_markdown(description.trim())));
    }
    if !skills.is_empty() {
        text.push('\n');
        text.push_str(&agent_skills(skills));
    }
    text
}

/// One line of `!agent`.
pub fn agent_line(
    id: &str,
    name: &str,
    description: &str,
    selected: bool,
    this_room: bool,
) -> String {
    let mut marks = Vec::new();
    if selected {
        marks.push("selected for new chats");
    }
    if this_room {
        marks.push("this chat");
    }
    let marks = if marks.is_empty() {
        String::new()
    } else {
        format!(" ({})", marks.join(", "))
    };
    let description = if description.is_empty() {
        String::new()
    } else {
        format!(": {}", escape_markdown(description))
    };
    format!(
        "- `{}` {}{}{}",
        id.replace('`', ""),
        escape_markdown(name),
        description,
        marks
    )
}

/// The heading of `!agent`.
pub const AGENT_LIST_HEADER: &str = "Agents (choose one for new chats with `!agent <id>`):";

/// `!agent <id>` done.
pub fn agent_selected(name: &str) -> String {
    format!(
        "New chats will use {}. This chat keeps its agent; start one with `!new`.",
        escape_markdown(name)
    )
}

/// `!agent <id>` with an unknown id.
pub fn agent_unknown(id: &str) -> String {
    format!(
        "There is no agent `{}`. Send `!agent` to see the list.",
        id.replace('`', "")
    )
}

/// `!clear` done.
pub fn cleared(old_chat: &str, new_chat: &str) -> String {
    format!(
        "Fresh start: this chat now talks to a new conversation (`…{}` → `…{}`). Other chats keep theirs.",
        short_id(old_chat),
        short_id(new_chat)
    )
}

/// `!save` done.
pub fn saved(name: &str, messages: u64) -> String {
    format!(
        "Saved snapshot “{}” ({messages} messages). Load it with `!load {}`.",
        escape_markdown(name),
        escape_markdown(name)
    )
}

/// `!save` done, when the agent did not say how many messages the snapshot holds.
pub fn saved_without_count(name: &str, agent_name: &str) -> String {
    format!(
        "Saved snapshot “{}” ({}). Load it with `!load {}`.",
        escape_markdown(name),
        escape_markdown(agent_name),
        escape_markdown(name)
    )
}

/// `!load` done.
pub fn loaded(name: &str) -> String {
    format!(
        "Loaded snapshot “{}” into this chat.",
        escape_markdown(name)
    )
}

/// `!load` of an unknown snapshot.
pub fn no_snapshot(name: &str) -> String {
    format!(
        "I found no snapshot called “{}” in your chats with this agent.",
        escape_markdown(name)
    )
}

/// `!context`.
pub fn context_summary(
    messages: u64,
    tokens: u64,
    summary: Option<&str>,
    snapshots: &[String],
) -> String {
    let mut out = format!("This conversation: {messages} messages, about {tokens} tokens.");
    if let Some(summary) = summary.filter(|s| !s.trim().is_empty()) {
        out.push_str(&format!("\n\n{summary}"));
    }
    if !snapshots.is_empty() {
        let names: Vec<String> = snapshots.iter().map(|s| escape_markdown(s)).collect();
        out.push_str(&format!("\n\nSnapshots: {}", names.join(", ")));
    }
    out
}

/// A context call failed.
pub fn context_call_failed(agent_name: &str, reason: &str) -> String {
    format!(
        "{} could not do that: {}.",
        escape_markdown(agent_name),
        short_reason(reason)
    )
}

/// `!settings`.
#[allow(clippy::too_many_arguments)]
pub fn settings(
    room_agent: &str,
    chat_id: &str,
    selected_agent: &str,
    space_id: Option<&str>,
    active: usize,
    archived: usize,
    pending: Option<&str>,
) -> String {
    let space = space_id.map_or_else(
        || "none".to_owned(),
        |s| format!("[your Space]({})", matrix_to(s)),
    );
    format!(
        "**Settings**\n\n- This chat: agent {}, conversation `…{}`\n- New chats use: {}\n- Space: {}\n\
         - Chats: {active} active, {archived} archived\n- Waiting for your answer: {}",
        escape_markdown(room_agent),
        short_id(chat_id),
        escape_markdown(selected_agent),
        space,
        pending.unwrap_or("nothing"),
    )
}

/// `!settings`: the bot's encryption keys, to compare out of band (appended to
/// [`settings`]).
pub fn settings_keys(identity: &crate::surface::encryption::EncryptionIdentity) -> String {
    use crate::surface::encryption::fingerprint;
    let key = |k: &Option<String>| {
        k.as_deref()
            .map_or_else(|| "none".to_owned(), |k| format!("`{}`", fingerprint(k)))
    };
    format!(
        "\n\n**My encryption keys** (I cannot compare emoji: compare these with what your app \
         shows for me)\n- Identity (cross-signing master key): {}\n- Device: `{}`, key {}",
        key(&identity.identity_key),
        identity.device_id.as_deref().unwrap_or("unknown"),
        key(&identity.device_key),
    )
}

/// `!settings`: an agent id a chat names that is not configured any more.
pub fn agent_not_configured(agent_id: &str) -> String {
    format!("{agent_id} (gone)")
}

/// `!settings`: an `!archive` waits for `!yes`.
pub const PENDING_ARCHIVE: &str = "archive this chat";

/// `!status`: the first line.
pub const STATUS_HEADER: &str = "**Status**";

/// `!status`: actors of one kind in one state.
pub fn status_actors(kind: &str, count: usize, state: &str) -> String {
    format!("- {kind}: {count} {state}")
}

/// `!status`: an agent connection.
pub fn status_agent(agent_id: &str, in_flight: usize, last_error: Option<&str>) -> String {
    format!(
        "- agent {agent_id}: {in_flight} turns running, last error: {}",
        last_error.map_or_else(|| "none".to_owned(), short_reason)
    )
}

/// `!status`: how long ago a messenger's loop last heard from it.
pub fn status_last_sync(ago: Option<std::time::Duration>) -> String {
    match ago {
        Some(ago) => format!("- last sync: {} ms ago", ago.as_millis()),
        None => "- last sync: never".to_owned(),
    }
}

/// An admin-only command from someone else.
pub const ADMIN_ONLY: &str = "Only the bot's administrators can use that command.";

/// `!cancel` sent.
pub const CANCELLING: &str = "Cancelling the answer in progress…";

/// `!cancel` with nothing running.
pub const NOTHING_TO_CANCEL: &str = "Nothing is running here right now.";

/// A turn ended because it was cancelled.
pub const TURN_CANCELLED: &str = "Cancelled.";

/// After catching up on a gap: how many older messages the bounds left unanswered
/// (`at_least` when more may exist than were counted).
pub fn catch_up_skipped(
    count: usize,
    at_least: bool,
    max_messages: u32,
    max_age_hours: u64,
) -> String {
    let amount = if at_least {
        format!("at least {count}")
    } else {
        count.to_string()
    };
    let messages = if count == 1 && !at_least {
        "message"
    } else {
        "messages"
    };
    format!(
        "I caught up on the messages sent here, but {amount} older {messages} went \
         unanswered: after a gap I answer at most the newest {max_messages}, sent within the \
         last {max_age_hours} hours. If one of them still matters, please send it again."
    )
}

/// A live reply's progress line (the agent's `status`, escaped), its last line until the
/// final text replaces it.
pub fn stream_status(status: &str) -> String {
    format!("_… {}_", escape_markdown(status.trim()))
}

/// A message waits behind a long turn (`position` 1: it is next).
pub fn queued(position: usize) -> String {
    match position {
        1 => "I'm still answering an earlier message here; yours is next.".to_owned(),
        n => format!("I'm still answering an earlier message here; yours is number {n} in line."),
    }
}

/// The end of a live reply whose turn was stopped with `!cancel`.
pub const STREAM_STOPPED: &str = "_(stopped)_";

/// A message of a live reply whose text went into `reply.md` (the reply grew past
/// `replies.max_inline_bytes`).
pub const STREAM_PART_IN_FILE: &str = "_(continued in reply.md)_";

/// A message of a live reply left over when the final text came out shorter than what was
/// streamed (the agent replayed its answer differently).
pub const STREAM_PART_UNUSED: &str = "_(the reply is above)_";

/// The end of a live reply whose turn failed half way (the failure notice follows).
pub const STREAM_INCOMPLETE: &str = "_(incomplete: the answer stopped here)_";

/// Told once per person and room when their messages stayed undecryptable past
/// `matrix.undecryptable_grace_secs` (answering the oldest; the person is mentioned).
pub const UNDECRYPTABLE: &str = "I could not read your encrypted message: its key has not \
reached my device. It is not lost: if the key still arrives, I will answer it then. If your \
app sends keys only to verified sessions, allow unverified sessions in this room (you can \
compare my keys with `!settings`), then send your message again.";

/// After giving up on fetching a gap: some messages may not have been answered.
pub const CATCH_UP_UNREADABLE: &str = "I could not read some of the messages sent here while \
     I was busy or away, so I may not have answered all of them. If you are waiting for an \
     answer, please send that message again.";

/// A chat command that does not exist (with the closest one, if any).
pub fn command_unknown(given: &str, suggestion: Option<&str>) -> String {
    match suggestion {
        Some(name) => format!("I don't know `!{given}`. Did you mean `!{name}`?"),
        None => format!("I don't know `!{given}`. Send `!help` to see the commands."),
    }
}

/// A command without its required argument.
pub fn command_needs_argument(command: &str, argument: &str, usage: &str) -> String {
    let article = if argument.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("`!{command}` needs {article} {argument}, like this: `{usage}`")
}

/// A command given an argument it does not take.
pub fn command_takes_no_argument(command: &str) -> String {
    format!("`!{command}` takes no argument: send it on its own.")
}

/// A name (or agent id) over the length limit.
pub fn name_too_long(argument: &str, chars: usize, max: usize) -> String {
    format!("That {argument} is too long ({chars} characters): please keep it to {max} or fewer.")
}

/// A name (or agent id) with control or invisible characters.
pub fn name_has_control_characters(argument: &str) -> String {
    format!(
        "That {argument} contains invisible or control characters. Please type it again without them."
    )
}

/// A command with more lines after it.
pub fn command_with_extra_lines(command: &str) -> String {
    format!(
        "A command goes on a single line: send `!{command}` by itself, and the rest in a separate message."
    )
}

/// One line of `!help`.
#[derive(Clone, Copy, Debug)]
pub struct HelpEntry<'a> {
    /// How to type it, e.g. `!rename <name>`.
    pub usage: &'a str,
    /// Other names (without `!`).
    pub aliases: &'a [&'a str],
    /// What it does.
    pub description: &'a str,
    /// Admins only.
    pub admin_only: bool,
}

/// The first line of `!help`.
pub const HELP_HEADER: &str =
    "Here is what you can do (anything else you write goes to the agent):";

/// The `!help` answer: a markdown list, one command per line.
pub fn help(entries: &[HelpEntry<'_>]) -> String {
    let mut text = String::from(HELP_HEADER);
    text.push('\n');
    for entry in entries {
        text.push_str("\n- `");
        text.push_str(entry.usage);
        text.push('`');
        for alias in entry.aliases {
            text.push_str(" (or `!");
            text.push_str(alias);
            text.push_str("`)");
        }
        text.push_str(": ");
        text.push_str(entry.description);
        if entry.admin_only {
            text.push_str(" _(admins only)_");
        }
    }
    text
}

/// Short reasons, shown inside the notices above ("Coder is unreachable (cannot connect)").
pub mod reason {
    /// The agent could not be reached.
    pub const CANNOT_CONNECT: &str = "cannot connect";
    /// The agent's connection is being restarted.
    pub const RESTARTING: &str = "restarting";
    /// The agent's answer could not be read (broken off, or not in the agreed format).
    pub const GARBLED: &str = "its answer broke off or could not be read";
    /// The agent's connection is misconfigured (the operator must act).
    pub const MISCONFIGURED: &str = "misconfigured connection";
    /// Surfaces' own storage failed (the operator's log says why).
    pub const STORAGE: &str = "my own storage failed";
    /// A file for an agent without a workspace.
    pub const NO_WORKSPACE: &str = "no workspace is set up for this agent";

    /// The agent is busy.
    pub fn busy(status: u16) -> String {
        format!("busy, HTTP {status}")
    }

    /// The agent's server failed.
    pub fn server_error(status: u16) -> String {
        format!("server error, HTTP {status}")
    }

    /// The agent refused the request.
    pub fn refused(status: u16) -> String {
        format!("request refused, HTTP {status}")
    }

    /// The agent ended the turn with an error of its own.
    pub fn agent_said(code: &str, message: &str) -> String {
        format!("{code}: {message}")
    }
}

/// What each command does, one line each (the `!help` list).
pub mod help {
    /// `!help`.
    pub const HELP: &str = "Show this list of commands.";
    /// `!new`.
    pub const NEW: &str = "Start a new chat, optionally with a name.";
    /// `!rename`.
    pub const RENAME: &str = "Give this chat a new name.";
    /// `!archive`.
    pub const ARCHIVE: &str = "Archive this chat (you can still read it).";
    /// `!agent`.
    pub const AGENT: &str = "List the agents, or choose the one for your next chats.";
    /// `!clear`.
    pub const CLEAR: &str = "Start over: the agent forgets this chat's conversation.";
    /// `!save`.
    pub const SAVE: &str = "Save this conversation, optionally under a name.";
    /// `!load`.
    pub const LOAD: &str = "Bring a saved conversation back into this chat.";
    /// `!context`.
    pub const CONTEXT: &str = "Show what the agent keeps in mind from this chat.";
    /// `!settings`.
    pub const SETTINGS: &str = "Show this chat's settings.";
    /// `!yes`.
    pub const YES: &str = "Confirm what I just asked.";
    /// `!no`.
    pub const NO: &str = "Decline what I just asked.";
    /// `!cancel`.
    pub const CANCEL: &str = "Cancel what is in progress.";
    /// `!status`.
    pub const STATUS: &str = "Show how the bot is doing.";
}

// ---------------------------------------------------------------------------------------------
// Trust boundary: what agents and files put in front of people (issue 12)
// ---------------------------------------------------------------------------------------------

/// What stands for a URL or network address in an error shown to people.
pub const ADDRESS_HIDDEN: &str = "[address hidden]";

/// Why a file message whose media link is malformed was not fetched (it never is).
pub const MEDIA_LINK_INVALID: &str = "its media link is not a valid Matrix media link";
// --- Who may command; edits, withdrawals and the chat's queue (issue 12) ------------

/// An owner-only command from another member of the chat.
pub const OWNER_ONLY: &str =
    "Only this chat's owner (or one of the bot's administrators) can use that command here.";

/// `!cancel` from a member whose turn is not the one running.
pub const CANCEL_NOT_YOURS: &str =
    "Only this chat's owner or the person whose message is being answered can cancel it.";

/// The chat's queue is full: said once per burst, replying to the first message not taken.
pub fn queue_full(max: usize) -> String {
    format!(
        "Too many messages are waiting in this chat (at most {max}): this one was not taken, \
         nor will others be while the queue is full. Please send it again once the answers \
         have come."
    )
}

// ---- Messengers without homes (Telegram): where a person's conversations are ----

/// Said in a person's private chat when their first conversation (a topic) was made.
pub fn home_first_chat(chat_name: &str) -> String {
    format!(
        "Welcome! Your first conversation is ready: the topic **{}** in this chat. \
         Write there; send `!new` in a topic for a fresh conversation, and `!help` for the rest.",
        escape_markdown(chat_name)
    )
}

/// Said in a person's private chat (its root) when they already have conversations.
pub fn home_existing(chat_name: &str) -> String {
    format!(
        "Your conversations are the topics of this chat, e.g. **{}**. Write in one of them \
         (what you write here, outside the topics, does not reach an agent), or send `!new` \
         in one for a fresh conversation.",
        escape_markdown(chat_name)
    )
}

/// `!new` made a conversation on a messenger without links to chats.
pub fn new_chat_created_named(chat_name: &str, agent_name: &str) -> String {
    format!(
        "New chat with {} ready: **{}**.",
        escape_markdown(agent_name),
        escape_markdown(chat_name)
    )
}

/// `!new` where the messenger cannot hold another conversation (Telegram without topics).
pub fn new_chat_unsupported(what: &str) -> String {
    format!(
        "I cannot make another conversation here: this messenger cannot {what}. \
         Send `!clear` to start this one afresh."
    )
}

/// Said to a Telegram user the access policy does not allow.
pub fn telegram_not_allowed(user_id: u64) -> String {
    format!(
        "Sorry, this bot is not open to you. If you should have access, give the operator \
         your Telegram user id: `{user_id}`."
    )
}

/// `!help` on Telegram when the bot has no topics in private chats.
pub const TELEGRAM_NO_TOPICS: &str =
    "**Here:** this bot has no topics in private chats, so this chat is your one \
     conversation: `!new` cannot open another; `!clear` starts this one afresh.";

/// A Telegram message of a kind the bot cannot pass on (a sticker, a location, a poll…).
pub const TELEGRAM_UNSUPPORTED_MESSAGE: &str =
    "I can pass on text and files (documents, photos, audio, video, voice) only; \
     this message did not reach the agent.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_to_links() {
        assert_eq!(
            matrix_to("!abc:example.org"),
            "https://matrix.to/#/!abc:example.org?via=example.org"
        );
        // Room versions without a server part in the id.
        assert_eq!(matrix_to("!abcdef"), "https://matrix.to/#/!abcdef");
        assert_eq!(
            matrix_to("@alice:example.org"),
            "https://matrix.to/#/@alice:example.org"
        );
        assert_eq!(
            matrix_to("!a/b?c:example.org"),
            "https://matrix.to/#/!a%2Fb%3Fc:example.org?via=example.org"
        );
    }

    #[test]
    fn welcome_names_the_agent_and_help() {
        let t = welcome("Code_Bot");
        assert!(t.contains("**Code\\_Bot**"), "{t}");
        assert!(t.contains("`!help`"));
    }

    #[test]
    fn space_pointer_links_space_and_first_chat() {
        let t = space_pointer("Alice's agents", "!space:example.org", "!chat:example.org");
        assert!(
            t.starts_with("I made you a Space: [Alice's agents]("),
            "{t}"
        );
        assert!(t.contains("(https://matrix.to/#/!space:example.org?via=example.org)"));
        assert!(t.contains("(https://matrix.to/#/!chat:example.org?via=example.org)"));
        assert!(t.contains("first chat"));
        // A name cannot break the link.
        let t = space_pointer("a](evil)", "!s:e.org", "!c:e.org");
        assert!(t.contains("[a\\](evil)]("), "{t}");
    }

    #[test]
    fn unmanaged_room_says_how_to_start() {
        let t = unmanaged_room("@surfaces:example.org");
        assert!(t.contains("direct chat"));
        assert!(t.contains("@surfaces:example.org"));
    }

    #[test]
    fn agent_notices() {
        let t = agent_unreachable("Coder", "connection refused");
        assert!(
            t.contains("Coder is not answering right now (connection refused)"),
            "{t}"
        );
        assert!(t.contains("got no answer"));
        assert!(t.contains("send it again"));

        let t = agent_error("Coder", "context too long");
        assert!(
            t.contains("Coder could not handle that message (context too long)"),
            "{t}"
        );

        assert!(agent_timeout("Coder", 120).contains("2 minutes"));
        assert!(agent_timeout("Coder", 90).contains("1 minute 30 seconds"));
        assert!(agent_timeout("Coder", 1).contains("1 second"));
        assert!(agent_timeout("Coder", 45).contains("45 seconds"));

        assert!(!internal_error().is_empty());
        assert!(!access_denied().is_empty());
    }

    #[test]
    fn names_and_stale_rooms() {
        assert_eq!(chat_room_name(3), "Chat 3");
        assert!(space_name("alice").contains("alice"));
        let t = agent_gone("old_agent");
        assert!(t.contains("`old_agent`"), "{t}");
        assert!(t.contains("`!new`"));
        assert!(empty_reply("Coder").starts_with("Coder "));
    }

    #[test]
    fn file_texts() {
        let t = file_too_large("big_file.bin", "20 MiB");
        assert!(t.contains("20 MiB") && t.contains("big\\_file.bin"), "{t}");
        assert!(files_no_workspace("Coder", "a.pdf").contains("no workspace"));
        assert!(file_held("a.pdf", "Coder").contains("next message"));
        assert!(files_only_reply("Coder", 2).contains("2 files"));
        assert!(files_only_reply("Coder", 1).contains("a file"));
        assert!(file_receive_failed("a.pdf", "HTTP 500\nboom").contains("HTTP 500 boom"));
        let t = files_refused(
            "Coder",
            &[
                ("../x".into(), "climbs out".into()),
                ("a\0b".into(), "contains control characters".into()),
            ],
        );
        assert!(t.contains("send files"), "{t}");
        assert_eq!(t.lines().count(), 3, "{t}");
        assert!(t.contains("- ../x: climbs out"), "{t}");
        assert!(files_refused("Coder", &[("x".into(), "r".into())]).contains("a file"));
        assert!(short_path(&"p/".repeat(200)).chars().count() <= MAX_REASON_CHARS);
    }

    #[test]
    fn reasons_are_short_single_lines() {
        let long = "error ".repeat(100);
        let r = short_reason(&long);
        assert!(
            r.chars().count() <= MAX_REASON_CHARS,
            "{}",
            r.chars().count()
        );
        assert!(r.ends_with('…'));
        assert_eq!(short_reason("a\n  b\tc"), "a b c");
        assert_eq!(short_reason("   "), "no details");
        assert_eq!(
            short_reason("url (http://u:secret@10.0.0.5:9/v1/context): refused"),
            "url (\\[address hidden\\]): refused"
        );
        assert_eq!(short_reason("*bold*"), "\\*bold\\*");
        // Multi-byte characters are cut on character boundaries.
        let r = short_reason(&"é".repeat(500));
        assert_eq!(r.chars().count(), MAX_REASON_CHARS);
    }
}

/// Per-person limits (`[limits]`): what a person hears when one of them stops them.
pub mod limits {
    /// A person's messages came faster than `limits.messages_per_minute` allows; said once per
    /// flood.
    pub fn rate_limited(burst: u32, per_minute: u32) -> String {
        format!(
            "You are sending messages faster than I can take them (at most {burst} at once, then \
             {per_minute} a minute). I did not take this one, nor will I take the next ones until \
             you slow down; send again what you need in a moment."
        )
    }

    /// `!new` past `limits.max_chats_per_person`.
    pub fn too_many_chats(max: u32) -> String {
        format!(
            "You already have {max} chats, the most one person can have here. Archive one with \
             `!archive` before starting another."
        )
    }

    /// `!cancel` while `limits.max_concurrent_cancels` are in flight.
    pub const CANCEL_BUSY: &str =
        "Too many cancellations are running right now; send `!cancel` again in a moment.";
}
