//! The status page for people: the `/status` document as one self-contained HTML page.
//!
//! Why this file exists: an operator at 3 a.m. wants a page, not JSON. The page loads
//! nothing from elsewhere (its style and script are served by the endpoint itself, at
//! `status.css` and `status.js`, so it works on an air-gapped network and under a strict
//! Content-Security-Policy without `'unsafe-inline'`), lists failing actors first, sorts
//! any table by a click on a column header, and reloads itself every [`REFRESH_SECS`]
//! seconds (pausable; the sort and the pause survive reloads). Everything shown is
//! escaped: room names, error messages and ids are user input. Near the top, the last
//! hour's trends as four charts drawn here as inline SVG (see `chart`), coloured by the
//! style sheet. The script marks the page
//! (`<html data-script="ran">`) so a browser test sees that the CSP let it run.

use std::fmt::Write as _;

use super::chart::{self, Chart, Series, Style, Unit};
use super::status::Status;
use crate::telemetry::trends::{Trends, TREND_MINUTES};

/// Seconds between automatic reloads.
pub const REFRESH_SECS: u32 = 5;
/// Content-Security-Policy of the page: its own style sheet and script from the endpoint,
/// nothing inline, nothing else, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/// Where the page finds its style sheet and script (relative: works behind a path prefix).
const STYLE_HREF: &str = "status.css";
/// See [`STYLE_HREF`].
const SCRIPT_SRC: &str = "status.js";

/// Colours of the per-agent lines in the style sheet (`series-agent-0` …); more agents
/// reuse them in turn.
const AGENT_COLOURS: usize = 6;

/// Row state of a reconciliation conflict (shown like a backing-off actor: a warning).
const CONFLICT_STATE: &str = "backing-off";
const MS_PER_SEC: u64 = 1_000;
const SECS_PER_MIN: u64 = 60;
const SECS_PER_HOUR: u64 = 3_600;
const SECS_PER_DAY: u64 = 86_400;

/// The page's style sheet (served at `/status.css`).
pub const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d1d1f;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em} h2{font-size:1.1em;margin:1.6em 0 .4em}
.meta{color:#666} .badge{display:inline-block;padding:.15em .6em;border-radius:1em;font-weight:600}
.ok{background:#d8f5dc;color:#0a5d1a} .bad{background:#fde0e0;color:#8a1010}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 0 0 1px #ddd}
th,td{padding:.35em .6em;text-align:left;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f0f0f3;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \25B2"} th[aria-sort=descending]::after{content:" \25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.92em;word-break:break-all}
tr.state-failed td{background:#fde0e0} tr.state-backing-off td{background:#fff2cc}
tr.state-stopped td,tr.state-absent td,tr.state-stopping td{background:#eee}
tr.state-idle td{color:#777}
.err{color:#8a1010;max-width:40em;word-break:break-word} .none{color:#888}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(26em,1fr));gap:1em}
svg.chart{width:100%;height:auto;background:#fff;box-shadow:0 0 0 1px #ddd}
.chart text{font-size:11px;fill:#555} .chart .chart-title{font-size:13px;font-weight:600;fill:#1d1d1f}
.chart .legend{fill:#1d1d1f} .chart .nodata{font-size:13px;fill:#888}
.chart .grid{stroke:#eee} .chart .axis{stroke:#999} .chart .line{fill:none;stroke-width:2}
.series-replied{fill:#2e9d4a;stroke:#2e9d4a} .series-failed{fill:#d03030;stroke:#d03030}
.series-p50{fill:#2f6fd6;stroke:#2f6fd6} .series-p99{fill:#e08a00;stroke:#e08a00}
.series-restarts{fill:#8a3fc0;stroke:#8a3fc0}
.series-agent-0{fill:#2f6fd6;stroke:#2f6fd6} .series-agent-1{fill:#e08a00;stroke:#e08a00}
.series-agent-2{fill:#2e9d4a;stroke:#2e9d4a} .series-agent-3{fill:#8a3fc0;stroke:#8a3fc0}
.series-agent-4{fill:#d03030;stroke:#d03030} .series-agent-5{fill:#1a9aa0;stroke:#1a9aa0}
"#;

const SCRIPT: &str = r#"
(function(){
  var store = window.sessionStorage;
  function cell(row, i){ var c=row.cells[i]; return c ? (c.getAttribute('data-sort') ?? c.textContent.trim()) : ''; }
  function sortTable(table, col, dir){
    var body=table.tBodies[0]; if(!body) return;
    var rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){
      var x=cell(a,col), y=cell(b,col), nx=parseFloat(x), ny=parseFloat(y);
      var r = (!isNaN(nx) && !isNaN(ny) && String(nx)===x && String(ny)===y) ? nx-ny : x.localeCompare(y);
      return dir==='descending' ? -r : r;
    });
    rows.forEach(function(r){ body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function(th,i){
      if(i===col) th.setAttribute('aria-sort', dir); else th.removeAttribute('aria-sort');
    });
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    var key='sort:'+table.id, saved=store && store.getItem(key);
    if(saved){ var p=saved.split(':'); sortTable(table, parseInt(p[0],10), p[1]); }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function(th,i){
      th.addEventListener('click', function(){
        var dir = th.getAttribute('aria-sort')==='ascending' ? 'descending' : 'ascending';
        sortTable(table, i, dir); if(store) store.setItem(key, i+':'+dir);
      });
    });
  });
  var pause=document.getElementById('pause');
  if(store && store.getItem('paused')==='1') pause.checked=true;
  pause.addEventListener('change', function(){ if(store) store.setItem('paused', pause.checked?'1':'0'); });
  setInterval(function(){ if(!pause.checked) window.location.reload(); }, REFRESH_MS);
  document.documentElement.setAttribute('data-script', 'ran');
})();
"#;

/// The page's script (served at `/status.js`), with the reload period filled in.
pub fn script() -> String {
    SCRIPT.replace(
        "REFRESH_MS",
        &(u64::from(REFRESH_SECS) * MS_PER_SEC).to_string(),
    )
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// "12 s ago", "5 min ago", "3 h ago", "2 d ago" (from Unix milliseconds).
pub fn ago(now_ms: u64, at_ms: u64) -> String {
    let secs = now_ms.saturating_sub(at_ms) / MS_PER_SEC;
    if secs < SECS_PER_MIN {
        format!("{secs} s ago")
    } else if secs < SECS_PER_HOUR {
        format!("{} min ago", secs / SECS_PER_MIN)
    } else if secs < SECS_PER_DAY {
        format!("{} h ago", secs / SECS_PER_HOUR)
    } else {
        format!("{} d ago", secs / SECS_PER_DAY)
    }
}

pub(super) fn opt_text(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => escape(v),
        _ => "<span class=\"none\">–</span>".to_owned(),
    }
}

pub(super) fn time_cell(now_ms: u64, at_ms: Option<u64>) -> String {
    match at_ms {
        Some(at) => format!("<td data-sort=\"{at}\">{}</td>", escape(&ago(now_ms, at))),
        None => "<td data-sort=\"0\"><span class=\"none\">never</span></td>".to_owned(),
    }
}

pub(super) fn error_cell(error: Option<&str>) -> String {
    match error {
        Some(e) => format!("<td class=\"err\">{}</td>", escape(e)),
        None => "<td><span class=\"none\">–</span></td>".to_owned(),
    }
}

pub(super) fn num_cell(value: impl std::fmt::Display) -> String {
    format!("<td class=\"num\">{value}</td>")
}

pub(super) fn header(out: &mut String, id: &str, columns: &[&str]) {
    let _ = write!(out, "<table class=\"sortable\" id=\"{id}\"><thead><tr>");
    for column in columns {
        let _ = write!(out, "<th scope=\"col\">{}</th>", escape(column));
    }
    out.push_str("</tr></thead><tbody>");
}

pub(super) fn row_start(out: &mut String, actor_id: &str, state: &str) {
    let state = escape(state);
    let _ = write!(
        out,
        "<tr class=\"state-{state}\" data-state=\"{state}\" data-actor-id=\"{}\">",
        escape(actor_id)
    );
}

pub(super) fn empty_row(out: &mut String, columns: usize, text: &str) {
    let _ = write!(
        out,
        "<tr><td colspan=\"{columns}\" class=\"none\">{}</td></tr>",
        escape(text)
    );
}

/// A table of rooms the reconciliation rejected or could not handle (`id`: the table's id).
fn problems_table(out: &mut String, id: &str, what: &str, rooms: &[super::status::RoomProblem]) {
    header(out, id, &["Room", "Why"]);
    if rooms.is_empty() {
        empty_row(out, 2, &format!("no room {what}"));
    }
    for room in rooms {
        row_start(out, &room.room_id, CONFLICT_STATE);
        let _ = write!(
            out,
            "<td><code>{}</code></td><td>{}</td></tr>",
            escape(&room.room_id),
            escape(&room.reason)
        );
    }
    out.push_str("</tbody></table>");
}

fn counts(values: &[u64]) -> Vec<Option<f64>> {
    values.iter().map(|v| Some(*v as f64)).collect()
}

fn series(name: &str, class: &str, values: Vec<Option<f64>>) -> Series {
    Series {
        name: name.to_owned(),
        class: class.to_owned(),
        values,
    }
}

/// The four charts of the last hour: messages, reply latency, turn times, restarts.
pub fn trend_charts(trends: &Trends) -> [Chart; 4] {
    let minutes = if trends.replied.is_empty() {
        TREND_MINUTES
    } else {
        trends.replied.len()
    };
    let chart = |key: &str, title: &str, unit, style, series| Chart {
        key: key.to_owned(),
        title: title.to_owned(),
        unit,
        style,
        minutes,
        series,
    };
    [
        chart(
            "messages",
            "Messages per minute",
            Unit::Count,
            Style::StackedBars,
            vec![
                series("replied", "replied", counts(&trends.replied)),
                series("failed", "failed", counts(&trends.failed)),
            ],
        ),
        chart(
            "latency",
            "Reply latency (whole reply)",
            Unit::Seconds,
            Style::Lines,
            vec![
                series("p50", "p50", trends.latency_p50_secs.clone()),
                series("p99", "p99", trends.latency_p99_secs.clone()),
            ],
        ),
        chart(
            "turns",
            "Agent turn time (mean per minute)",
            Unit::Seconds,
            Style::Lines,
            trends
                .turns
                .iter()
                .enumerate()
                .map(|(i, agent)| {
                    let class = format!("agent-{}", i % AGENT_COLOURS);
                    series(&agent.agent, &class, agent.mean_secs.clone())
                })
                .collect(),
        ),
        chart(
            "restarts",
            "Actor restarts per minute",
            Unit::Count,
            Style::StackedBars,
            vec![series("restarts", "restarts", counts(&trends.restarts))],
        ),
    ]
}

/// The page.
pub fn render(status: &Status) -> String {
    let now = status.generated_at_ms;
    let mut out = String::new();
    let failing_rooms = status.rooms.iter().filter(|r| r.state == "failed").count();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Surfaces status</title>\
         <noscript><meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\"></noscript>\
         <link rel=\"stylesheet\" href=\"{STYLE_HREF}\"></head><body>"
    );
    let (badge, label) = if status.readiness.ready {
        ("ok", "ready")
    } else {
        ("bad", "not ready")
    };
    let _ = write!(
        out,
        "<h1>Surfaces status <span id=\"readiness\" class=\"badge {badge}\">{label}</span></h1>\
         <p class=\"meta\">version {} · {} rooms active, {} idle ({failing_rooms} failed) · {} agents · \
         generated <span id=\"generated\" data-ms=\"{now}\">{}</span> · \
         <label><input type=\"checkbox\" id=\"pause\"> pause auto-refresh \
         (every {REFRESH_SECS} s)</label></p>",
        escape(&status.version),
        status.room_counts.active,
        status
            .room_counts
            .idle
            .map_or_else(|| "(unknown)".to_owned(), |n| n.to_string()),
        status.agents.len(),
        unix_ms_text(now),
    );

    out.push_str("<h2>Readiness</h2>");
    header(&mut out, "checks", &["Check", "OK", "Detail"]);
    for check in &status.readiness.checks {
        let state = if check.ok { "running" } else { "failed" };
        row_start(&mut out, &check.name, state);
        let _ = write!(
            out,
            "<td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(&check.name),
            if check.ok { "yes" } else { "no" },
            escape(&check.detail)
        );
    }
    out.push_str("</tbody></table>");

    out.push_str("<h2>Trends (last hour)</h2><div class=\"charts\" id=\"trends\">");
    for chart in trend_charts(&status.trends) {
        out.push_str(&chart::render(&chart));
    }
    out.push_str("</div>");

    out.push_str("<h2>Rooms</h2>");
    let room_columns = [
        "Room",
        "Room id",
        "Owner",
        "Agent",
        "State",
        "Restarts",
        "Mailbox",
        "Handled",
        "Last error",
        "Last activity",
    ];
    header(&mut out, "rooms", &room_columns);
    if status.rooms.is_empty() {
        empty_row(&mut out, room_columns.len(), "no managed room");
    }
    let unlisted = status
        .room_counts
        .idle
        .unwrap_or(0)
        .saturating_sub(status.room_counts.idle_listed);
    for room in &status.rooms {
        row_start(&mut out, &room.actor_id, &room.state);
        let _ = write!(
            out,
            "<td>{}</td><td><a href=\"status/rooms/{}\"><code>{}</code></a></td><td>{}</td>\
             <td>{}</td><td>{}</td>{}{}{}{}{}</tr>",
            opt_text(room.name.as_deref()),
            super::room_page::path_segment(&room.room_id),
            escape(&room.room_id),
            opt_text(room.owner.as_deref()),
            opt_text(room.agent.as_deref()),
            escape(&room.state),
            num_cell(room.restarts),
            num_cell(room.mailbox_depth),
            num_cell(room.handled),
            error_cell(room.last_error.as_deref()),
            time_cell(now, room.last_activity_ms),
        );
    }
    if unlisted > 0 {
        empty_row(
            &mut out,
            room_columns.len(),
            &format!("and {unlisted} more idle rooms (each activated by its next message)"),
        );
    }
    out.push_str("</tbody></table>");

    out.push_str("<h2>Agent connections</h2>");
    let agent_columns = [
        "Agent",
        "Id",
        "State",
        "In flight",
        "Restarts",
        "Last turn error",
        "Last failure",
        "Last activity",
    ];
    header(&mut out, "agents", &agent_columns);
    if status.agents.is_empty() {
        empty_row(&mut out, agent_columns.len(), "no agent");
    }
    for agent in &status.agents {
        row_start(&mut out, &agent.actor_id, &agent.state);
        let _ = write!(
            out,
            "<td>{}</td><td><code>{}</code></td><td>{}</td>{}{}{}{}{}</tr>",
            escape(&agent.name),
            escape(&agent.id),
            escape(&agent.state),
            num_cell(agent.in_flight),
            num_cell(agent.restarts),
            error_cell(agent.last_error.as_deref()),
            error_cell(agent.last_failure.as_deref()),
            time_cell(now, agent.last_activity_ms),
        );
    }
    out.push_str("</tbody></table>");

    out.push_str("<h2>Sync</h2>");
    header(
        &mut out,
        "sync",
        &[
            "Messenger",
            "State",
            "Last success",
            "Recent",
            "Failures in a row",
            "Syncs",
            "Restarts",
            "Gaps filled",
            "Back-filled",
            "Left out",
            "Last error",
        ],
    );
    let inbounds = if status.inbounds.is_empty() {
        std::slice::from_ref(&status.sync)
    } else {
        status.inbounds.as_slice()
    };
    for sync in inbounds {
        let sync_state = if sync.state == "running" && !sync.recent {
            "backing-off"
        } else {
            sync.state.as_str()
        };
        row_start(&mut out, "sync", sync_state);
        let last = match sync.last_success_secs_ago {
            Some(secs) => format!("<td data-sort=\"{secs:.3}\">{secs:.1} s ago</td>"),
            None => "<td><span class=\"none\">never</span></td>".to_owned(),
        };
        let _ = write!(
            out,
            "<td>{}</td><td>{}</td>{last}<td>{}</td>{}{}{}{}{}{}{}</tr>",
            escape(&sync.surface),
            escape(&sync.state),
            if sync.recent { "yes" } else { "no" },
            num_cell(sync.consecutive_failures),
            num_cell(sync.successes),
            num_cell(sync.restarts),
            num_cell(sync.catch_up.gaps),
            num_cell(sync.catch_up.backfilled),
            num_cell(
                sync.catch_up.skipped_too_old
                    + sync.catch_up.skipped_too_many
                    + sync.catch_up.unreadable_gaps
            ),
            error_cell(sync.last_error.as_deref()),
        );
    }
    out.push_str("</tbody></table>");

    out.push_str("<h2>Other actors</h2>");
    let actor_columns = [
        "Actor",
        "State",
        "Restarts",
        "Mailbox",
        "Last error",
        "Last activity",
    ];
    header(&mut out, "actors", &actor_columns);
    if status.actors.is_empty() {
        empty_row(&mut out, actor_columns.len(), "none");
    }
    for actor in &status.actors {
        row_start(&mut out, &actor.id, &actor.state);
        let _ = write!(
            out,
            "<td><code>{}</code></td><td>{}</td>{}{}{}{}</tr>",
            escape(&actor.id),
            escape(&actor.state),
            num_cell(actor.restarts),
            num_cell(actor.mailbox_depth),
            error_cell(actor.last_error.as_deref()),
            time_cell(now, actor.last_activity_ms),
        );
    }
    out.push_str("</tbody></table>");

    out.push_str("<h2>Reconciliation</h2>");
    let _ = write!(
        out,
        "<p>Start-up reconciliation: {}.</p>",
        if status.reconciliation.done {
            "done"
        } else {
            "in progress"
        }
    );
    header(
        &mut out,
        "conflicts",
        &["Room or user", "Field", "Store had", "Matrix has (kept)"],
    );
    if status.reconciliation.conflicts.is_empty() {
        empty_row(&mut out, 4, "no conflict");
    }
    for conflict in &status.reconciliation.conflicts {
        row_start(&mut out, &conflict.subject, CONFLICT_STATE);
        let _ = write!(
            out,
            "<td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&conflict.subject),
            escape(&conflict.field),
            escape(&conflict.store),
            escape(&conflict.matrix)
        );
    }
    out.push_str("</tbody></table>");
    problems_table(
        &mut out,
        "rejected-rooms",
        "not adopted (state not written by the bot)",
        &status.reconciliation.rejected,
    );
    problems_table(
        &mut out,
        "failed-rooms",
        "could not be read or written back",
        &status.reconciliation.failed,
    );

    let _ = write!(out, "<script src=\"{SCRIPT_SRC}\"></script></body></html>");
    out
}

/// `2026-11-24 23:13:08 UTC` from Unix milliseconds (proleptic Gregorian calendar).
pub fn unix_ms_text(ms: u64) -> String {
    let secs = ms / MS_PER_SEC;
    let days = i64::try_from(secs / SECS_PER_DAY).unwrap_or(0);
    let rem = secs % SECS_PER_DAY;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / SECS_PER_HOUR,
        (rem % SECS_PER_HOUR) / SECS_PER_MIN,
        rem % SECS_PER_MIN
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::status::{
        AgentStatus, Check, Readiness, Reconciliation, RoomStatus, SyncStatus,
    };

    fn room(id: &str, name: &str, state: &str) -> RoomStatus {
        RoomStatus {
            actor_id: format!("room:{id}"),
            room_id: id.to_owned(),
            name: Some(name.to_owned()),
            owner: Some("@alice:hs".into()),
            agent: Some("ref".into()),
            state: state.to_owned(),
            restarts: 2,
            mailbox_depth: 0,
            handled: 3,
            lost: 0,
            last_error: Some("panic: <boom> & \"quotes\"".into()),
            last_error_at_ms: Some(1_000),
            last_activity_ms: Some(1_000),
        }
    }

    fn sync(surface: &str) -> SyncStatus {
        SyncStatus {
            surface: surface.into(),
            state: "running".into(),
            restarts: 0,
            last_success_secs_ago: Some(1.5),
            recent: true,
            consecutive_failures: 0,
            successes: 4,
            last_error: None,
            catch_up: Default::default(),
        }
    }

    fn status() -> Status {
        Status {
            generated_at_ms: 61_000,
            version: "0.1.0".into(),
            readiness: Readiness {
                ready: false,
                checks: vec![Check {
                    name: "sync".into(),
                    ok: false,
                    detail: "no successful sync yet".into(),
                }],
            },
            sync: sync("matrix"),
            inbounds: vec![sync("matrix"), sync("telegram<")],
            reconciliation: Reconciliation {
                done: true,
                elapsed_ms: Some(12),
                conflicts: Vec::new(),
                rejected: vec![super::super::status::RoomProblem {
                    room_id: "!forged:hs".into(),
                    reason: "its binding was not written by the bot (<b>x</b>)".into(),
                }],
                failed: Vec::new(),
            },
            rooms: vec![
                room("!a:hs", "<script>alert('x')</script>", "failed"),
                room("!b:hs", "Chat 2", "running"),
                room("!c:hs", "Chat 3", "idle"),
            ],
            room_counts: super::super::status::RoomCounts {
                active: 2,
                idle: Some(5),
                idle_listed: 1,
            },
            agents: vec![AgentStatus {
                id: "ref".into(),
                name: "Ref <agent>".into(),
                actor_id: "agent:ref".into(),
                state: "running".into(),
                restarts: 0,
                in_flight: 1,
                last_error: None,
                last_failure: None,
                last_activity_ms: None,
            }],
            actors: Vec::new(),
            encryption: None,
            undecryptable: Default::default(),
            trends: Default::default(),
        }
    }

    #[test]
    fn idle_rooms_are_counted_and_the_unlisted_ones_said() {
        let page = render(&status());
        assert!(page.contains("2 rooms active, 5 idle (1 failed)"), "{page}");
        assert!(page.contains("class=\"state-idle\""), "an idle row: {page}");
        assert!(page.contains("and 4 more idle rooms"), "{page}");
    }

    #[test]
    fn user_input_is_escaped() {
        let page = render(&status());
        assert!(!page.contains("<script>alert"), "room names are escaped");
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(page.contains("panic: &lt;boom&gt; &amp; &quot;quotes&quot;"));
        assert!(page.contains("Ref &lt;agent&gt;"));
        // One sync row per messenger, names escaped.
        assert!(page.contains("<td>matrix</td>") && page.contains("<td>telegram&lt;</td>"));
        assert_eq!(page.matches("<script").count(), 1, "only our own script");
        assert!(page.contains("<script src=\"status.js\"></script>"));
        assert!(page.contains("<link rel=\"stylesheet\" href=\"status.css\">"));
        assert!(
            !page.contains("<style") && !page.contains("style="),
            "no inline style"
        );
        let handler = page.match_indices(" on").any(|(i, _)| {
            let rest = &page[i + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        });
        assert!(!handler, "no inline event handlers");
        assert!(page.contains("<code>!forged:hs</code></td>"));
        assert!(
            page.contains("by the bot (&lt;b&gt;x&lt;/b&gt;)"),
            "rejected rooms are listed"
        );
        assert!(page.contains("data-state=\"failed\" data-actor-id=\"room:!a:hs\""));
        assert!(page.contains("not ready"));
        assert!(page.contains("1 min ago"));
        assert!(
            !page.contains("http:") && !page.contains("https:") && !page.contains("//"),
            "nothing from elsewhere"
        );
    }

    #[test]
    fn trends_are_four_charts_with_their_data() {
        use crate::metrics::MessageOutcome;
        use crate::telemetry::trends::TrendWindow;
        use std::time::{Duration, UNIX_EPOCH};

        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut window = TrendWindow::default();
        window.message(now, MessageOutcome::Replied);
        window.message(now, MessageOutcome::InternalError);
        window.reply(now, Duration::from_millis(800));
        window.turn(now, "<ref>", Duration::from_millis(600));
        window.restart(now);
        let mut s = status();
        s.trends = window.snapshot(now);
        let page = render(&s);
        for key in ["messages", "latency", "turns", "restarts"] {
            assert_eq!(
                page.matches(&format!("<svg class=\"chart\" data-chart=\"{key}\""))
                    .count(),
                1,
                "{key}"
            );
        }
        // (series class, drawn as)
        let drawn = [
            ("bar series-replied", "rect"),
            ("bar series-failed", "rect"),
            ("dot series-p50", "circle"),
            ("dot series-agent-0", "circle"),
            ("bar series-restarts", "rect"),
        ];
        for (class, element) in drawn {
            assert!(
                page.contains(&format!("<{element} class=\"{class}\"")),
                "{class}"
            );
        }
        assert!(
            page.contains(">&lt;ref&gt;</text>"),
            "agent names are escaped"
        );
        assert!(!page.contains("no data yet"));
        assert!(page.find("data-chart=\"messages\"") < page.find("<h2>Rooms</h2>"));
        // A document without trends (an older bot) still shows the charts, empty.
        let empty = render(&status());
        assert_eq!(empty.matches("no data yet").count(), 4);
        // An idle hour: zero messages and restarts are data; no latency, no turn is none.
        s.trends = TrendWindow::default().snapshot(now);
        assert_eq!(render(&s).matches("no data yet").count(), 2);
    }

    #[test]
    fn policy_allows_no_inline_code() {
        for needed in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(CONTENT_SECURITY_POLICY.contains(needed), "{needed}");
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        let js = script();
        assert!(js.contains(&format!("{}", u64::from(REFRESH_SECS) * MS_PER_SEC)));
        assert!(!js.contains("REFRESH_MS"));
        assert!(js.contains("data-script"));
    }

    #[test]
    fn rejected_and_failed_rooms_are_listed_on_the_page_and_in_the_cli() {
        let mut s = status();
        s.reconciliation.failed = vec![super::super::status::RoomProblem {
            room_id: "!unwritable:hs".into(),
            reason: "cannot write its binding back: forbidden".into(),
        }];
        let page = render(&s);
        assert!(page.contains("id=\"rejected-rooms\""), "{page}");
        assert!(page.contains("<code>!unwritable:hs</code></td><td>cannot write its binding back"));
        let table = crate::ops::cli::render_table(&s);
        assert!(table.contains("REJECTED (not adopted): 1"), "{table}");
        assert!(table.contains("!forged:hs"), "{table}");
        assert!(
            table.contains("FAILED (could not be read or written back): 1"),
            "{table}"
        );
        assert!(table.contains("!unwritable:hs"), "{table}");
        let json = serde_json::to_value(&s).expect("serializes");
        assert_eq!(
            json["reconciliation"]["rejected"][0]["room_id"],
            "!forged:hs"
        );
        assert_eq!(
            json["reconciliation"]["failed"][0]["room_id"],
            "!unwritable:hs"
        );
    }

    #[test]
    fn escaping_and_times() {
        assert_eq!(escape("a<b>&\"'c"), "a&lt;b&gt;&amp;&quot;&#39;c");
        assert_eq!(ago(10_000, 4_000), "6 s ago");
        assert_eq!(ago(4_000, 10_000), "0 s ago");
        assert_eq!(ago(3 * 3_600_000, 0), "3 h ago");
        assert_eq!(ago(3 * 86_400_000, 0), "3 d ago");
        assert_eq!(unix_ms_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(unix_ms_text(1_798_154_388_000), "2026-12-24 23:19:48 UTC");
        assert_eq!(unix_ms_text(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }
}
