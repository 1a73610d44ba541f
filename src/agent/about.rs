//! What an agent says about itself, for `!agent` and `!help`.
//!
//! Why this exists: an A2A agent publishes its name, description and skills in its agent
//! card, read at start-up and again on every health check; the rooms show them where the
//! configuration leaves the name or description empty. The card can change while Surfaces
//! runs, so the routes hold a shared cell the agent's client fills in. The agent writes
//! these words, so they are tidied before anyone sees them: one line each, bounded
//! ([`one_line`]), and a bounded number of skills.

use std::sync::Arc;

use parking_lot::RwLock;

/// One skill an agent offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skill {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
}

/// An agent's own account of itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentAbout {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Its skills.
    pub skills: Vec<Skill>,
}

/// The latest account, shared by the client that reads it and the routes that show it.
pub type SharedAbout = Arc<RwLock<Option<AgentAbout>>>;

/// Longest agent or skill name shown, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest description shown, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 300;
/// Most skills shown.
pub const MAX_SKILLS: usize = 20;

/// `text` as one line of at most `max` characters: runs of whitespace and control
/// characters become one space, and a longer text is cut, ending in `…`.
pub fn one_line(text: &str, max: usize) -> String {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    let line = words.join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// The name shown for agent `id`: the configured one (`configured` differs from the id,
/// which is the default), else the name the agent gives itself, else the id.
pub fn shown_name(id: &str, configured: &str, said: Option<&AgentAbout>) -> String {
    if configured != id {
        return configured.to_owned();
    }
    said.map(|about| about.name.as_str())
        .filter(|name| !name.trim().is_empty())
        .unwrap_or(configured)
        .to_owned()
}

/// The description shown: the configured one, else what the agent says it is for.
pub fn shown_description(configured: &str, said: Option<&AgentAbout>) -> String {
    if !configured.trim().is_empty() {
        return configured.to_owned();
    }
    said.map(|about| about.description.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{one_line, shown_description, shown_name, AgentAbout};

    #[test]
    fn config_comes_first_then_the_card() {
        let card = AgentAbout {
            name: "Card Name".to_owned(),
            description: "From the card".to_owned(),
            skills: vec![],
        };
        let blank = AgentAbout::default();
        for (id, configured, said, want) in [
            ("a", "Mine", Some(&card), "Mine"),
            ("a", "a", Some(&card), "Card Name"),
            ("a", "a", Some(&blank), "a"),
            ("a", "a", None, "a"),
        ] {
            assert_eq!(shown_name(id, configured, said), want, "{configured:?}");
        }
        for (configured, said, want) in [
            ("Configured", Some(&card), "Configured"),
            ("", Some(&card), "From the card"),
            ("  ", None, ""),
        ] {
            assert_eq!(shown_description(configured, said), want, "{configured:?}");
        }
    }

    #[test]
    fn one_line_tidies_what_agents_write() {
        for (text, max, want) in [
            ("Echo", 10, "Echo"),
            ("  two\n\nlines\t here ", 40, "two lines here"),
            ("- a\n- fake list", 40, "- a - fake list"),
            ("bell\u{7}ring", 40, "bell ring"),
            ("abcdefghij", 10, "abcdefghij"),
            ("abcdefghijk", 10, "abcdefghi…"),
            ("abcd efghijk", 6, "abcd…"),
            ("ééééééé", 4, "ééé…"),
            ("", 5, ""),
        ] {
            assert_eq!(one_line(text, max), want, "{text:?} within {max}");
        }
    }
}
