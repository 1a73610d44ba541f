//! Who may use the bot, and who administers it: [`AccessPolicy`].
//!
//! Why this module exists: the access policy is a security decision taken on every
//! message, not configuration parsing. It is built from the `[access]` section
//! ([`AccessConfig`]) and the bot's own user id, then used by the runtime; it is pure (no
//! I/O) and table-tested here. User ids are parsed strictly ([`split_user_id`]) because
//! they gate access. The old paths `crate::config::AccessPolicy` and
//! `crate::config::split_user_id` still work (re-exports).

use crate::config::AccessConfig;

/// The longest Matrix user id the spec allows.
const MAX_USER_ID_LEN: usize = 255;

/// Splits a Matrix user id into (localpart, server name); `None` when malformed.
///
/// Strict on purpose (it gates access): `@` + localpart of printable ASCII without `:`
/// (the spec's historical grammar) + `:` + a server name of ASCII letters, digits and
/// `.-:[]` (hostname or IP literal, optional port); at most 255 bytes. Non-ASCII ids are
/// malformed, which also shuts out look-alike characters.
pub fn split_user_id(user_id: &str) -> Option<(&str, &str)> {
    if user_id.len() > MAX_USER_ID_LEN {
        return None;
    }
    let rest = user_id.strip_prefix('@')?;
    let (local, server) = rest.split_once(':')?;
    let local_ok = !local.is_empty() && local.bytes().all(|b| (0x21..=0x7e).contains(&b));
    let server_ok = !server.is_empty()
        && server
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    (local_ok && server_ok).then_some((local, server))
}

/// `*` matches any run of characters (including none); everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    glob_bytes(pattern.as_bytes(), text.as_bytes(), |p, t| p == t)
}

/// [`glob_match`], ASCII letters matching either case (server names).
fn glob_match_ignore_case(pattern: &str, text: &str) -> bool {
    glob_bytes(pattern.as_bytes(), text.as_bytes(), |p, t| {
        p.eq_ignore_ascii_case(&t)
    })
}

/// The glob on UTF-8 bytes, without allocating (it runs on every message): the same as on
/// characters, because a literal character's first byte never matches inside another
/// character (UTF-8 continuation bytes are distinct from first bytes) and `*` is ASCII.
fn glob_bytes(p: &[u8], t: &[u8], same: impl Fn(u8, u8) -> bool) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if p.get(pi) == Some(&b'*') {
            star = Some((pi, ti));
            pi += 1;
        } else if p.get(pi).is_some_and(|&c| same(c, t[ti])) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// Whether `pattern` is a valid `access.allowed_users` / `access.admins` pattern.
pub(crate) fn is_valid_user_pattern(pattern: &str) -> bool {
    // A pattern is valid when replacing its wildcards gives a valid user id.
    split_user_id(&pattern.replace('*', "x")).is_some()
}

/// Whether `pattern` is a valid `access.allowed_homeservers` pattern.
pub(crate) fn is_valid_server_pattern(pattern: &str) -> bool {
    split_user_id(&format!("@x:{}", pattern.replace('*', "x"))).is_some()
}

/// Who may use the bot, and who administers it. Pure: no I/O, table-tested.
///
/// - A malformed user id is never allowed.
/// - With both `allowed_users` and `allowed_homeservers` empty, the users of the bot's own
///   homeserver (the server name of `matrix.user_id`) are allowed.
/// - Otherwise a user is allowed when an `allowed_users` pattern matches the id or an
///   `allowed_homeservers` pattern matches its server name.
/// - Admins are always allowed.
///
/// Localparts compare exactly; server names compare ASCII-case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    allowed_users: Vec<String>,
    allowed_homeservers: Vec<String>,
    admins: Vec<String>,
    own_server: Option<String>,
    namespaces: Vec<Namespace>,
}

/// The people of a messenger whose ids are not Matrix ids: `<prefix><id>` (Telegram:
/// `telegram:<user id>`). Ids compare exactly; `*` among the allowed allows everyone of it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Namespace {
    prefix: String,
    allowed: Vec<String>,
    admins: Vec<String>,
}

/// The longest id within a namespace.
const MAX_NAMESPACED_ID_LEN: usize = 64;

impl Namespace {
    /// The id within the namespace, when `person` is of it and well formed.
    fn local<'a>(&self, person: &'a str) -> Option<&'a str> {
        let id = person.strip_prefix(self.prefix.as_str())?;
        let ok = !id.is_empty()
            && id.len() <= MAX_NAMESPACED_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        ok.then_some(id)
    }
}

/// What the policy makes of a person ([`AccessPolicy::standing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// May not use the bot.
    Refused,
    /// May use the bot.
    Allowed,
    /// May use and administer the bot.
    Admin,
}

impl Standing {
    /// [`Standing::Allowed`] when `yes`, else [`Standing::Refused`].
    fn allowed_if(yes: bool) -> Self {
        if yes {
            Standing::Allowed
        } else {
            Standing::Refused
        }
    }
}

impl AccessPolicy {
    /// Builds the policy from `[access]` and the bot's own user id.
    pub fn new(access: &AccessConfig, bot_user_id: &str) -> Self {
        AccessPolicy {
            allowed_users: access.allowed_users.clone(),
            allowed_homeservers: access.allowed_homeservers.clone(),
            admins: access.admins.clone(),
            own_server: split_user_id(bot_user_id).map(|(_, s)| s.to_ascii_lowercase()),
            namespaces: Vec::new(),
        }
    }

    /// The policy, also deciding for the people whose ids start with `prefix` (another
    /// messenger's): `allowed` ids (or `*`, everyone) and `admins` ids, exactly. Without
    /// it, nobody of that messenger is allowed.
    pub fn with_namespace(mut self, prefix: &str, allowed: &[String], admins: &[String]) -> Self {
        self.namespaces.push(Namespace {
            prefix: prefix.to_owned(),
            allowed: allowed.to_vec(),
            admins: admins.to_vec(),
        });
        self
    }

    /// The namespace `user_id` belongs to and its id there, when it is not a Matrix id.
    fn namespaced<'a>(&self, user_id: &'a str) -> Option<(&Namespace, &'a str)> {
        self.namespaces
            .iter()
            .find_map(|ns| ns.local(user_id).map(|local| (ns, local)))
    }

    /// Whether `user_id` may use the bot.
    pub fn allows(&self, user_id: &str) -> bool {
        self.standing(user_id) != Standing::Refused
    }

    /// What the policy makes of `user_id`, in one pass (the intake asks both questions of
    /// every message).
    pub fn standing(&self, user_id: &str) -> Standing {
        if let Some((ns, local)) = self.namespaced(user_id) {
            if ns.admins.iter().any(|a| a == local) {
                return Standing::Admin;
            }
            return Standing::allowed_if(ns.allowed.iter().any(|a| a == local || a == "*"));
        }
        let Some((_, server)) = split_user_id(user_id) else {
            return Standing::Refused;
        };
        if self.admins.iter().any(|p| user_pattern_matches(p, user_id)) {
            return Standing::Admin;
        }
        if self.allowed_users.is_empty() && self.allowed_homeservers.is_empty() {
            let own = self.own_server.as_deref();
            return Standing::allowed_if(own.is_some_and(|own| own.eq_ignore_ascii_case(server)));
        }
        Standing::allowed_if(
            self.allowed_users
                .iter()
                .any(|p| user_pattern_matches(p, user_id))
                || self
                    .allowed_homeservers
                    .iter()
                    .any(|p| glob_match_ignore_case(p, server)),
        )
    }

    /// Whether `user_id` is one of the bot's administrators.
    pub fn is_admin(&self, user_id: &str) -> bool {
        self.standing(user_id) == Standing::Admin
    }
}

fn user_pattern_matches(pattern: &str, user_id: &str) -> bool {
    let (Some(pattern), Some((local, server))) =
        (pattern.strip_prefix('@'), split_user_id(user_id))
    else {
        return false;
    };
    let Some((local_pattern, server_pattern)) = pattern.split_once(':') else {
        return false;
    };
    glob_match(local_pattern, local) && glob_match_ignore_case(server_pattern, server)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The standing that `allows` and `is_admin` answering so amounts to.
    fn standing(allowed: bool, admin: bool) -> Standing {
        match (allowed, admin) {
            (_, true) => Standing::Admin,
            (true, false) => Standing::Allowed,
            (false, false) => Standing::Refused,
        }
    }

    fn policy(users: &[&str], servers: &[&str], admins: &[&str]) -> AccessPolicy {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        AccessPolicy::new(
            &AccessConfig {
                allowed_users: strings(users),
                allowed_homeservers: strings(servers),
                admins: strings(admins),
            },
            "@surfaces:example.org",
        )
    }

    #[test]
    fn access_default_is_own_homeserver() {
        let p = policy(&[], &[], &[]);
        let table = [
            ("@alice:example.org", true),
            ("@alice:EXAMPLE.org", true),
            ("@alice:other.org", false),
            ("@alice:sub.example.org", false),
            ("@alice:example.org.evil.com", false),
            ("alice:example.org", false),
            ("@alice", false),
            ("@:example.org", false),
            ("@alice:", false),
            ("", false),
            ("@al ice:example.org", false),
            ("@alice:example.org\n", false),
            ("@jösé:example.org", false),
            ("@alice:exämple.org", false),
        ];
        for (user, expected) in table {
            assert_eq!(p.allows(user), expected, "{user:?}");
            assert!(!p.is_admin(user), "{user:?}");
        }
        // A bot with a malformed id of its own allows nobody by default.
        let p = AccessPolicy::new(&AccessConfig::default(), "nonsense");
        assert!(!p.allows("@alice:example.org"));
    }

    #[test]
    fn namespaced_people_are_decided_by_their_own_lists() {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let p = policy(&["@*:friends.org"], &[], &["@root:example.org"]).with_namespace(
            "telegram:",
            &strings(&["42"]),
            &strings(&["7"]),
        );
        let table = [
            // (user, allowed, admin)
            ("telegram:42", true, false),
            ("telegram:7", true, true),
            ("telegram:43", false, false),
            ("telegram:", false, false),
            ("telegram:42 ", false, false),
            ("telegram:4/2", false, false),
            ("other:42", false, false),
            ("@bob:friends.org", true, false),
            ("@root:example.org", true, true),
        ];
        for (user, allowed, admin) in table {
            assert_eq!(p.allows(user), allowed, "{user:?}");
            assert_eq!(p.is_admin(user), admin, "{user:?}");
            assert_eq!(p.standing(user), standing(allowed, admin), "{user:?}");
        }
        let everyone = policy(&[], &[], &[]).with_namespace("telegram:", &strings(&["*"]), &[]);
        assert!(everyone.allows("telegram:12345"));
        assert!(!everyone.is_admin("telegram:12345"));
        // Without the namespace, nobody of that messenger is allowed.
        assert!(!policy(&[], &[], &[]).allows("telegram:42"));
    }

    #[test]
    fn access_patterns_table() {
        let p = policy(
            &[
                "@*:friends.org",
                "@bob:other.org",
                "@team-*:corp.org",
                "@*x*:ab.org",
            ],
            &["partner.net", "*.campus.edu"],
            &["@root:example.org", "@ops-*:example.org"],
        );
        let table: &[(&str, bool, bool)] = &[
            // (user, allowed, admin)
            ("@anyone:friends.org", true, false),
            ("@anyone:FRIENDS.ORG", true, false),
            ("@anyone:notfriends.org", false, false),
            ("@anyone:friends.org.evil", false, false),
            ("@bob:other.org", true, false),
            ("@Bob:other.org", false, false),
            ("@bobby:other.org", false, false),
            ("@team-a:corp.org", true, false),
            ("@team-:corp.org", true, false),
            ("@teams:corp.org", false, false),
            ("@x:ab.org", true, false),
            ("@axb:ab.org", true, false),
            ("@ab:ab.org", false, false),
            ("@carol:partner.net", true, false),
            ("@carol:partner.net:8448", false, false),
            ("@carol:a.campus.edu", true, false),
            ("@carol:campus.edu", false, false),
            // The bot's own homeserver is no longer implied once lists are set.
            ("@alice:example.org", false, false),
            // Admins are always allowed.
            ("@root:example.org", true, true),
            ("@ops-1:example.org", true, true),
            ("@ROOT:example.org", false, false),
            // Malformed and unicode ids.
            ("@:friends.org", false, false),
            ("@bob:", false, false),
            ("bob:other.org", false, false),
            ("@bоb:other.org", false, false), // Cyrillic о
            ("@ünï:friends.org", false, false),
            ("@x:frïends.org", false, false),
            ("@a b:friends.org", false, false),
        ];
        for &(user, allowed, admin) in table {
            assert_eq!(p.allows(user), allowed, "allows({user:?})");
            assert_eq!(p.is_admin(user), admin, "is_admin({user:?})");
            assert_eq!(
                p.standing(user),
                standing(allowed, admin),
                "standing({user:?})"
            );
        }
    }

    #[test]
    fn glob_matching() {
        let table = [
            ("*", "", true),
            ("*", "abc", true),
            ("a*c", "abc", true),
            ("a*c", "ac", true),
            ("a*c", "abd", false),
            ("*.org", "example.org", true),
            ("*.org", "org", false),
            ("a**b", "ab", true),
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("*a*b*", "xxaxxbxx", true),
            ("é*", "éa", true),
            ("*é", "aé", true),
            ("a*é*z", "aüéüz", true),
            ("a?", "aé", false),
            ("é", "e", false),
            ("*ü", "aé", false),
        ];
        for (p, t, expected) in table {
            assert_eq!(glob_match(p, t), expected, "{p:?} vs {t:?}");
        }
    }

    #[test]
    fn server_globs_ignore_ascii_case_only() {
        let table = [
            ("*.Example.ORG", "matrix.example.org", true),
            ("EXAMPLE.org", "example.ORG", true),
            ("example.org", "example.com", false),
            ("É*", "é", false),
        ];
        for (p, t, expected) in table {
            assert_eq!(glob_match_ignore_case(p, t), expected, "{p:?} vs {t:?}");
        }
    }

    #[test]
    fn user_id_parsing() {
        assert_eq!(
            split_user_id("@surfaces:example.org"),
            Some(("surfaces", "example.org"))
        );
        assert_eq!(split_user_id("@a:[::1]:8448"), Some(("a", "[::1]:8448")));
        assert_eq!(split_user_id(&format!("@{}:e.org", "a".repeat(300))), None);
    }
}
