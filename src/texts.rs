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
        "⚠️ {} is not answering right now ({}). Your message was not lost: \
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

/// The agent took longer than its `timeout_secs`.
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

/// Cuts a technical reason down to one short line, escaped for markdown.
pub fn short_reason(reason: &str) -> String {
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
        assert!(t.contains("not lost"));
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
        assert_eq!(short_reason("*bold*"), "\\*bold\\*");
        // Multi-byte characters are cut on character boundaries.
        let r = short_reason(&"é".repeat(500));
        assert_eq!(r.chars().count(), MAX_REASON_CHARS);
    }
}
