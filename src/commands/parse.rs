//! The command grammar: from a message body to a [`Command`] (or a friendly error).
//!
//! Decisions, in the order `parse` applies them:
//!
//! 1. **What is a command.** Leading whitespace (including blank lines) is skipped. The message
//!    is a command attempt when it then starts with `!` (or the full-width `！` of CJK
//!    keyboards) immediately followed by a *command word*: a letter, then letters or digits,
//!    at most [`MAX_COMMAND_WORD_CHARS`] characters, ended by whitespace or the end of the
//!    line. Trailing `. , ; : ! ?` after the word are ignored (`!yes!`, `!rename: Foo`).
//!    Everything else is [`Parsed::NotACommand`] and goes to the agent untouched: `!` alone,
//!    `!!!`, `! hello`, `!2`, a pasted room id `!abc:example.org`, a very long `!word`,
//!    markdown such as `**!help**` or a quote `> !help` (the first character is not `!`).
//! 2. **Unknown words are refused, not forwarded.** A command attempt with an unknown word is
//!    [`CommandError::Unknown`], with the closest known command as a suggestion. This way a
//!    mistyped `!hlep` or `!rset` never lands in the agent's conversation by accident.
//! 3. **Names of commands are case-insensitive**: `!HELP`, `!Help`, `!help`.
//! 4. **One line.** Only the first line is the command line. Blank lines after it are ignored;
//!    any other text after it refuses the command ([`CommandError::ExtraLines`]) rather than
//!    silently dropping what the person wrote: they are told to send the rest separately.
//! 5. **Arguments** are the rest of the command line, trimmed at both ends; inner spaces are
//!    kept exactly as typed (`!rename  My   room` → `My   room`), quotes too (a room named
//!    `"Foo"` is what `!rename "Foo"` asks for). Commands without an argument refuse one
//!    (`!yes please` → "`!yes` takes no argument").
//! 6. **Names** (and agent ids) are at most [`MAX_NAME_CHARS`] characters (characters, not
//!    bytes: `!new Проект 🚀` is fine) and may not contain control characters or the invisible
//!    characters that can disguise text (bidi overrides and isolates, zero-width space, BOM,
//!    line/paragraph separators). Joiners (U+200C, U+200D) are allowed: emoji and several
//!    scripts need them.
//!
//! Everything is linear in the size of the body: a 1 MB message costs a few passes over it,
//! and suggestions are computed only on the (bounded) command word.

use std::fmt;

use crate::texts;

/// The longest name (room name, save name) or agent id a command accepts, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// The longest word after `!` that is still taken as a command attempt. Longer words
/// (a pasted room id, `!!!!!aaaaaaaaaaaaaaaaaaa`) are ordinary messages.
pub const MAX_COMMAND_WORD_CHARS: usize = 16;

/// What the person asked the bot to do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command {
    /// `!help`: list the commands.
    Help,
    /// `!new [name]`: start a new chat room.
    New { name: Option<String> },
    /// `!rename <name>`: rename this chat.
    Rename { name: String },
    /// `!archive`: archive this chat.
    Archive,
    /// `!agent [id]`: list the agents, or choose one.
    Agent { id: Option<String> },
    /// `!clear` (alias `!reset`): forget this chat's conversation.
    Clear,
    /// `!save [name]`: save this conversation.
    Save { name: Option<String> },
    /// `!load <name>`: load a saved conversation.
    Load { name: String },
    /// `!context`: show what the agent keeps in mind.
    Context,
    /// `!settings`: show this chat's settings.
    Settings,
    /// `!yes`: confirm the pending question.
    Yes,
    /// `!no`: decline the pending question.
    No,
    /// `!cancel`: cancel what is in progress.
    Cancel,
    /// `!status`: the bot's health (admins only).
    Status,
}

/// The outcome of [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// An ordinary message, for the agent.
    NotACommand,
    /// A well-formed command.
    Command(Command),
    /// A command attempt that cannot be carried out; `Display` is the reply to send.
    Invalid(CommandError),
}

/// Why a command attempt was refused. `Display` is a short, friendly markdown sentence meant
/// for the person who typed it. Command names are stored without the `!`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No command has that name. `given` is the word as typed (at most
    /// [`MAX_COMMAND_WORD_CHARS`] letters or digits); `suggestion` the closest command.
    #[error("{}", texts::command_unknown(.given, *.suggestion))]
    Unknown {
        given: String,
        suggestion: Option<&'static str>,
    },
    /// A required argument is missing.
    #[error("{}", texts::command_needs_argument(.command, .argument, .usage))]
    MissingArgument {
        command: &'static str,
        argument: &'static str,
        usage: &'static str,
    },
    /// The command takes no argument, but one was given.
    #[error("{}", texts::command_takes_no_argument(.command))]
    UnexpectedArgument {
        command: &'static str,
        usage: &'static str,
    },
    /// A name (or agent id) longer than `max` characters.
    #[error("{}", texts::name_too_long(.argument, *.chars, *.max))]
    NameTooLong {
        argument: &'static str,
        chars: usize,
        max: usize,
    },
    /// A name (or agent id) with control or invisible characters.
    #[error("{}", texts::name_has_control_characters(.argument))]
    InvalidCharacters { argument: &'static str },
    /// Text on the lines after the command line.
    #[error("{}", texts::command_with_extra_lines(.command))]
    ExtraLines { command: &'static str },
}

/// What a command accepts after its name. The string is the argument's label, as shown in
/// usage and errors ("name", "agent id").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argument {
    None,
    Optional(&'static str),
    Required(&'static str),
}

/// One entry of the command list: the single source for parsing, `!help` and suggestions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandInfo {
    /// Canonical name, lower case, without `!`.
    pub name: &'static str,
    /// Other accepted names, lower case, without `!`.
    pub aliases: &'static [&'static str],
    /// How to type it, e.g. `!rename <name>`.
    pub usage: &'static str,
    /// One line for `!help`.
    pub description: &'static str,
    /// What it takes after its name.
    pub argument: Argument,
    /// Shown in `!help` and carried out only for the bot's admins.
    pub admin_only: bool,
}

const fn info(
    name: &'static str,
    aliases: &'static [&'static str],
    usage: &'static str,
    argument: Argument,
    description: &'static str,
) -> CommandInfo {
    CommandInfo {
        name,
        aliases,
        usage,
        description,
        argument,
        admin_only: false,
    }
}

/// Every command, in the order `!help` lists them (also the tie-break order of suggestions).
pub const COMMANDS: &[CommandInfo] = &[
    info("help", &[], "!help", Argument::None, texts::help::HELP),
    info(
        "new",
        &[],
        "!new [name]",
        Argument::Optional("name"),
        texts::help::NEW,
    ),
    info(
        "rename",
        &[],
        "!rename <name>",
        Argument::Required("name"),
        texts::help::RENAME,
    ),
    info(
        "archive",
        &[],
        "!archive",
        Argument::None,
        texts::help::ARCHIVE,
    ),
    info(
        "agent",
        &[],
        "!agent [agent id]",
        Argument::Optional("agent id"),
        texts::help::AGENT,
    ),
    info(
        "clear",
        &["reset"],
        "!clear",
        Argument::None,
        texts::help::CLEAR,
    ),
    info(
        "save",
        &[],
        "!save [name]",
        Argument::Optional("name"),
        texts::help::SAVE,
    ),
    info(
        "load",
        &[],
        "!load <name>",
        Argument::Required("name"),
        texts::help::LOAD,
    ),
    info(
        "context",
        &[],
        "!context",
        Argument::None,
        texts::help::CONTEXT,
    ),
    info(
        "settings",
        &[],
        "!settings",
        Argument::None,
        texts::help::SETTINGS,
    ),
    info("yes", &[], "!yes", Argument::None, texts::help::YES),
    info("no", &[], "!no", Argument::None, texts::help::NO),
    info(
        "cancel",
        &[],
        "!cancel",
        Argument::None,
        texts::help::CANCEL,
    ),
    CommandInfo {
        admin_only: true,
        ..info(
            "status",
            &[],
            "!status",
            Argument::None,
            texts::help::STATUS,
        )
    },
];

/// Reads a message body. Never panics; linear in the size of `body`.
pub fn parse(body: &str) -> Parsed {
    let Some(after_bang) = body.trim_start().strip_prefix(['!', '！']) else {
        return Parsed::NotACommand;
    };
    let (line, rest) = after_bang.split_once('\n').unwrap_or((after_bang, ""));
    let (token, argument) = match line.find(char::is_whitespace) {
        Some(at) => line.split_at(at),
        None => (line, ""),
    };
    let word = token.trim_end_matches(['.', ',', ';', ':', '!', '?']);
    if !is_command_word(word) {
        return Parsed::NotACommand;
    }
    let Some((info, typed_name)) = lookup(word) else {
        return Parsed::Invalid(CommandError::Unknown {
            given: word.to_owned(),
            suggestion: suggest(&word.to_lowercase()),
        });
    };
    match build(info, typed_name, argument.trim()) {
        Ok(_) if !rest.trim().is_empty() => Parsed::Invalid(CommandError::ExtraLines {
            command: typed_name,
        }),
        Ok(command) => Parsed::Command(command),
        Err(error) => Parsed::Invalid(error),
    }
}

/// The command called `name` (case-insensitive, without `!`, aliases included), with the
/// name or alias that matched.
pub fn lookup(name: &str) -> Option<(&'static CommandInfo, &'static str)> {
    let name = name.to_lowercase();
    COMMANDS.iter().find_map(|info| {
        std::iter::once(&info.name)
            .chain(info.aliases)
            .find(|candidate| **candidate == name)
            .map(|candidate| (info, *candidate))
    })
}

/// The `!help` answer: a markdown list, one command per line. Admin-only commands are listed
/// only for admins.
pub fn help_text(is_admin: bool) -> String {
    let entries: Vec<texts::HelpEntry<'_>> = COMMANDS
        .iter()
        .filter(|info| is_admin || !info.admin_only)
        .map(|info| texts::HelpEntry {
            usage: info.usage,
            aliases: info.aliases,
            description: info.description,
            admin_only: info.admin_only,
        })
        .collect();
    texts::help(&entries)
}

impl Command {
    /// This command's entry in [`COMMANDS`].
    pub fn info(&self) -> &'static CommandInfo {
        let name = match self {
            Command::Help => "help",
            Command::New { .. } => "new",
            Command::Rename { .. } => "rename",
            Command::Archive => "archive",
            Command::Agent { .. } => "agent",
            Command::Clear => "clear",
            Command::Save { .. } => "save",
            Command::Load { .. } => "load",
            Command::Context => "context",
            Command::Settings => "settings",
            Command::Yes => "yes",
            Command::No => "no",
            Command::Cancel => "cancel",
            Command::Status => "status",
        };
        COMMANDS
            .iter()
            .find(|info| info.name == name)
            .expect("every command is listed in COMMANDS")
    }

    /// The canonical name, without `!`.
    pub fn name(&self) -> &'static str {
        self.info().name
    }

    /// How to type it, e.g. `!rename <name>`.
    pub fn usage(&self) -> &'static str {
        self.info().usage
    }

    /// Whether only admins may run it.
    pub fn is_admin_only(&self) -> bool {
        self.info().admin_only
    }

    fn argument(&self) -> Option<&str> {
        match self {
            Command::New { name } | Command::Save { name } => name.as_deref(),
            Command::Agent { id } => id.as_deref(),
            Command::Rename { name } | Command::Load { name } => Some(name),
            _ => None,
        }
    }
}

/// The canonical command line (`!rename My room`); [`parse`] reads it back to the same command.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "!{}", self.name())?;
        if let Some(argument) = self.argument() {
            write!(f, " {argument}")?;
        }
        Ok(())
    }
}

/// A letter, then letters or digits, not too long.
fn is_command_word(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(char::is_alphabetic)
        && chars.clone().all(char::is_alphanumeric)
        && chars.nth(MAX_COMMAND_WORD_CHARS - 1).is_none()
}

fn build(
    info: &'static CommandInfo,
    typed_name: &'static str,
    argument: &str,
) -> Result<Command, CommandError> {
    let argument = match (info.argument, argument.is_empty()) {
        (Argument::None, true) => None,
        (Argument::None, false) => {
            return Err(CommandError::UnexpectedArgument {
                command: typed_name,
                usage: info.usage,
            })
        }
        (Argument::Optional(_), true) => None,
        (Argument::Required(label), true) => {
            return Err(CommandError::MissingArgument {
                command: typed_name,
                argument: label,
                usage: info.usage,
            })
        }
        (Argument::Optional(label) | Argument::Required(label), false) => {
            Some(check_name(argument, label)?)
        }
    };
    Ok(match info.name {
        "help" => Command::Help,
        "new" => Command::New { name: argument },
        "rename" => Command::Rename {
            name: argument.unwrap_or_default(),
        },
        "archive" => Command::Archive,
        "agent" => Command::Agent { id: argument },
        "clear" => Command::Clear,
        "save" => Command::Save { name: argument },
        "load" => Command::Load {
            name: argument.unwrap_or_default(),
        },
        "context" => Command::Context,
        "settings" => Command::Settings,
        "yes" => Command::Yes,
        "no" => Command::No,
        "cancel" => Command::Cancel,
        "status" => Command::Status,
        other => unreachable!("COMMANDS lists `{other}` but build does not"),
    })
}

/// Checks a trimmed, non-empty name or agent id.
fn check_name(name: &str, label: &'static str) -> Result<String, CommandError> {
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(CommandError::NameTooLong {
            argument: label,
            chars,
            max: MAX_NAME_CHARS,
        });
    }
    if name.chars().any(is_forbidden_in_name) {
        return Err(CommandError::InvalidCharacters { argument: label });
    }
    Ok(name.to_owned())
}

/// Control characters, and invisible characters that can hide or reorder text.
fn is_forbidden_in_name(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}' // zero-width space
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{FEFF}' // byte order mark
        )
}

/// The closest command name or alias to `given` (lower case), if it is close enough: an edit
/// distance of 1 for words of up to 3 letters, 2 for longer ones, or `given` (2+ letters) is
/// the start of a name. Best = smallest distance, then prefix matches, then [`COMMANDS`] order.
fn suggest(given: &str) -> Option<&'static str> {
    let given: Vec<char> = given.chars().collect();
    let max_distance = if given.len() <= 3 { 1 } else { 2 };
    COMMANDS
        .iter()
        .flat_map(|info| std::iter::once(info.name).chain(info.aliases.iter().copied()))
        .enumerate()
        .filter_map(|(order, candidate)| {
            let candidate_chars: Vec<char> = candidate.chars().collect();
            let distance = edit_distance(&given, &candidate_chars);
            let prefix = given.len() >= 2 && candidate_chars.starts_with(&given);
            (distance <= max_distance || prefix).then_some(((distance, !prefix, order), candidate))
        })
        .min_by_key(|(key, _)| *key)
        .map(|(_, candidate)| candidate)
}

/// Damerau–Levenshtein distance (optimal string alignment: insertions, deletions,
/// substitutions, transpositions of neighbours). Only called on short words.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    let at = |i: usize, j: usize| i * width + j;
    for i in 0..=a.len() {
        d[at(i, 0)] = i;
    }
    for j in 0..=b.len() {
        d[at(0, j)] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[at(i - 1, j)] + 1)
                .min(d[at(i, j - 1)] + 1)
                .min(d[at(i - 1, j - 1)] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[at(i - 2, j - 2)] + 1);
            }
            d[at(i, j)] = best;
        }
    }
    d[at(a.len(), b.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(c: Command) -> Parsed {
        Parsed::Command(c)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    fn invalid(body: &str) -> CommandError {
        match parse(body) {
            Parsed::Invalid(error) => error,
            other => panic!("{body:?} should be invalid, got {other:?}"),
        }
    }

    #[test]
    fn every_command_happy_path() {
        let cases: &[(&str, Command)] = &[
            ("!help", Command::Help),
            ("!new", Command::New { name: None }),
            (
                "!new Project X",
                Command::New {
                    name: some("Project X"),
                },
            ),
            (
                "!rename Budget 2025",
                Command::Rename {
                    name: "Budget 2025".into(),
                },
            ),
            ("!archive", Command::Archive),
            ("!agent", Command::Agent { id: None }),
            ("!agent coder", Command::Agent { id: some("coder") }),
            ("!clear", Command::Clear),
            ("!reset", Command::Clear),
            ("!save", Command::Save { name: None }),
            (
                "!save before refactor",
                Command::Save {
                    name: some("before refactor"),
                },
            ),
            (
                "!load before refactor",
                Command::Load {
                    name: "before refactor".into(),
                },
            ),
            ("!context", Command::Context),
            ("!settings", Command::Settings),
            ("!yes", Command::Yes),
            ("!no", Command::No),
            ("!cancel", Command::Cancel),
            ("!status", Command::Status),
        ];
        for (body, expected) in cases {
            assert_eq!(parse(body), cmd(expected.clone()), "{body:?}");
        }
        // Every entry of COMMANDS is reachable by its name and its aliases.
        for info in COMMANDS {
            for name in std::iter::once(&info.name).chain(info.aliases) {
                let body = match info.argument {
                    Argument::Required(_) => format!("!{name} x"),
                    _ => format!("!{name}"),
                };
                match parse(&body) {
                    Parsed::Command(c) => assert_eq!(c.info(), info, "{body}"),
                    other => panic!("{body}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn case_insensitive_names() {
        for body in ["!HELP", "!Help", "!hElP", "  !help", "!help  "] {
            assert_eq!(parse(body), cmd(Command::Help), "{body:?}");
        }
        assert_eq!(parse("!RESET"), cmd(Command::Clear));
        // Arguments keep their case.
        assert_eq!(
            parse("!NEW My Room"),
            cmd(Command::New {
                name: some("My Room")
            })
        );
    }

    #[test]
    fn spaces_and_punctuation() {
        let cases: &[(&str, Parsed)] = &[
            (
                "!rename    My   room   ",
                cmd(Command::Rename {
                    name: "My   room".into(),
                }),
            ),
            (
                "!rename\tMy room",
                cmd(Command::Rename {
                    name: "My room".into(),
                }),
            ),
            (
                "!new \u{a0}Nbsp\u{a0}",
                cmd(Command::New { name: some("Nbsp") }),
            ),
            ("\n\n   !yes", cmd(Command::Yes)),
            ("!yes!", cmd(Command::Yes)),
            ("!help?", cmd(Command::Help)),
            ("!rename: Foo", cmd(Command::Rename { name: "Foo".into() })),
            ("！help", cmd(Command::Help)),
            (
                "!new \"Foo\"",
                cmd(Command::New {
                    name: some("\"Foo\""),
                }),
            ),
            ("!help\r\n", cmd(Command::Help)),
        ];
        for (body, expected) in cases {
            assert_eq!(&parse(body), expected, "{body:?}");
        }
    }

    #[test]
    fn not_a_command() {
        for body in [
            "",
            "   ",
            "hello",
            "hello !help",
            "!",
            "  !  ",
            "!!!",
            "! hello",
            "!?",
            "!2",
            "!2fast",
            "!abc:example.org",
            "!-help",
            "!_help",
            "**!help**",
            "> !help",
            "`!help`",
            "!aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "!help:me",
        ] {
            assert_eq!(parse(body), Parsed::NotACommand, "{body:?}");
        }
    }

    #[test]
    fn missing_arguments() {
        for (body, command, argument) in [
            ("!rename", "rename", "name"),
            ("!rename    ", "rename", "name"),
            ("!load", "load", "name"),
            ("!LOAD\n", "load", "name"),
        ] {
            let error = invalid(body);
            assert!(
                matches!(error, CommandError::MissingArgument { command: c, argument: a, .. }
                    if c == command && a == argument),
                "{body:?}: {error:?}"
            );
        }
        assert_eq!(
            invalid("!rename").to_string(),
            "`!rename` needs a name, like this: `!rename <name>`"
        );
    }

    #[test]
    fn unexpected_arguments() {
        for (body, command) in [
            ("!yes please", "yes"),
            ("!help me", "help"),
            ("!archive now", "archive"),
            ("!reset all", "reset"),
            ("!status x", "status"),
        ] {
            let error = invalid(body);
            assert!(
                matches!(error, CommandError::UnexpectedArgument { command: c, .. } if c == command),
                "{body:?}: {error:?}"
            );
        }
        assert_eq!(
            invalid("!yes please").to_string(),
            "`!yes` takes no argument: send it on its own."
        );
    }

    #[test]
    fn unicode_names() {
        assert_eq!(
            parse("!new Проект 🚀"),
            cmd(Command::New {
                name: some("Проект 🚀")
            })
        );
        assert_eq!(
            parse("!rename 家族 👨\u{200D}👩\u{200D}👧"),
            cmd(Command::Rename {
                name: "家族 👨\u{200D}👩\u{200D}👧".into()
            })
        );
        assert_eq!(
            parse("!save مرحبا"),
            cmd(Command::Save {
                name: some("مرحبا")
            })
        );
        // Exactly the limit, in characters (4 bytes each), is fine.
        let at_limit = "🚀".repeat(MAX_NAME_CHARS);
        assert_eq!(
            parse(&format!("!new {at_limit}")),
            cmd(Command::New {
                name: Some(at_limit)
            })
        );
    }

    #[test]
    fn names_too_long_or_invalid() {
        let error = invalid(&format!("!new {}", "é".repeat(MAX_NAME_CHARS + 1)));
        assert_eq!(
            error,
            CommandError::NameTooLong {
                argument: "name",
                chars: MAX_NAME_CHARS + 1,
                max: MAX_NAME_CHARS
            }
        );
        assert!(
            error.to_string().contains("too long (101 characters)"),
            "{error}"
        );
        assert!(matches!(
            invalid(&format!("!agent {}", "a".repeat(500))),
            CommandError::NameTooLong {
                argument: "agent id",
                ..
            }
        ));
        for body in [
            "!new a\u{0}b",
            "!rename tab\there",
            "!rename a\rb",
            "!save a\u{7f}",
            "!load \u{202E}txt.exe",
            "!new a\u{2066}b",
            "!new zero\u{200B}width",
            "!agent \u{FEFF}coder",
            "!new a\u{2028}b",
        ] {
            assert!(
                matches!(invalid(body), CommandError::InvalidCharacters { .. }),
                "{body:?}"
            );
        }
        assert!(invalid("!new a\u{1}")
            .to_string()
            .contains("invisible or control"));
    }

    #[test]
    fn multi_line_messages() {
        assert_eq!(parse("!help\n\n   \n"), cmd(Command::Help));
        assert_eq!(
            parse("!new Plans\r\n\r\n"),
            cmd(Command::New {
                name: some("Plans")
            })
        );
        let error = invalid("!new Plans\nAnd here is my first question");
        assert_eq!(error, CommandError::ExtraLines { command: "new" });
        assert!(error.to_string().contains("`!new` by itself"), "{error}");
        // The first line's own error wins over the extra lines.
        assert!(matches!(
            invalid("!yes please\nmore"),
            CommandError::UnexpectedArgument { .. }
        ));
        assert!(matches!(
            invalid("!hlep\nmore"),
            CommandError::Unknown { .. }
        ));
        // A message merely mentioning a command on a later line is for the agent.
        assert_eq!(parse("hello\n!help"), Parsed::NotACommand);
    }

    #[test]
    fn unknown_commands_and_suggestions() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("!hlep", "hlep", Some("help")),
            ("!HLEP", "HLEP", Some("help")),
            ("!sav", "sav", Some("save")),
            ("!stat", "stat", Some("status")),
            ("!st", "st", Some("status")),
            ("!sett", "sett", Some("settings")),
            ("!rset", "rset", Some("reset")),
            ("!renmae x", "renmae", Some("rename")),
            ("!ys", "ys", Some("yes")),
            ("!nope", "nope", Some("no")),
            ("!agnet", "agnet", Some("agent")),
            ("!arch", "arch", Some("archive")),
            ("!ctx", "ctx", None),
            ("!a", "a", None),
            ("!s", "s", None),
            ("!banana", "banana", None),
            ("!new2", "new2", Some("new")),
            ("!bonjour", "bonjour", None),
            ("!помощь", "помощь", None),
        ];
        for (body, given, suggestion) in cases {
            assert_eq!(
                invalid(body),
                CommandError::Unknown {
                    given: given.to_string(),
                    suggestion: *suggestion
                },
                "{body:?}"
            );
        }
        assert_eq!(
            invalid("!hlep").to_string(),
            "I don't know `!hlep`. Did you mean `!help`?"
        );
        assert_eq!(
            invalid("!banana").to_string(),
            "I don't know `!banana`. Send `!help` to see the commands."
        );
    }

    #[test]
    fn edit_distances() {
        let d = |a: &str, b: &str| {
            edit_distance(
                &a.chars().collect::<Vec<_>>(),
                &b.chars().collect::<Vec<_>>(),
            )
        };
        assert_eq!(d("", ""), 0);
        assert_eq!(d("help", "help"), 0);
        assert_eq!(d("hlep", "help"), 1);
        assert_eq!(d("sav", "save"), 1);
        assert_eq!(d("stat", "status"), 2);
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("", "abc"), 3);
    }

    #[test]
    fn round_trip_display_and_usage() {
        let commands = [
            Command::Help,
            Command::New { name: None },
            Command::New {
                name: some("Проект 🚀"),
            },
            Command::Rename {
                name: "My   room".into(),
            },
            Command::Archive,
            Command::Agent { id: None },
            Command::Agent { id: some("coder") },
            Command::Clear,
            Command::Save { name: None },
            Command::Save { name: some("v1") },
            Command::Load { name: "v1".into() },
            Command::Context,
            Command::Settings,
            Command::Yes,
            Command::No,
            Command::Cancel,
            Command::Status,
        ];
        for command in commands {
            assert_eq!(
                parse(&command.to_string()),
                cmd(command.clone()),
                "{command}"
            );
            assert!(command.usage().starts_with(&format!("!{}", command.name())));
            assert_eq!(command.is_admin_only(), command == Command::Status);
        }
        assert_eq!(
            Command::Rename { name: "A b".into() }.to_string(),
            "!rename A b"
        );
        assert_eq!(Command::Clear.to_string(), "!clear");
        // Every usage line is itself a valid command line for its command.
        for info in COMMANDS {
            match parse(info.usage) {
                Parsed::Command(c) => assert_eq!(c.info(), info, "{}", info.usage),
                other => panic!("{}: {other:?}", info.usage),
            }
        }
    }

    #[test]
    fn table_is_consistent() {
        let mut all: Vec<&str> = Vec::new();
        for info in COMMANDS {
            assert!(
                info.usage.starts_with(&format!("!{}", info.name)),
                "{}",
                info.name
            );
            assert!(!info.description.is_empty() && !info.description.contains('\n'));
            for name in std::iter::once(&info.name).chain(info.aliases) {
                assert!(
                    is_command_word(name) && *name == name.to_lowercase(),
                    "{name}"
                );
                assert!(!all.contains(name), "duplicate {name}");
                all.push(name);
            }
        }
        assert_eq!(
            COMMANDS
                .iter()
                .filter(|i| i.admin_only)
                .map(|i| i.name)
                .collect::<Vec<_>>(),
            ["status"]
        );
        assert_eq!(
            lookup("ReSeT").map(|(i, n)| (i.name, n)),
            Some(("clear", "reset"))
        );
        assert_eq!(lookup("nope"), None);
    }

    #[test]
    fn help_lists_commands_one_per_line() {
        let user = help_text(false);
        let admin = help_text(true);
        assert!(!user.contains("!status"), "{user}");
        assert!(admin.contains("- `!status`: "), "{admin}");
        assert!(
            user.contains("- `!rename <name>`: Give this chat a new name."),
            "{user}"
        );
        assert!(user.contains("- `!clear` (or `!reset`): "), "{user}");
        let items = |t: &str| t.lines().filter(|l| l.starts_with("- `!")).count();
        assert_eq!(items(&user), COMMANDS.len() - 1);
        assert_eq!(items(&admin), COMMANDS.len());
        // Every listed usage line parses as its command.
        for line in admin.lines().filter(|l| l.starts_with("- `")) {
            let usage = line.trim_start_matches("- `").split('`').next().unwrap();
            assert!(matches!(parse(usage), Parsed::Command(_)), "{usage}");
        }
    }

    #[test]
    fn very_long_inputs() {
        const MB: usize = 1 << 20;
        type Check = fn(&Parsed) -> bool;
        let cases: Vec<(String, Check)> = vec![
            (
                format!("!new {}", "a".repeat(MB)),
                |p| matches!(p, Parsed::Invalid(CommandError::NameTooLong { chars, .. }) if *chars == MB),
            ),
            (format!("!help{}", " x".repeat(MB / 2)), |p| {
                matches!(p, Parsed::Invalid(CommandError::UnexpectedArgument { .. }))
            }),
            (format!("!new x{}", "\ny".repeat(MB / 2)), |p| {
                matches!(p, Parsed::Invalid(CommandError::ExtraLines { .. }))
            }),
            (format!("!help{}", "\n".repeat(MB)), |p| {
                *p == Parsed::Command(Command::Help)
            }),
            ("!".repeat(MB), |p| *p == Parsed::NotACommand),
            (format!("!{}", "a".repeat(MB)), |p| {
                *p == Parsed::NotACommand
            }),
            (format!("{}!help", " ".repeat(MB)), |p| {
                *p == Parsed::Command(Command::Help)
            }),
            ("x".repeat(MB), |p| *p == Parsed::NotACommand),
            (format!("!new {}", "\u{1}".repeat(MB)), |p| {
                matches!(p, Parsed::Invalid(CommandError::NameTooLong { .. }))
            }),
            (format!("!rename {}", "🚀 ".repeat(MB / 5)), |p| {
                matches!(p, Parsed::Invalid(CommandError::NameTooLong { .. }))
            }),
        ];
        let started = std::time::Instant::now();
        for (body, ok) in &cases {
            let parsed = parse(body);
            assert!(ok(&parsed), "{}…: {parsed:?}", &body[..20.min(body.len())]);
        }
        // Linear work: ~10 MB scanned a few times. A quadratic pass would take hours.
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    /// Deterministic fuzzing: random bytes and random mixes of tricky pieces never panic, and
    /// whatever parses as a command prints back to a line that parses to the same command.
    #[test]
    fn hostile_input_never_panics() {
        let mut rng = fastrand::Rng::with_seed(0x5EED_C0DE);
        let pieces = [
            "!",
            "！",
            " ",
            "  ",
            "\n",
            "\r\n",
            "\t",
            "\u{0}",
            "\u{202E}",
            "\u{200D}",
            "\u{2028}",
            "\u{a0}",
            "é",
            "🚀",
            "İ",
            "ß",
            "help",
            "new",
            "rename",
            "reset",
            "load",
            "save",
            "agent",
            "yes",
            "HLEP",
            "x",
            ":",
            "?",
            ".",
            "**",
            "`",
            "\u{FEFF}",
            "\u{10FFFF}",
        ];
        for round in 0..20_000 {
            let body = if round % 2 == 0 {
                let bytes: Vec<u8> = (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect();
                let mut body = String::from_utf8_lossy(&bytes).into_owned();
                if rng.bool() {
                    body.insert(0, '!');
                }
                body
            } else {
                (0..rng.usize(1..12))
                    .map(|_| pieces[rng.usize(..pieces.len())])
                    .collect()
            };
            match parse(&body) {
                Parsed::Command(command) => {
                    assert_eq!(
                        parse(&command.to_string()),
                        cmd(command.clone()),
                        "{body:?}"
                    );
                }
                Parsed::Invalid(error) => assert!(!error.to_string().is_empty()),
                Parsed::NotACommand => {}
            }
        }
    }
}
