//! Who may run a command in a chat.
//!
//! Why this exists: a chat is shared by its members, but the conversation behind it is its
//! owner's, and most commands act on that conversation with the bot's power (forget it,
//! load a snapshot over it, archive the room, switch its agent). Which commands those are is
//! one pure decision, table-tested here and documented in `docs/SECURITY.md` ("Who may
//! command"); the runtime asks [`may_run`] before it carries a command out.

use super::Command;

/// Who may run a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Any member the access policy allows.
    Anyone,
    /// The chat's owner (the owner of its binding) and the bot's admins.
    OwnerOrAdmin,
    /// The bot's admins only.
    Admin,
}

/// The person asking, relative to the chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asker {
    /// They own the chat.
    pub owner: bool,
    /// They are one of the bot's admins (`access.admins`).
    pub admin: bool,
}

/// Who may run `command` in a chat.
///
/// Open: `!help`, `!new` (makes a room of the asker's own), `!agent` without an argument (a
/// list), `!settings`, `!yes`/`!no` (answers are keyed by person and chat), and `!cancel`,
/// which checks the turn itself (its owner or the person whose turn runs, see
/// `runtime::commands::cancel`). Everything that reads or changes the owner's conversation
/// or room is the owner's.
pub fn permission(command: &Command) -> Permission {
    if command.is_admin_only() {
        return Permission::Admin;
    }
    match command {
        Command::Archive
        | Command::Clear
        | Command::Rename { .. }
        | Command::Load { .. }
        | Command::Save { .. }
        | Command::Context
        | Command::Agent { id: Some(_) } => Permission::OwnerOrAdmin,
        Command::Help
        | Command::New { .. }
        | Command::Agent { id: None }
        | Command::Settings
        | Command::Yes
        | Command::No
        | Command::Cancel
        | Command::Status => Permission::Anyone,
    }
}

/// Whether `asker` may run `command`.
pub fn may_run(command: &Command, asker: Asker) -> bool {
    match permission(command) {
        Permission::Anyone => true,
        Permission::OwnerOrAdmin => asker.owner || asker.admin,
        Permission::Admin => asker.admin,
    }
}

/// Whether `asker` may cancel the turn running in a chat (`asker_is_turn_sender`: it answers
/// their message): the chat's owner, an admin, or the person whose turn it is.
pub fn may_cancel(asker: Asker, asker_is_turn_sender: bool) -> bool {
    asker.owner || asker.admin || asker_is_turn_sender
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: Asker = Asker {
        owner: true,
        admin: false,
    };
    const ADMIN: Asker = Asker {
        owner: false,
        admin: true,
    };
    const MEMBER: Asker = Asker {
        owner: false,
        admin: false,
    };

    #[test]
    fn who_may_run_what() {
        let name = || "x".to_owned();
        // (command, owner, admin, other member)
        let table = [
            (Command::Help, true, true, true),
            (Command::New { name: None }, true, true, true),
            (Command::Rename { name: name() }, true, true, false),
            (Command::Archive, true, true, false),
            (Command::Agent { id: None }, true, true, true),
            (Command::Agent { id: Some(name()) }, true, true, false),
            (Command::Clear, true, true, false),
            (Command::Save { name: None }, true, true, false),
            (Command::Load { name: name() }, true, true, false),
            (Command::Context, true, true, false),
            (Command::Settings, true, true, true),
            (Command::Yes, true, true, true),
            (Command::No, true, true, true),
            (Command::Cancel, true, true, true),
            (Command::Status, false, true, false),
        ];
        for (command, owner, admin, member) in table {
            assert_eq!(may_run(&command, OWNER), owner, "owner: {command}");
            assert_eq!(may_run(&command, ADMIN), admin, "admin: {command}");
            assert_eq!(may_run(&command, MEMBER), member, "member: {command}");
        }
    }

    #[test]
    fn every_alias_gets_the_same_rule() {
        for (body, expected) in [
            ("!reset", Permission::OwnerOrAdmin),
            ("!CLEAR", Permission::OwnerOrAdmin),
            ("!agent coder", Permission::OwnerOrAdmin),
            ("!agent", Permission::Anyone),
        ] {
            match super::super::parse(body) {
                crate::commands::Parsed::Command(command) => {
                    assert_eq!(permission(&command), expected, "{body}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn who_may_cancel() {
        assert!(may_cancel(OWNER, false));
        assert!(may_cancel(ADMIN, false));
        assert!(may_cancel(MEMBER, true));
        assert!(!may_cancel(MEMBER, false));
    }
}
