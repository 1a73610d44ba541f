//! [`Config::check`]: validation of the whole configuration.
//!
//! Why this file exists: nothing connects anywhere before the configuration is known to be
//! usable, and an operator fixing it gets every problem at once, not one per restart. All
//! the rules live here, apart from the parsing: required keys, URLs, user id and homeserver
//! patterns, agent ids and the single default, value ranges.

use super::agents::{AgentKind, AgentsSource};
use super::error::{env_var_for, ConfigError};
use super::legacy::{LEGACY_AGENT_BASE_URL_ENV, LEGACY_AGENT_TOKEN_ENV};
use super::secret::Secret;
use super::sections::{OpsConfig, SyncConfig, MAX_SYNC_PAGE, MIN_OPS_TOKEN_CHARS};
use super::Config;
use crate::access::{is_valid_server_pattern, is_valid_user_pattern, split_user_id};

impl Config {
    /// Validates the whole configuration and returns every problem found.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.matrix_enabled() {
            self.check_matrix(&mut problems);
        }
        if let Some(telegram) = &self.telegram {
            telegram.check(&mut problems);
        }
        if self.data_dir.as_os_str().is_empty() {
            problems.push(ConfigError::invalid("data_dir", "must not be empty"));
        }
        self.check_access(&mut problems);
        self.check_agents(&mut problems);
        if self.log.filter.trim().is_empty() {
            problems.push(ConfigError::invalid("log.filter", "must not be empty"));
        } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            problems.push(ConfigError::invalid(
                "log.filter",
                format!("{:?} is not a valid log filter: {e}", self.log.filter),
            ));
        }
        let sup = &self.supervision;
        if sup.backoff_min_ms == 0 {
            problems.push(ConfigError::invalid(
                "supervision.backoff_min_ms",
                "must be at least 1",
            ));
        }
        if sup.backoff_max_ms < sup.backoff_min_ms {
            problems.push(ConfigError::invalid(
                "supervision.backoff_max_ms",
                format!(
                    "{} is smaller than supervision.backoff_min_ms ({})",
                    sup.backoff_max_ms, sup.backoff_min_ms
                ),
            ));
        }
        if sup.restart_period_secs == 0 {
            problems.push(ConfigError::invalid(
                "supervision.restart_period_secs",
                "must be at least 1",
            ));
        }
        if self.matrix.undecryptable_grace_secs == 0 {
            problems.push(ConfigError::invalid(
                "matrix.undecryptable_grace_secs",
                "must be at least 1",
            ));
        }
        if self.files.max_bytes == 0 {
            problems.push(ConfigError::invalid(
                "files.max_bytes",
                "must be at least 1",
            ));
        }
        self.sync.check(&mut problems);
        self.limits.check(&mut problems);
        self.ops.check(&mut problems);
        self.replies.check(&mut problems);
        self.streaming.check(&mut problems);
        ConfigError::from_problems(problems)
    }

    fn check_matrix(&self, problems: &mut Vec<ConfigError>) {
        let m = &self.matrix;
        if m.homeserver_url.trim().is_empty() {
            problems.push(ConfigError::invalid(
                "matrix.homeserver_url",
                "missing: the URL of the bot's homeserver, e.g. https://matrix.example.org",
            ));
        } else if let Err(message) = check_http_url(&m.homeserver_url) {
            problems.push(ConfigError::invalid("matrix.homeserver_url", message));
        }
        if m.user_id.trim().is_empty() {
            problems.push(ConfigError::invalid(
                "matrix.user_id",
                "missing: the bot's Matrix user id, e.g. @surfaces:example.org",
            ));
        } else if split_user_id(&m.user_id).is_none() {
            problems.push(ConfigError::invalid(
                "matrix.user_id",
                format!(
                    "{:?} is not a Matrix user id like @surfaces:example.org",
                    m.user_id
                ),
            ));
        }
        let has = |s: &Option<Secret>| s.as_ref().is_some_and(|s| !s.is_empty());
        if !has(&m.password) && !has(&m.access_token) {
            problems.push(ConfigError::invalid(
                "matrix.password",
                format!(
                    "missing: set matrix.password or matrix.access_token ({})",
                    env_var_for("matrix.access_token")
                ),
            ));
        }
        if m.device_name.trim().is_empty() {
            problems.push(ConfigError::invalid(
                "matrix.device_name",
                "must not be empty",
            ));
        }
    }

    fn check_access(&self, problems: &mut Vec<ConfigError>) {
        let a = &self.access;
        for (field, patterns) in [("allowed_users", &a.allowed_users), ("admins", &a.admins)] {
            for (i, pattern) in patterns.iter().enumerate() {
                if !is_valid_user_pattern(pattern) {
                    problems.push(ConfigError::invalid(
                        format!("access.{field}[{i}]"),
                        format!(
                            "{pattern:?} is not a user id pattern like @alice:example.org \
                             or @*:example.org"
                        ),
                    ));
                }
            }
        }
        for (i, server) in a.allowed_homeservers.iter().enumerate() {
            if !is_valid_server_pattern(server) {
                problems.push(ConfigError::invalid(
                    format!("access.allowed_homeservers[{i}]"),
                    format!("{server:?} is not a homeserver name like example.org"),
                ));
            }
        }
    }

    /// What is wrong with an OpenAI-compatible agent's settings.
    fn openai_problems(&self, i: usize, openai: &super::OpenAiSettings) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if openai.model.trim().is_empty() {
            problems.push(self.agent_problem(
                i,
                "model",
                "missing: an openai agent needs the model's name, as its server knows it".into(),
            ));
        }
        if let Some(t) = openai.temperature {
            if !(0.0..=super::MAX_TEMPERATURE).contains(&t) {
                problems.push(self.agent_problem(
                    i,
                    "temperature",
                    format!("{t} is not between 0 and {}", super::MAX_TEMPERATURE),
                ));
            }
        }
        if openai.images && self.agents[i].workspace.is_none() {
            problems.push(self.agent_problem(
                i,
                "workspace",
                "missing: images = true needs the directory where incoming files land".into(),
            ));
        }
        if openai.max_tokens == Some(0) {
            problems.push(self.agent_problem(i, "max_tokens", "must be at least 1".into()));
        }
        if openai.history_max_messages == 0 {
            problems.push(self.agent_problem(
                i,
                "history_max_messages",
                "must be at least 1".into(),
            ));
        }
        if openai.history_max_tokens == 0 {
            problems.push(self.agent_problem(i, "history_max_tokens", "must be at least 1".into()));
        }
        problems
    }

    fn agent_problem(&self, index: usize, field: &str, message: String) -> ConfigError {
        let key = format!("agents[{index}].{field}");
        match &self.agents_source {
            AgentsSource::LegacyYaml(path) => ConfigError::InvalidIn {
                key,
                path: path.clone(),
                message,
            },
            AgentsSource::LegacyEnv => ConfigError::Invalid {
                key,
                env: if field == "token" {
                    LEGACY_AGENT_TOKEN_ENV
                } else {
                    LEGACY_AGENT_BASE_URL_ENV
                }
                .to_owned(),
                message,
            },
            AgentsSource::Configured | AgentsSource::BuiltinEcho => {
                ConfigError::invalid(key, message)
            }
        }
    }

    fn check_agents(&self, problems: &mut Vec<ConfigError>) {
        if self.agents.is_empty() {
            problems.push(ConfigError::invalid("agents", "no agent is configured"));
            return;
        }
        let mut first_default: Option<usize> = None;
        for (i, agent) in self.agents.iter().enumerate() {
            if agent.id.is_empty() {
                problems.push(self.agent_problem(i, "id", "missing".to_owned()));
            } else if !is_valid_agent_id(&agent.id) {
                problems.push(self.agent_problem(
                    i,
                    "id",
                    format!("{:?} may only contain a-z, 0-9, _ and -", agent.id),
                ));
            } else if let Some(j) = self.agents[..i].iter().position(|a| a.id == agent.id) {
                problems.push(self.agent_problem(
                    i,
                    "id",
                    format!("{:?} is already the id of agents[{j}]", agent.id),
                ));
            }
            if agent.name.trim().is_empty() {
                problems.push(self.agent_problem(i, "name", "must not be empty".to_owned()));
            }
            if agent.kind == AgentKind::Openai {
                problems.extend(self.openai_problems(i, &agent.openai));
            }
            if matches!(
                agent.kind,
                AgentKind::Http | AgentKind::Openai | AgentKind::A2a
            ) {
                match agent.base_url.as_deref().map(str::trim) {
                    None | Some("") => problems.push(self.agent_problem(
                        i,
                        "base_url",
                        format!("missing: an {} agent needs the URL of its API", agent.kind),
                    )),
                    Some(url) => {
                        if let Err(message) = check_http_url(url) {
                            problems.push(self.agent_problem(i, "base_url", message));
                        }
                    }
                }
            }
            if agent.timeout_secs == 0 {
                problems.push(self.agent_problem(i, "timeout_secs", "must be at least 1".into()));
            }
            if agent.max_turn_secs < agent.timeout_secs {
                problems.push(self.agent_problem(
                    i,
                    "max_turn_secs",
                    format!(
                        "{} is shorter than agents[{i}].timeout_secs ({})",
                        agent.max_turn_secs, agent.timeout_secs
                    ),
                ));
            }
            if agent.max_concurrent_turns == 0 {
                problems.push(self.agent_problem(
                    i,
                    "max_concurrent_turns",
                    "must be at least 1".into(),
                ));
            }
            if agent.default {
                match first_default {
                    None => first_default = Some(i),
                    Some(j) => problems.push(self.agent_problem(
                        i,
                        "default",
                        format!("only one agent can be the default, and agents[{j}] already is"),
                    )),
                }
            }
        }
        if first_default.is_none() {
            problems.push(ConfigError::invalid(
                "agents",
                "no agent is marked as the default",
            ));
        }
    }
}

impl SyncConfig {
    /// The `[sync]` rules, for [`Config::check`].
    fn check(&self, problems: &mut Vec<ConfigError>) {
        for (key, value) in [
            ("sync.timeline_limit", self.timeline_limit),
            ("sync.backfill_page_size", self.backfill_page_size),
        ] {
            if value == 0 || value > MAX_SYNC_PAGE {
                problems.push(ConfigError::invalid(
                    key,
                    format!("{value} is not between 1 and {MAX_SYNC_PAGE}"),
                ));
            }
        }
        if self.catch_up_max_messages == 0 {
            problems.push(ConfigError::invalid(
                "sync.catch_up_max_messages",
                "must be at least 1",
            ));
        }
        if self.catch_up_max_age_secs == 0 {
            problems.push(ConfigError::invalid(
                "sync.catch_up_max_age_secs",
                "must be at least 1",
            ));
        }
    }
}

impl OpsConfig {
    /// The `[ops]` rules, for [`Config::check`]: a token long enough to resist guessing and
    /// sendable in a header; allowed hosts that are host names.
    fn check(&self, problems: &mut Vec<ConfigError>) {
        if let Some(token) = self.token.as_ref().filter(|t| !t.is_empty()) {
            let token = token.expose();
            if token.chars().count() < MIN_OPS_TOKEN_CHARS {
                problems.push(ConfigError::invalid(
                    "ops.token",
                    format!("must be at least {MIN_OPS_TOKEN_CHARS} characters long"),
                ));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                problems.push(ConfigError::invalid(
                    "ops.token",
                    "must be printable ASCII without spaces (it is sent in a header)",
                ));
            }
        }
        for entry in &self.allowed_hosts {
            if !crate::ops::guard::valid_allowed_host(entry) {
                problems.push(ConfigError::invalid(
                    "ops.allowed_hosts",
                    format!("{entry:?} is not a host name or address (no port, no scheme)"),
                ));
            }
        }
    }
}

fn check_http_url(value: &str) -> Result<(), String> {
    match url::Url::parse(value.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(format!("{value:?} is not an http(s) URL")),
    }
}

fn is_valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_support::load_err;

    /// Every check names the dotted key and the env var that sets it.
    #[test]
    fn check_errors_name_key_and_env_var() {
        let base = "[matrix]\nhomeserver_url = \"https://m.example.org\"\n\
                    user_id = \"@s:example.org\"\npassword = \"p\"\n";
        let cases: Vec<(String, &str, &str)> = vec![
            (
                "[matrix]\nhomeserver_url = \"ftp://x\"\nuser_id = \"@s:e.org\"\npassword = \"p\"\n"
                    .into(),
                "matrix.homeserver_url",
                "SURFACES__MATRIX__HOMESERVER_URL",
            ),
            (
                "[matrix]\nhomeserver_url = \"https://m.e.org\"\nuser_id = \"surfaces\"\npassword = \"p\"\n"
                    .into(),
                "matrix.user_id",
                "SURFACES__MATRIX__USER_ID",
            ),
            (
                "[matrix]\nhomeserver_url = \"https://m.e.org\"\nuser_id = \"@s:e.org\"\n".into(),
                "matrix.password",
                "SURFACES__MATRIX__PASSWORD",
            ),
            (
                format!("{base}device_name = \"\"\n"),
                "matrix.device_name",
                "SURFACES__MATRIX__DEVICE_NAME",
            ),
            (
                format!("data_dir = \"\"\n{base}"),
                "data_dir",
                "SURFACES__DATA_DIR",
            ),
            (
                format!("{base}[access]\nallowed_users = [\"@ok:e.org\", \"alice\"]\n"),
                "access.allowed_users[1]",
                "SURFACES__ACCESS__ALLOWED_USERS",
            ),
            (
                format!("{base}[access]\nallowed_homeservers = [\"bad host\"]\n"),
                "access.allowed_homeservers[0]",
                "SURFACES__ACCESS__ALLOWED_HOMESERVERS",
            ),
            (
                format!("{base}[access]\nadmins = [\"@:e.org\"]\n"),
                "access.admins[0]",
                "SURFACES__ACCESS__ADMINS",
            ),
            (
                format!(
                    "{base}[[agents]]\nid = \"a\"\nbase_url = \"http://a\"\n\
                     [[agents]]\nid = \"b\"\nbase_url = \"http://b\"\n\
                     [[agents]]\nid = \"c\"\nbase_url = \"mailto:c@d\"\n"
                ),
                "agents[2].base_url",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nid = \"a\"\nkind = \"http\"\n"),
                "agents[0].base_url",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nid = \"a\"\n"),
                "agents[0].kind",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nid = \"Bad Id\"\nkind = \"echo\"\n"),
                "agents[0].id",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nname = \"x\"\nkind = \"echo\"\n"),
                "agents[0].id",
                "SURFACES__AGENTS",
            ),
            (
                format!(
                    "{base}[[agents]]\nid = \"a\"\nkind = \"echo\"\n\
                     [[agents]]\nid = \"a\"\nkind = \"echo\"\n"
                ),
                "agents[1].id",
                "SURFACES__AGENTS",
            ),
            (
                format!(
                    "{base}[[agents]]\nid = \"a\"\nkind = \"echo\"\ndefault = true\n\
                     [[agents]]\nid = \"b\"\nkind = \"echo\"\ndefault = true\n"
                ),
                "agents[1].default",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nid = \"a\"\nkind = \"echo\"\nmax_concurrent_turns = 0\n"),
                "agents[0].max_concurrent_turns",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nid = \"a\"\nkind = \"echo\"\ntimeout_secs = 0\n"),
                "agents[0].timeout_secs",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nid = \"a\"\nkind = \"echo\"\ntimeout_secs = 300\nmax_turn_secs = 60\n"),
                "agents[0].max_turn_secs",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nid = \"a\"\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nmodel = \"m\"\nimages = true\n"),
                "agents[0].workspace",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nid = \"a\"\nkind = \"openai\"\nbase_url = \"http://x/v1\"\n"),
                "agents[0].model",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nid = \"a\"\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nmodel = \"m\"\ntemperature = 3.5\n"),
                "agents[0].temperature",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nid = \"a\"\nkind = \"a2a\"\n"),
                "agents[0].base_url",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[[agents]]\nid = \"a\"\nkind = \"a2a\"\nbase_url = \"ftp://x\"\n"),
                "agents[0].base_url",
                "SURFACES__AGENTS",
            ),
            (
                format!("{base}[log]\nfilter = \"info,surfaces=notalevel\"\n"),
                "log.filter",
                "SURFACES__LOG__FILTER",
            ),
            (
                format!("{base}[supervision]\nbackoff_min_ms = 500\nbackoff_max_ms = 100\n"),
                "supervision.backoff_max_ms",
                "SURFACES__SUPERVISION__BACKOFF_MAX_MS",
            ),
            (
                format!("{base}[supervision]\nbackoff_min_ms = 0\n"),
                "supervision.backoff_min_ms",
                "SURFACES__SUPERVISION__BACKOFF_MIN_MS",
            ),
            (
                format!("{base}[supervision]\nrestart_period_secs = 0\n"),
                "supervision.restart_period_secs",
                "SURFACES__SUPERVISION__RESTART_PERIOD_SECS",
            ),
            (
                format!("{base}[sync]\ntimeline_limit = 0\n"),
                "sync.timeline_limit",
                "SURFACES__SYNC__TIMELINE_LIMIT",
            ),
            (
                format!("{base}[sync]\nbackfill_page_size = 5000\n"),
                "sync.backfill_page_size",
                "SURFACES__SYNC__BACKFILL_PAGE_SIZE",
            ),
            (
                format!("{base}[sync]\ncatch_up_max_messages = 0\n"),
                "sync.catch_up_max_messages",
                "SURFACES__SYNC__CATCH_UP_MAX_MESSAGES",
            ),
            (
                format!("{base}[sync]\ncatch_up_max_age_secs = 0\n"),
                "sync.catch_up_max_age_secs",
                "SURFACES__SYNC__CATCH_UP_MAX_AGE_SECS",
            ),
            (
                format!("agents_file = \"missing.yaml\"\n{base}"),
                "agents_file",
                "SURFACES__AGENTS_FILE",
            ),
            // Type errors found while extracting name the key too.
            (
                format!("{base}encrypt_rooms = \"maybe\"\n"),
                "matrix.encrypt_rooms",
                "SURFACES__MATRIX__ENCRYPT_ROOMS",
            ),
            (
                format!("{base}[ops]\nbind = \"not an address\"\n"),
                "ops.bind",
                "SURFACES__OPS__BIND",
            ),
            (
                format!("{base}[ops]\ntoken = \"short\"\n"),
                "ops.token",
                "SURFACES__OPS__TOKEN",
            ),
            (
                format!("{base}[ops]\ntoken = \"long enough but with spaces\"\n"),
                "ops.token",
                "SURFACES__OPS__TOKEN",
            ),
            (
                format!("{base}[ops]\nallowed_hosts = [\"surfaces:9797\"]\n"),
                "ops.allowed_hosts",
                "SURFACES__OPS__ALLOWED_HOSTS",
            ),
            (
                format!("{base}[log]\nformat = \"xml\"\n"),
                "log.format",
                "SURFACES__LOG__FORMAT",
            ),
            (
                format!("{base}homeserver = \"typo\"\n"),
                "matrix.homeserver",
                "SURFACES__MATRIX__HOMESERVER",
            ),
            (
                format!("{base}[[agents]]\nid = \"a\"\nkind = \"echo\"\ntimeout_secs = \"soon\"\n"),
                "agents[0].timeout_secs",
                "SURFACES__AGENTS",
            ),
        ];
        for (toml, key, env_var) in cases {
            let err = load_err(&toml, &[]);
            let problem = err
                .problems()
                .into_iter()
                .find(|p| matches!(p, ConfigError::Invalid { key: k, .. } if k == key))
                .unwrap_or_else(|| panic!("no problem for {key} in: {err}\n---\n{toml}"));
            let text = problem.to_string();
            assert!(text.starts_with(&format!("{key}: ")), "{text}");
            assert!(text.contains(env_var), "{key}: {text}");
        }
    }
}
