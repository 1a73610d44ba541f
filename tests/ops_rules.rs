//! The operator's dashboard (`ops/grafana/surfaces.json`) and alerting rules
//! (`ops/prometheus/surfaces-rules.yml`) stay true to the bot.
//!
//! Why this exists: a dashboard panel or an alert over a metric name that the bot does not
//! export shows nothing and never fires, silently; and a rules file Prometheus rejects is
//! found only when Prometheus reloads. So: `promtool check rules` must accept the rules (the
//! binary comes from Debian's `prometheus` package, installed by `ops/test`;
//! `SURFACES_PROMTOOL` names another), every `surfaces_*` name in an expression must be a
//! series that [`Metrics::encode`] exports, and every alert must say how long, how bad and
//! what to do.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use actors::{ActorHealth, ActorId, ActorState};
use surfaces::metrics::{
    Exposition, MessageOutcome, Metrics, Observed, Refusal, ReplyStage, METRIC_PREFIX,
};

/// The dashboard, from the repository's root.
const DASHBOARD: &str = "ops/grafana/surfaces.json";
/// The alerting rules, from the repository's root.
const RULES: &str = "ops/prometheus/surfaces-rules.yml";
/// Names the promtool binary (else `promtool` on `PATH`).
const PROMTOOL_ENV: &str = "SURFACES_PROMTOOL";
/// The dashboard's Prometheus datasource, a template variable.
const DATASOURCE_UID: &str = "${datasource}";
/// Labels and annotations every alert carries.
const ALERT_LABELS: [&str; 1] = ["severity"];
const ALERT_ANNOTATIONS: [&str; 2] = ["summary", "description"];
/// Severities an alert may have.
const SEVERITIES: [&str; 2] = ["warning", "critical"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn rules() -> serde_yaml::Value {
    serde_yaml::from_str(&read(RULES)).unwrap_or_else(|e| panic!("{RULES} is not YAML: {e}"))
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD))
        .unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Every rule of the rules file.
fn each_rule(rules: &serde_yaml::Value) -> Vec<&serde_yaml::Value> {
    let groups = rules["groups"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{RULES}: no groups"));
    groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
        .collect()
}

/// Every string under an `expr` key, anywhere in the dashboard.
fn dashboard_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// `expr` with the insides of its string literals (label values, `"…"`, `'…'`, `` `…` ``)
/// blanked out: they name no metric.
fn without_strings(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q != '`' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                    continue;
                }
                out.push(' ');
            }
            None => {
                if matches!(c, '"' | '\'' | '`') {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// The `surfaces_*` names an expression refers to (whole identifiers outside strings).
fn referenced(expr: &str) -> BTreeSet<String> {
    let prefix = format!("{METRIC_PREFIX}_");
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let expr = without_strings(expr);
    let mut rest = expr.as_str();
    while let Some(at) = rest.find(&prefix) {
        let glued = rest[..at].chars().next_back().is_some_and(ident);
        let tail = &rest[at..];
        let end = tail.find(|c: char| !ident(c)).unwrap_or(tail.len());
        if !glued {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// The series names a scrape of `text` (Prometheus text 0.0.4) can hold: every sample's
/// name, and for each `# TYPE` the names its samples take (a histogram's `_bucket`, `_sum`
/// and `_count`). A histogram's bare name is no series, so a query for it is refused too.
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// What the bot exports with one of everything recorded (a family with nothing recorded
/// yet is not exported at all).
fn live_exposition() -> String {
    let m = Metrics::new();
    for outcome in MessageOutcome::ALL {
        m.message("matrix", outcome);
    }
    for reason in Refusal::ALL {
        m.refused(reason);
    }
    let took = Duration::from_millis(700);
    m.turn_finished(&m.turn_series("ref"), took);
    m.reply_latency(
        &m.reply_series("ref", "matrix"),
        ReplyStage::First,
        took,
        "$m:hs",
    );
    m.reply_latency(
        &m.reply_series("ref", "matrix"),
        ReplyStage::Final,
        took,
        "$m:hs",
    );
    m.reply_from_origin(&m.reply_series("ref", "matrix"), took);
    m.queue_wait(&m.reply_series("ref", "matrix"), took);
    m.restart("room", "panic");
    m.gave_up("room");
    let observed = Observed {
        actors: vec![ActorHealth {
            id: ActorId::parse("room:!a:hs"),
            state: ActorState::Running,
            incarnation: 1,
            restarts: 0,
            last_failure: None,
            mailbox_depth: 1,
            handled: 0,
            lost: 0,
            last_activity: None,
        }],
        turns_in_flight: vec![("ref".to_owned(), 1)],
        since_last_sync: Some(Duration::from_secs(1)),
        inbound: vec![("matrix".to_owned(), Some(Duration::from_secs(1)), 0)],
        ready: true,
        journal_pending: 1,
        ..Observed::default()
    };
    m.encode(&observed, Exposition::Prometheus)
        .unwrap_or_else(|e| panic!("cannot encode the metrics: {e}"))
}

/// The names in `exprs` (with where they were found) that `exported` lacks.
fn unknown(exprs: &[(String, String)], exported: &BTreeSet<String>) -> Vec<String> {
    exprs
        .iter()
        .flat_map(|(place, expr)| {
            referenced(expr)
                .into_iter()
                .filter(|name| !exported.contains(name))
                .map(move |name| format!("{place}: {name}"))
        })
        .collect()
}

/// Every expression of the dashboard and the rules, with where it is.
fn all_exprs() -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    let mut found = Vec::new();
    dashboard_exprs(&dashboard(), &mut found);
    assert!(!found.is_empty(), "{DASHBOARD}: no expressions found");
    exprs.extend(found.into_iter().map(|e| (DASHBOARD.to_owned(), e)));
    for rule in each_rule(&rules()) {
        let place = format!("{RULES} ({})", rule["alert"].as_str().unwrap_or("record"));
        let expr = rule["expr"]
            .as_str()
            .unwrap_or_else(|| panic!("{place}: no expr"));
        exprs.push((place, expr.to_owned()));
    }
    exprs
}

#[test]
fn promtool_accepts_the_rules() {
    let promtool = std::env::var_os(PROMTOOL_ENV).unwrap_or_else(|| "promtool".into());
    let output = Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(repo(RULES))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {promtool:?} ({e}): install Debian's `prometheus` package (ops/test \
                 does), or name the binary in {PROMTOOL_ENV}"
            )
        });
    assert!(
        output.status.success(),
        "promtool check rules {RULES} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_metric_the_dashboard_and_rules_use_is_exported() {
    let exported = exported(&live_exposition());
    let exprs = all_exprs();
    let used: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| referenced(e)).collect();
    assert!(used.len() >= 10, "too few metrics found: {used:?}");
    let missing = unknown(&exprs, &exported);
    assert!(
        missing.is_empty(),
        "not exported by the bot:\n  {}\nexported:\n  {}",
        missing.join("\n  "),
        exported.iter().cloned().collect::<Vec<_>>().join("\n  ")
    );
}

#[test]
fn a_misspelled_or_bare_name_is_caught() {
    let exported = exported(&live_exposition());
    let at = |expr: &str| vec![("test".to_owned(), expr.to_owned())];
    // (expression, the unknown names wanted)
    let table: [(&str, &[&str]); 8] = [
        ("sum(rate(surfaces_messages_total[5m]))", &[]),
        (
            "sum(rate(surfaces_mesages_total[5m]))",
            &["surfaces_mesages_total"],
        ),
        // A counter is stored with its _total; a histogram only as its parts.
        (
            "rate(surfaces_messages_refused[5m])",
            &["surfaces_messages_refused"],
        ),
        (
            "surfaces_reply_latency_seconds > 1",
            &["surfaces_reply_latency_seconds"],
        ),
        (
            "histogram_quantile(0.99, rate(surfaces_reply_latency_seconds_bucket[5m]))",
            &[],
        ),
        ("surfaces_ready_bucket", &["surfaces_ready_bucket"]),
        // Not a name of ours (glued to another identifier), and a label value is not one.
        (
            "my_surfaces_thing{x=\"surfaces_nope\"} + surfaces_ready",
            &[],
        ),
        (
            "surfaces_ready{x='a\\'b'} + surfaces_redy",
            &["surfaces_redy"],
        ),
    ];
    for (expr, want) in table {
        let got = unknown(&at(expr), &exported);
        let want: Vec<String> = want.iter().map(|n| format!("test: {n}")).collect();
        assert_eq!(got, want, "{expr}");
    }
}

#[test]
fn every_alert_says_how_long_how_bad_and_what_to_do() {
    let rules = rules();
    let alerts = each_rule(&rules);
    assert!(!alerts.is_empty(), "{RULES}: no rules");
    for rule in alerts {
        let name = rule["alert"]
            .as_str()
            .unwrap_or_else(|| panic!("{RULES}: a rule without an alert name: {rule:?}"));
        assert!(rule["for"].as_str().is_some(), "{name}: no `for:`");
        for label in ALERT_LABELS {
            assert!(
                rule["labels"][label].as_str().is_some(),
                "{name}: no {label} label"
            );
        }
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            SEVERITIES.contains(&severity),
            "{name}: severity {severity:?}"
        );
        for annotation in ALERT_ANNOTATIONS {
            let text = rule["annotations"][annotation].as_str().unwrap_or_default();
            assert!(!text.trim().is_empty(), "{name}: no {annotation}");
        }
    }
}

#[test]
fn the_dashboard_reads_its_prometheus_from_a_variable() {
    let dashboard = dashboard();
    let variables = dashboard["templating"]["list"]
        .as_array()
        .unwrap_or_else(|| panic!("{DASHBOARD}: no templating"));
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "{DASHBOARD}: no `datasource` variable of Prometheus datasources"
    );
    let panels = dashboard["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("{DASHBOARD}: no panels"));
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        assert_eq!(panel["datasource"]["uid"], DATASOURCE_UID, "{title}");
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(!targets.is_empty(), "{title}: no queries");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], DATASOURCE_UID, "{title}");
        }
    }
}
