//! The settings of an OpenAI-compatible agent (`kind = "openai"`).
//!
//! Why this exists: such a server (vLLM, llama.cpp, Ollama, LiteLLM, hosted providers) knows
//! a model, not a conversation: Surfaces sends the model's name, the generation settings and
//! each chat's history it keeps itself, bounded so a long chat never outgrows the model's
//! window (`agent::openai::history`).

/// Default `agents[].history_max_messages`.
pub const DEFAULT_HISTORY_MAX_MESSAGES: usize = 200;
/// Default `agents[].history_max_tokens` (estimated: see `agent::openai::history`).
pub const DEFAULT_HISTORY_MAX_TOKENS: u64 = 8_000;
/// Highest `agents[].temperature` the API accepts.
pub const MAX_TEMPERATURE: f64 = 2.0;

/// How an OpenAI-compatible agent is asked.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiSettings {
    /// The model's name, as the server knows it (`agents[].model`).
    pub model: String,
    /// The system prompt sent first in every request, if any.
    pub system_prompt: Option<String>,
    /// Sampling temperature (0 to 2), if set; else the server's default.
    pub temperature: Option<f64>,
    /// Most tokens of one reply, if set; else the server's default.
    pub max_tokens: Option<u32>,
    /// Whether the model takes images: sent as image parts (needs `workspace`, where incoming
    /// files land); other files are refused with a notice.
    pub images: bool,
    /// Most messages of history sent (the oldest dropped first).
    pub history_max_messages: usize,
    /// Most estimated tokens of history sent (the oldest dropped first).
    pub history_max_tokens: u64,
}

// Temperatures are checked to be finite (0 to 2): equality is reflexive.
impl Eq for OpenAiSettings {}

impl Default for OpenAiSettings {
    fn default() -> Self {
        Self {
            model: String::new(),
            system_prompt: None,
            temperature: None,
            max_tokens: None,
            images: false,
            history_max_messages: DEFAULT_HISTORY_MAX_MESSAGES,
            history_max_tokens: DEFAULT_HISTORY_MAX_TOKENS,
        }
    }
}
