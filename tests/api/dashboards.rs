//! The Helm chart's Grafana dashboard and alert rules name only metrics
//! the server serves: a real server is driven until every family it has
//! shows on `/metrics` (submissions, a refused minor, a caller's error, a
//! routed request whose task is claimed and completed, watchdog sweeps,
//! the backlog refresh), then every metric name in every panel's query,
//! every template variable's query and every rule's `expr` must be in
//! the scrape, under exactly that name.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gdpr_intake::auth::Role;
use gdpr_intake::clock::{ManualClock, SystemClock};
use gdpr_intake::proto::google::r#type::Date;
use gdpr_intake::proto::v1;
use tonic::Code;

use crate::helpers::*;
use crate::processor::{claim, complete};
use crate::telemetry::{http_get, spawn_with_metrics_endpoint_configured};
use crate::watchdog::{due_of, submit};

fn chart_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("helm/gdpr-intake")
        .join(path)
}

/// PromQL modifiers followed by a parenthesised list of label names.
const LABEL_LISTS: &str = "by without on ignoring group_left group_right";

/// The other PromQL words that are not metric names: aggregations,
/// operators and modifiers, and the special float values.
const KEYWORDS: &str = "sum min max avg group stddev stdvar count count_values bottomk topk \
     quantile limitk limit_ratio and or unless atan2 bool offset inf nan";

/// Whether `word` is one of the space-separated `words`.
fn one_of(words: &str, word: &str) -> bool {
    words.split_whitespace().any(|w| w == word)
}

/// Where the bracket opened at `open` closes (quotes inside skipped), or
/// the end of the text.
fn closing(chars: &[char], open: usize, close: char) -> usize {
    let opening = chars[open];
    let mut depth = 0;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = end_of_string(chars, i),
            c if c == opening => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

/// The index of the quote that ends the string opened at `open`.
fn end_of_string(chars: &[char], open: usize) -> usize {
    let quote = chars[open];
    let mut i = open + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    i
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The metric names a PromQL expression reads: every identifier that is
/// not a function (followed by `(`), an aggregation, operator or
/// modifier, a label name (inside `{…}` or a `by (…)`-like list), a
/// duration (inside `[…]` or after `offset`), a number or a Grafana
/// variable (`$job`, `${datasource}`, `$__rate_interval`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = end_of_string(&chars, i) + 1;
        } else if c == '{' {
            i = closing(&chars, i, '}') + 1;
        } else if c == '[' {
            i = closing(&chars, i, ']') + 1;
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = closing(&chars, i, '}') + 1;
            }
            while i < chars.len() && is_name_char(chars[i]) {
                i += 1;
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (is_name_char(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if is_name_start(c) {
            let start = i;
            while i < chars.len() && is_name_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let lower = word.to_ascii_lowercase();
            if one_of(LABEL_LISTS, &lower) && chars.get(next) == Some(&'(') {
                i = closing(&chars, next, ')') + 1;
            } else if lower == "offset" {
                // The duration after it.
                i = next;
                while i < chars.len() && (is_name_char(chars[i]) || chars[i] == '-') {
                    i += 1;
                }
            } else if !one_of(KEYWORDS, &lower)
                && !one_of(LABEL_LISTS, &lower)
                && chars.get(next) != Some(&'(')
            {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The metric names a Grafana template variable's query reads: the
/// series selector of `label_values(selector, label)` (the label is not a
/// metric), or the query itself as PromQL.
fn variable_metric_names(query: &str) -> BTreeSet<String> {
    let query = query.trim();
    match query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
    {
        Some(arguments) => match arguments.rsplit_once(',') {
            Some((selector, _label)) => metric_names(selector),
            // `label_values(label)`: no metric.
            None => BTreeSet::new(),
        },
        None => metric_names(query),
    }
}

/// Every query of the dashboard: each panel's targets (rows' nested
/// panels included) and each query variable's query.
fn dashboard_queries(dashboard: &serde_json::Value) -> (Vec<String>, Vec<String>) {
    fn panels(list: &serde_json::Value, exprs: &mut Vec<String>) {
        for panel in list.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    exprs.push(expr.to_owned());
                }
            }
            panels(&panel["panels"], exprs);
        }
    }
    let mut exprs = Vec::new();
    panels(&dashboard["panels"], &mut exprs);
    let variables = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .filter_map(|v| {
            v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())
                .map(str::to_owned)
        })
        .collect();
    (exprs, variables)
}

/// The `expr` of every rule in a Prometheus rules file: plain, quoted or
/// as a `|`/`>` block.
fn rule_exprs(rules: &str) -> Vec<String> {
    let lines: Vec<&str> = rules.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            i += 1;
            continue;
        };
        let rest = rest.trim();
        i += 1;
        if rest.starts_with('|') || rest.starts_with('>') {
            let mut block = Vec::new();
            while i < lines.len()
                && (lines[i].trim().is_empty()
                    || lines[i].len() - lines[i].trim_start().len() > indent)
            {
                block.push(lines[i].trim());
                i += 1;
            }
            exprs.push(block.join(" "));
        } else {
            let unquoted = rest
                .strip_prefix('\'')
                .and_then(|r| r.strip_suffix('\''))
                .or_else(|| rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
                .unwrap_or(rest);
            exprs.push(unquoted.to_owned());
        }
    }
    exprs
}

/// The metric names a Prometheus text exposition has samples of.
fn scraped_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The names `used` needs that `served` lacks, each with where it is used.
fn missing(used: &[(String, String)], served: &BTreeSet<String>) -> Vec<String> {
    used.iter()
        .filter(|(name, _)| !served.contains(name))
        .map(|(name, at)| format!("{name} (in {at})"))
        .collect()
}

/// Every metric name of `queries`, with the query it came from.
fn names_in(
    queries: &[String],
    extract: fn(&str) -> BTreeSet<String>,
    what: &str,
) -> Vec<(String, String)> {
    queries
        .iter()
        .flat_map(|q| {
            extract(q)
                .into_iter()
                .map(move |name| (name, format!("{what}: {q}")))
        })
        .collect()
}

#[test]
fn the_extractor_finds_metrics_and_nothing_else() {
    let expr = r#"histogram_quantile(0.95, sum by (le, rpc_method) (rate(rpc_server_call_duration_seconds_bucket{rpc_method=~"$method", job=~"$job"}[$__rate_interval])))
        / on() group_left(instance) (time() - max without (pod) (gdpr_watchdog_last_sweep_timestamp_seconds offset 5m))
        or absent(gdpr_ready) and 1e3 > bool 0.5 unless count(up{le="1"}[5m:1m])"#;
    assert_eq!(
        metric_names(expr),
        [
            "gdpr_ready",
            "gdpr_watchdog_last_sweep_timestamp_seconds",
            "rpc_server_call_duration_seconds_bucket",
            "up",
        ]
        .map(str::to_owned)
        .into(),
    );
    assert_eq!(
        variable_metric_names(r#"label_values(gdpr_tasks_open{job=~"$job"}, processor_id)"#),
        ["gdpr_tasks_open".to_owned()].into()
    );
    assert!(variable_metric_names("label_values(job)").is_empty());
}

#[test]
fn rule_expressions_are_read_in_every_form() {
    let rules = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n        for: 5m\n      - alert: B\n        expr: 'sum(x) > 1'\n      - alert: C\n        expr: |\n          rate(y_total[5m])\n            > 0\n        labels:\n          severity: warning\n";
    assert_eq!(
        rule_exprs(rules),
        vec!["up == 0", "sum(x) > 1", "rate(y_total[5m]) > 0"]
    );
}

#[test]
fn a_name_the_server_does_not_serve_is_reported() {
    let served = scraped_names(
        "# HELP gdpr_ready x\n# TYPE gdpr_ready gauge\ngdpr_ready{otel_scope_name=\"s\"} 1\nrpc_server_call_duration_seconds_count 3\n",
    );
    let used = names_in(
        &[
            "gdpr_ready == 0".to_owned(),
            "sum(rate(gdpr_requests_bogus_total[5m]))".to_owned(),
        ],
        metric_names,
        "rule",
    );
    assert_eq!(
        missing(&used, &served),
        vec!["gdpr_requests_bogus_total (in rule: sum(rate(gdpr_requests_bogus_total[5m])))"]
    );
    // The histogram's series count only under their own names.
    let used = names_in(
        &["rpc_server_call_duration_seconds_bucket".to_owned()],
        metric_names,
        "panel",
    );
    assert_eq!(missing(&used, &served).len(), 1);
}

/// The value of the first sample of `name` whose labels contain `label`.
fn sample(text: &str, name: &str, label: &str) -> Option<f64> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .find(|l| l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A subject `years` old today.
fn subject_aged(years: i32) -> v1::Subject {
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    v1::Subject {
        date_of_birth: Some(Date {
            year: i32::from(today.year()) - years,
            month: 1,
            day: 1,
        }),
        ..adult_subject()
    }
}

/// Drives `app` until it has recorded into every instrument: requests
/// submitted and refused, a caller's error, a routed request whose task is
/// claimed and completed (closing the request), and sweeps.
async fn drive(app: &TestApp) {
    app.route("acme", "mailer", &[], 24).await;
    let controller = app.token(Role::Controller, "acme");
    let mut dsr = app.dsr();
    dsr.submit_data_subject_request(authed(&controller, submission()))
        .await
        .expect("submitted");
    let refused = dsr
        .submit_data_subject_request(authed(
            &controller,
            v1::SubmitDataSubjectRequestRequest {
                subject: Some(subject_aged(10)),
                ..submission()
            },
        ))
        .await
        .expect_err("under the minimum age");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let missing = dsr
        .get_data_subject_request(authed(
            &controller,
            v1::GetDataSubjectRequestRequest {
                name: format!("dataSubjectRequests/{}", uuid::Uuid::new_v4()),
            },
        ))
        .await
        .expect_err("no such request");
    assert_eq!(missing.code(), Code::NotFound);

    let tasks = claim(app, "mailer", 1, 60).await;
    assert_eq!(tasks.len(), 1, "the submission was routed to mailer");
    complete(app, "mailer", &tasks[0], v1::TaskOutcome::Done, "")
        .await
        .expect("completed");
    // A second routed request stays open, so the backlog has a task.
    dsr.submit_data_subject_request(authed(&controller, submission()))
        .await
        .expect("submitted");
    // Sweeps that began after the traffic; the backlog refresh runs on the
    // same interval.
    app.sweeps_after(2).await;
}

#[tokio::test]
async fn the_dashboard_and_the_alert_rules_use_only_served_metrics() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(chart_file("dashboards/gdpr-intake.json"))
            .expect("the dashboard is in the chart"),
    )
    .expect("the dashboard is valid JSON");
    let (panel_exprs, variable_queries) = dashboard_queries(&dashboard);
    let rules = std::fs::read_to_string(chart_file("files/alerts.yaml"))
        .expect("the alert rules are in the chart");
    let alert_exprs = rule_exprs(&rules);
    assert!(panel_exprs.len() >= 15, "panels' queries: {panel_exprs:?}");
    assert!(alert_exprs.len() >= 6, "rules: {alert_exprs:?}");
    let mut used = names_in(&panel_exprs, metric_names, "panel");
    used.extend(names_in(
        &variable_queries,
        variable_metric_names,
        "variable",
    ));
    used.extend(names_in(&alert_exprs, metric_names, "rule"));
    let distinct: BTreeSet<&str> = used.iter().map(|(n, _)| n.as_str()).collect();
    assert!(distinct.len() >= 10, "metric names used: {distinct:?}");

    let (app, metrics) =
        spawn_with_metrics_endpoint_configured(Arc::new(SystemClock), |settings| {
            settings.watchdog.interval = Duration::from_millis(100);
        })
        .await;
    drive(&app).await;
    // The call durations are recorded as each call's last frame goes out,
    // and the processor gauges at the first refresh after the routing.
    let text = eventually(
        "the refused calls and the processor's backlog in the scrape",
        Duration::from_secs(10),
        || async {
            let (status, text) = http_get(metrics, "/metrics").await;
            assert!(status.contains("200"), "{status}");
            let seen = [
                "rpc_status_code=\"NOT_FOUND\"",
                "rpc_status_code=\"FAILED_PRECONDITION\"",
                "processor_id=\"mailer\"",
            ]
            .iter()
            .all(|label| text.contains(label));
            seen.then_some(text)
        },
    )
    .await;
    let served = scraped_names(&text);
    let absent = missing(&used, &served);
    assert!(
        absent.is_empty(),
        "used but not served: {absent:#?}\nserved: {served:#?}"
    );
    // What the traffic made, not only what exists from the start.
    for name in [
        "gdpr_dsr_time_to_close_ratio_bucket",
        "gdpr_watchdog_last_sweep_timestamp_seconds",
        "gdpr_dsr_blocked_total",
    ] {
        assert!(served.contains(name), "{name}: {text}");
    }
    let value = |name: &str, label: &str| sample(&text, name, label);
    assert!(value("gdpr_watchdog_sweeps_total", "outcome=\"complete\"") >= Some(2.0));
    assert_eq!(value("gdpr_watchdog_lease_held", ""), Some(1.0));
    assert_eq!(value("gdpr_ready", ""), Some(1.0));
    app.stop().await;
}

/// Waits until the scrape at `metrics` says `expected` open requests are
/// overdue, at risk and due within 7 days.
async fn deadline_windows_become(metrics: SocketAddr, expected: [f64; 3]) {
    let what = format!("overdue, at_risk, due_7d = {expected:?}");
    eventually(&what, Duration::from_secs(10), || async move {
        let (_, text) = http_get(metrics, "/metrics").await;
        let got = ["overdue", "at_risk", "due_7d"].map(|w| {
            sample(
                &text,
                "gdpr_dsr_open_by_deadline",
                &format!("dsr_deadline=\"{w}\""),
            )
        });
        (got == expected.map(Some)).then_some(())
    })
    .await;
}

/// The deadline windows come from the stored requests as the clock moves:
/// a month ahead nothing, three days before the deadline at risk and due
/// within 7 days, past it overdue.
#[tokio::test]
async fn the_deadline_gauge_follows_the_clock() {
    let start: jiff::Timestamp = "2026-03-09T08:00:00Z".parse().expect("valid");
    let clock = Arc::new(ManualClock::new(start));
    let (app, metrics) = spawn_with_metrics_endpoint_configured(clock.clone(), |settings| {
        settings.watchdog.interval = Duration::from_millis(50);
    })
    .await;
    let due = due_of(&submit(&app, submission()).await);
    deadline_windows_become(metrics, [0.0, 0.0, 0.0]).await;
    clock.set(due - jiff::SignedDuration::from_hours(72));
    deadline_windows_become(metrics, [0.0, 1.0, 1.0]).await;
    clock.set(due + jiff::SignedDuration::from_secs(1));
    deadline_windows_become(metrics, [1.0, 0.0, 0.0]).await;
    app.stop().await;
}
