//! `GET /`: the fleet at a glance, for a person with a browser.
//!
//! One HTML document rendered on the server: inline CSS, no script, no
//! asset from anywhere (the Content-Security-Policy forbids them), so it
//! works on an air-gapped host and through `kubectl port-forward`. What
//! needs a person comes first: given-up workers, then failing ones
//! (restarting), then those still starting. Every name and error text is
//! escaped: a schema may be called `<script>` or hold quotes.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::status::{DbHealth, Status, WorkerState, WorkerStatus};

/// Rows shown at most; the full list is `/workers`.
const MAX_ROWS: usize = 500;

pub fn render(status: &Status) -> String {
    let summary = status.summary();
    let readiness = status.readiness();
    let mut workers = status.workers();
    workers.sort_by(|a, b| (a.state.urgency(), &a.schema).cmp(&(b.state.urgency(), &b.schema)));
    let count = |state: WorkerState| summary.by_state.get(&state).copied().unwrap_or(0);
    let (given_up, restarting) = (count(WorkerState::GivenUp), count(WorkerState::Restarting));

    let mut html = String::with_capacity(4096 + 400 * workers.len().min(MAX_ROWS));
    let title = if given_up + restarting > 0 {
        format!(
            "pgfleet: {} workers, {given_up} given up, {restarting} restarting",
            summary.workers
        )
    } else {
        format!("pgfleet: {} workers", summary.workers)
    };
    html.push_str(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"10\">",
    );
    let _ = write!(html, "<title>{}</title>", escape(&title));
    html.push_str(STYLE);
    html.push_str("</head><body>");
    let _ = write!(
        html,
        "<h1>pgfleet <small>{}</small></h1>",
        escape(status.version())
    );

    match &readiness {
        Ok(()) if given_up + restarting == 0 => {
            html.push_str("<p class=\"banner ok\">Ready: the workers fold.</p>")
        }
        Ok(()) => {
            let _ = write!(
                html,
                "<p class=\"banner warn\">Ready, but {given_up} given up and {restarting} \
                 restarting: they are listed first.</p>"
            );
        }
        Err(reasons) => {
            html.push_str("<div class=\"banner bad\"><p>Not ready:</p><ul>");
            for reason in reasons {
                let _ = write!(html, "<li>{}</li>", escape(reason));
            }
            html.push_str("</ul></div>");
        }
    }

    html.push_str("<h2>Fleet</h2><table class=\"summary\"><tbody>");
    let mut row = |name: &str, value: String, class: &str| {
        let _ = write!(
            html,
            "<tr><th>{name}</th><td class=\"{class}\">{value}</td></tr>"
        );
    };
    row("workers", summary.workers.to_string(), "");
    for state in WorkerState::ALL {
        let n = count(state);
        let class = match state {
            WorkerState::GivenUp | WorkerState::Restarting if n > 0 => "bad",
            WorkerState::WaitingForLock
            | WorkerState::TableDropped
            | WorkerState::WaitingForTotal
            | WorkerState::WaitingForDatabase
                if n > 0 =>
            {
                "warn"
            }
            _ => "",
        };
        row(&state_label(state), n.to_string(), class);
    }
    let (database, class) = match summary.database.unwrap_or(DbHealth::Unknown) {
        DbHealth::Up => ("up".to_owned(), "ok"),
        DbHealth::Unknown => ("no answer yet".to_owned(), "bad"),
        DbHealth::Unreachable { server, reason } => (
            format!("{} unreachable: {}", escape(&server), escape(&reason)),
            "bad",
        ),
        DbHealth::Refused { server, reason, .. } => (
            format!("{} refuses pgfleet: {}", escape(&server), escape(&reason)),
            "bad",
        ),
    };
    row("database", database, class);
    row("folds", summary.folds.to_string(), "");
    row("rows folded", summary.rows_folded.to_string(), "");
    row("worker failures", summary.failures.to_string(), "");
    row("restarts", summary.restarts.to_string(), "");
    row("naptime", format_duration(summary.naptime), "");
    let lateness = match summary.lateness {
        Some((p50, p99, samples)) => format!(
            "p50 {}, p99 {} (last {samples} ticks)",
            format_duration(p50),
            format_duration(p99)
        ),
        None => "no tick yet".into(),
    };
    row("tick lateness", lateness, "");
    if let Some(started) = summary.started_at {
        row(
            "up since",
            format!(
                "{} ({} ago)",
                humantime::format_rfc3339_seconds(started),
                ago(started)
            ),
            "",
        );
    }
    html.push_str("</tbody></table>");

    html.push_str(
        "<h2>Workers</h2><table class=\"workers\"><thead><tr><th>schema</th><th>worker</th>\
         <th>state</th><th>generation</th><th>last fold</th><th>total</th><th>folds</th>\
         <th>rows</th><th>failures</th><th>restarts</th><th>last error</th></tr></thead><tbody>",
    );
    for worker in workers.iter().take(MAX_ROWS) {
        worker_row(&mut html, worker);
    }
    html.push_str("</tbody></table>");
    if workers.len() > MAX_ROWS {
        let _ = write!(
            html,
            "<p>{} more workers are not shown; <a href=\"/workers\">/workers</a> lists them all.</p>",
            workers.len() - MAX_ROWS
        );
    }
    html.push_str(
        "<p class=\"links\"><a href=\"/metrics\">/metrics</a> · <a href=\"/workers\">/workers</a> · \
         <a href=\"/healthz\">/healthz</a> · <a href=\"/readyz\">/readyz</a></p></body></html>\n",
    );
    html
}

fn worker_row(html: &mut String, w: &WorkerStatus) {
    let class = match w.state {
        WorkerState::GivenUp | WorkerState::Restarting => "bad",
        WorkerState::Starting
        | WorkerState::WaitingForLock
        | WorkerState::TableDropped
        | WorkerState::WaitingForTotal
        | WorkerState::WaitingForDatabase => "warn",
        WorkerState::Running => "",
    };
    let mut state = state_label(w.state);
    if let Some(reason) = w.given_up_reason() {
        state = format!("{state}: {reason}");
    }
    if let Some(at) = w.restart_at() {
        state = format!("{state} in {}", until(at));
    }
    let last_fold = w
        .last_fold_at
        .map_or_else(|| "never".to_owned(), |at| format!("{} ago", ago(at)));
    let mut total = w
        .last_total
        .as_ref()
        .map_or_else(|| "-".to_owned(), |t| t.to_string());
    let backlog = w.backlog();
    if backlog.left > 0 {
        total = format!("{total} (backlog {backlog})");
    }
    if let Some(waiting) = w.waiting() {
        total = format!("no total row: {waiting} deltas wait");
    }
    let error = w.last_error().unwrap_or("");
    let _ = write!(
        html,
        "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"error\">{}</td></tr>",
        escape(&w.schema),
        escape(&w.worker),
        escape(&state),
        w.generation,
        last_fold,
        total,
        w.folds,
        w.rows_folded,
        w.failures(),
        w.restarts(),
        escape(error),
    );
}

fn state_label(state: WorkerState) -> String {
    state.as_str().replace('_', " ")
}

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ago(at: SystemTime) -> String {
    format_duration(SystemTime::now().duration_since(at).unwrap_or_default())
}

fn until(at: SystemTime) -> String {
    format_duration(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// "850 ms", "3.2 s", "5 min 3 s", for a person.
fn format_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if d.as_secs() < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else if d.as_secs() < 3600 {
        format!("{} min {} s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{} h {} min", d.as_secs() / 3600, d.as_secs() % 3600 / 60)
    }
}

const STYLE: &str = "<style>\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1 small{color:#777;font-weight:normal;font-size:60%}\
table{border-collapse:collapse;margin-bottom:1em}\
th,td{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
table.summary th{font-weight:normal;color:#555}\
table.workers td:nth-child(n+4):nth-child(-n+10){text-align:right}\
.banner{padding:.4em .8em;border-radius:4px}\
.banner p,.banner ul{margin:.2em 0}\
.ok{color:#155724}.banner.ok{background:#d4edda}\
.bad{color:#8a1c1c}.banner.bad{background:#f8d7da}\
.banner.warn{background:#fff3cd;color:#664d03}\
tr.bad td{background:#fdecea}tr.warn td{background:#fff8e1}\
td.error{max-width:40em;word-break:break-word}\
.links{color:#777}\
</style>";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::SchemaTarget;

    #[test]
    fn names_and_errors_are_escaped_and_urgent_workers_come_first() {
        let status = Status::new();
        for (schema, generation) in [("a_fine", 1), ("<b>\"bad\"&'", 1)] {
            let target = SchemaTarget {
                schema: schema.into(),
                worker: schema.into(),
            };
            status.worker_spawned(&target, generation, false);
            status.worker_initialised(schema, generation);
        }
        status.worker_failed("<b>\"bad\"&'", 1, "overflow <i>here</i>");
        status.worker_given_up("<b>\"bad\"&'", 1, "policy never");
        let html = render(&status);
        assert!(!html.contains("<b>"), "{html}");
        assert!(!html.contains("<i>"), "{html}");
        assert!(
            html.contains("&lt;b&gt;&quot;bad&quot;&amp;&#39;"),
            "{html}"
        );
        assert!(html.contains("overflow &lt;i&gt;here&lt;/i&gt;"), "{html}");
        let bad = html.find("&lt;b&gt;").expect("given-up row");
        let fine = html.find("a_fine").expect("running row");
        assert!(bad < fine, "given-up workers first");
    }
}
