//! The agent card: how an A2A agent says who it is and where it answers. Pure.
//!
//! Why this file exists: Surfaces reads the card at `/.well-known/agent-card.json` (at
//! start-up and on every health check) and must refuse, with a reason an operator can act
//! on, a card it cannot use: one that offers no JSON-RPC interface, or only protocol
//! versions other than the one Surfaces speaks ([`super::wire::PROTOCOL_VERSION`]).

use serde::Deserialize;

use super::wire::{JSONRPC_BINDING, PROTOCOL_VERSION};
use crate::agent::about::{
    one_line, AgentAbout, Skill, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, MAX_SKILLS,
};

/// Where the card is, under the agent's base URL.
pub const CARD_PATH: &str = "/.well-known/agent-card.json";

/// The parts of a card Surfaces reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawCard {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    supported_interfaces: Vec<RawInterface>,
    #[serde(default)]
    capabilities: RawCapabilities,
    #[serde(default)]
    skills: Vec<RawSkill>,
    /// 0.3 cards name their version here.
    #[serde(default)]
    protocol_version: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInterface {
    #[serde(default)]
    url: String,
    #[serde(default)]
    protocol_binding: String,
    #[serde(default)]
    protocol_version: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct RawCapabilities {
    #[serde(default)]
    streaming: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct RawSkill {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

/// A card Surfaces can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// Where JSON-RPC requests go.
    pub rpc_url: String,
    /// Whether the agent streams (`SendStreamingMessage`, `SubscribeToTask`).
    pub streaming: bool,
    /// The agent's version.
    pub version: String,
    /// Its name, description and skills.
    pub about: AgentAbout,
}

/// Why a card cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    /// No JSON-RPC interface at all.
    #[error("the agent card offers no JSONRPC interface (it offers: {offered})")]
    NoJsonRpc { offered: String },
    /// JSON-RPC, but only in other protocol versions.
    #[error("the agent card offers JSONRPC only in protocol version(s) {versions}; Surfaces speaks {PROTOCOL_VERSION}")]
    Version { versions: String },
    /// The interface's URL is not http(s).
    #[error("the agent card's JSONRPC URL {0:?} is not an http(s) URL")]
    BadUrl(String),
}

/// Whether `version` is the protocol version Surfaces speaks (the patch level aside).
fn speaks(version: &str) -> bool {
    let mut parts = version.trim().split('.');
    let (major, minor) = (parts.next(), parts.next().unwrap_or("0"));
    let want: Vec<&str> = PROTOCOL_VERSION.split('.').collect();
    major == want.first().copied() && Some(minor) == want.get(1).copied()
}

impl RawCard {
    /// The card, checked.
    pub fn check(self) -> Result<Card, CardError> {
        let jsonrpc: Vec<&RawInterface> = self
            .supported_interfaces
            .iter()
            .filter(|i| i.protocol_binding.eq_ignore_ascii_case(JSONRPC_BINDING))
            .collect();
        if jsonrpc.is_empty() {
            let mut offered: Vec<String> = self
                .supported_interfaces
                .iter()
                .map(|i| i.protocol_binding.clone())
                .collect();
            if offered.is_empty() {
                offered.push(match &self.protocol_version {
                    Some(v) => format!("no supportedInterfaces; a protocol {v} card"),
                    None => "nothing".to_owned(),
                });
            }
            return Err(CardError::NoJsonRpc {
                offered: offered.join(", "),
            });
        }
        let Some(interface) = jsonrpc.iter().find(|i| speaks(&i.protocol_version)) else {
            let versions: Vec<&str> = jsonrpc
                .iter()
                .map(|i| i.protocol_version.as_str())
                .collect();
            return Err(CardError::Version {
                versions: versions.join(", "),
            });
        };
        match url::Url::parse(&interface.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => return Err(CardError::BadUrl(interface.url.clone())),
        }
        Ok(Card {
            rpc_url: interface.url.clone(),
            streaming: self.capabilities.streaming.unwrap_or(false),
            version: self.version,
            about: AgentAbout {
                name: one_line(&self.name, MAX_NAME_CHARS),
                description: one_line(&self.description, MAX_DESCRIPTION_CHARS),
                skills: self
                    .skills
                    .into_iter()
                    .map(|s| {
                        let name = if s.name.trim().is_empty() {
                            s.id
                        } else {
                            s.name
                        };
                        Skill {
                            name: one_line(&name, MAX_NAME_CHARS),
                            description: one_line(&s.description, MAX_DESCRIPTION_CHARS),
                        }
                    })
                    .filter(|s| !s.name.is_empty())
                    .take(MAX_SKILLS)
                    .collect(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(json: serde_json::Value) -> Result<Card, CardError> {
        serde_json::from_value::<RawCard>(json)
            .map_err(|e| CardError::BadUrl(e.to_string()))?
            .check()
    }

    #[test]
    fn cards_are_checked() {
        let good = serde_json::json!({
            "name": "Test Agent", "description": "For tests.", "version": "1.0.0",
            "supportedInterfaces": [
                {"url": "http://a/grpc", "protocolBinding": "GRPC", "protocolVersion": "1.0"},
                {"url": "http://a/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
            ],
            "capabilities": {"streaming": true},
            "skills": [{"id": "echo", "name": "Echo", "description": "Repeats."},
                       {"id": "files", "name": "", "description": "Files."}]
        });
        let c = card(good.clone()).ok();
        let c = c.as_ref();
        assert_eq!(c.map(|c| c.rpc_url.as_str()), Some("http://a/"));
        assert_eq!(c.map(|c| c.streaming), Some(true));
        let skills: Vec<&str> = c
            .map(|c| c.about.skills.iter().map(|s| s.name.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(skills, ["Echo", "files"]);

        let mut no_stream = good.clone();
        no_stream["capabilities"] = serde_json::json!({});
        assert_eq!(card(no_stream).map(|c| c.streaming), Ok(false));

        let mut patch = good.clone();
        patch["supportedInterfaces"][1]["protocolVersion"] = "1.0.2".into();
        assert!(card(patch).is_ok());

        let mut old = good.clone();
        old["supportedInterfaces"][1]["protocolVersion"] = "0.3".into();
        assert_eq!(
            card(old),
            Err(CardError::Version {
                versions: "0.3".into()
            })
        );

        let mut grpc_only = good.clone();
        grpc_only["supportedInterfaces"] = serde_json::json!([
            {"url": "http://a/", "protocolBinding": "GRPC", "protocolVersion": "1.0"}
        ]);
        assert_eq!(
            card(grpc_only),
            Err(CardError::NoJsonRpc {
                offered: "GRPC".into()
            })
        );

        let legacy = serde_json::json!({"name": "Old", "url": "http://a/",
                                        "protocolVersion": "0.3.0"});
        assert!(matches!(card(legacy), Err(CardError::NoJsonRpc { .. })));

        let mut noisy = good.clone();
        noisy["description"] = "line one\n- [link](http://evil)\n".into();
        noisy["skills"] = serde_json::Value::Array(
            (0..50)
                .map(|i| serde_json::json!({"id": format!("s{i}"), "name": ""}))
                .collect(),
        );
        let noisy = card(noisy).ok();
        assert_eq!(
            noisy.as_ref().map(|c| c.about.description.as_str()),
            Some("line one - [link](http://evil)")
        );
        assert_eq!(noisy.map(|c| c.about.skills.len()), Some(MAX_SKILLS));

        let mut bad_url = good;
        bad_url["supportedInterfaces"][1]["url"] = "file:///etc/passwd".into();
        assert!(matches!(card(bad_url), Err(CardError::BadUrl(_))));
    }
}
