//! What a run found, printed the way ghz prints it and written as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use tonic::Code;

use crate::anchors::AnchorsReport;
use crate::collector::Received;
use crate::drive::Stats;
use crate::pgbench::PgbenchResult;

/// Latencies in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub average: f64,
    pub fastest: f64,
    pub slowest: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
}

/// How late calls started against a fixed rate's schedule, in
/// milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct StartLag {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// One measured scenario.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub concurrency: u32,
    pub connections: u32,
    /// Calls per second asked for; absent for a closed loop.
    pub rate: Option<f64>,
    pub count: u64,
    pub total_seconds: f64,
    pub requests_per_second: f64,
    pub latency_ms: Latency,
    pub start_lag_ms: Option<StartLag>,
    /// Canonical gRPC code name to count.
    pub status_codes: BTreeMap<String, u64>,
    /// Calls that did not get the code they were meant to get.
    pub unexpected: u64,
    /// requests_per_second over the echo ceiling measured in the same run.
    pub ratio_to_echo: Option<f64>,
    /// Peak resident memory of the spawned server after this scenario.
    pub server_peak_rss_bytes: Option<u64>,
    /// CPU time (user and system, all threads) the spawned server spent
    /// during the measured calls, and per call: what a call costs the
    /// server, however busy the machine.
    pub server_cpu_seconds: Option<f64>,
    pub server_cpu_us_per_call: Option<f64>,
    /// CPU time loadgen itself spent per measured call (for echo, with
    /// the echo server it hosts): the share of the machine that making
    /// the calls and reading their answers takes from the server.
    #[serde(default)]
    pub client_cpu_us_per_call: Option<f64>,
    pub passed: bool,
}

impl ScenarioReport {
    pub fn new(
        scenario: &str,
        concurrency: u32,
        connections: u32,
        rate: Option<f64>,
        stats: &Stats,
    ) -> Self {
        let h = &stats.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        let empty = h.is_empty();
        let at = |q: f64| {
            if empty {
                0.0
            } else {
                ms(h.value_at_quantile(q))
            }
        };
        let count = stats.count();
        Self {
            scenario: scenario.to_owned(),
            concurrency,
            connections,
            rate,
            count,
            total_seconds: stats.elapsed.as_secs_f64(),
            requests_per_second: stats.rps(),
            latency_ms: Latency {
                average: if empty { 0.0 } else { h.mean() / 1000.0 },
                fastest: if empty { 0.0 } else { ms(h.min()) },
                slowest: if empty { 0.0 } else { ms(h.max()) },
                p50: at(0.50),
                p90: at(0.90),
                p99: at(0.99),
                p99_9: at(0.999),
            },
            start_lag_ms: stats
                .lag_us
                .as_ref()
                .filter(|l| !l.is_empty())
                .map(|l| StartLag {
                    p50: ms(l.value_at_quantile(0.50)),
                    p99: ms(l.value_at_quantile(0.99)),
                    max: ms(l.max()),
                }),
            status_codes: stats
                .code_counts()
                .into_iter()
                .map(|(code, n)| (code_name(code).to_owned(), n))
                .collect(),
            unexpected: stats.unexpected,
            ratio_to_echo: None,
            server_peak_rss_bytes: None,
            server_cpu_seconds: None,
            server_cpu_us_per_call: None,
            client_cpu_us_per_call: None,
            passed: count > 0 && stats.unexpected == 0,
        }
    }

    /// Records the server's CPU time over the measured calls.
    pub fn set_server_cpu(&mut self, cpu: Option<std::time::Duration>) {
        self.server_cpu_seconds = cpu.map(|c| c.as_secs_f64());
        self.server_cpu_us_per_call = cpu
            .filter(|_| self.count > 0)
            .map(|c| c.as_secs_f64() * 1e6 / self.count as f64);
    }

    /// Records loadgen's own CPU time over the measured calls.
    pub fn set_client_cpu(&mut self, cpu: Option<std::time::Duration>) {
        self.client_cpu_us_per_call = cpu
            .filter(|_| self.count > 0)
            .map(|c| c.as_secs_f64() * 1e6 / self.count as f64);
    }

    /// The block ghz prints for a run.
    pub fn ghz_text(&self) -> String {
        let l = &self.latency_ms;
        let mut out = String::new();
        let _ = writeln!(out, "Summary:");
        let _ = writeln!(out, "  Count:\t{}", self.count);
        let _ = writeln!(out, "  Total:\t{:.2} s", self.total_seconds);
        let _ = writeln!(out, "  Slowest:\t{:.2} ms", l.slowest);
        let _ = writeln!(out, "  Fastest:\t{:.2} ms", l.fastest);
        let _ = writeln!(out, "  Average:\t{:.2} ms", l.average);
        let _ = writeln!(out, "  Requests/sec:\t{:.2}", self.requests_per_second);
        let _ = writeln!(out);
        let _ = writeln!(out, "Latency distribution:");
        for (label, value) in [
            ("50", l.p50),
            ("90", l.p90),
            ("99", l.p99),
            ("99.9", l.p99_9),
        ] {
            let _ = writeln!(out, "  {label} % in {value:.2} ms");
        }
        if let Some(lag) = &self.start_lag_ms {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "Start lag behind the schedule: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                lag.p50, lag.p99, lag.max
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "Status code distribution:");
        for (name, n) in &self.status_codes {
            let _ = writeln!(out, "  [{name}]\t{n} responses");
        }
        if self.unexpected > 0 {
            let _ = writeln!(out, "  unexpected: {} calls", self.unexpected);
        }
        out
    }
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub server: ServerInfo,
    pub settings: Settings,
    pub scenarios: Vec<ScenarioReport>,
    pub echo_ceiling_rps: Option<f64>,
    pub pgbench: Option<PgbenchResult>,
    pub pgbench_error: Option<String>,
    /// With --anchors: what the database engine did with the same work,
    /// and the table of ratios and targets.
    pub anchors: Option<AnchorsReport>,
    /// With trace export on: what the OTLP receiver got.
    pub trace_export: Option<TraceExportCheck>,
    pub passed: bool,
}

/// The spans a traced server exported, against the calls it was sent.
#[derive(Clone, Debug, Serialize)]
pub struct TraceExportCheck {
    pub sampler: &'static str,
    /// Calls to the intake service, warm-up and preloading included.
    pub service_calls: u64,
    pub received: Received,
    /// Whether the server drained and flushed within its grace period.
    pub flushed_at_exit: bool,
}

impl TraceExportCheck {
    /// Every call's SERVER span reached the receiver: none was dropped by
    /// a full queue, so the cost measured is the cost of exporting them
    /// all.
    pub fn passed(&self) -> bool {
        self.flushed_at_exit && self.received.server_spans >= self.service_calls
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub os: &'static str,
    pub arch: &'static str,
}

impl Machine {
    pub fn this() -> Self {
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerInfo {
    /// `spawned` or `external`.
    pub mode: &'static str,
    /// The spawned server's backend.
    pub backend: Option<&'static str>,
    pub address: Option<String>,
    pub peak_rss_bytes: Option<u64>,
    /// Whether the spawned server exported its spans.
    pub trace_export: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub concurrency: u32,
    pub connections: u32,
    pub rate: Option<f64>,
    pub duration_seconds: Option<f64>,
    pub count: Option<u64>,
    pub warmup_seconds: f64,
    pub echo_payload_bytes: usize,
    pub submit_preload: u64,
    pub get_preload: u64,
    pub get_miss_ratio: f64,
    pub list_page_size: i32,
    pub task_preload: u64,
}

impl Report {
    /// The closing table, then one `result:` line per check.
    pub fn summary_text(&self) -> String {
        let mut out = String::new();
        let where_ = match (self.server.mode, self.server.backend) {
            ("spawned", Some(backend)) => format!(
                "spawned gdpr-intake on {backend}, trace export {}",
                if self.server.trace_export {
                    "on"
                } else {
                    "off"
                }
            ),
            _ => format!(
                "gdpr-intake at {}",
                self.server.address.as_deref().unwrap_or("?")
            ),
        };
        let load = match self.settings.rate {
            Some(rate) => format!("{rate}/s, at most {} in flight", self.settings.concurrency),
            None => format!("{} calls in flight", self.settings.concurrency),
        };
        let length = match (self.settings.count, self.settings.duration_seconds) {
            (Some(n), _) => format!("{n} calls"),
            (None, Some(s)) => format!("{s}s"),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "== summary: {where_}; {load} over {} connection(s); {length} per scenario; {} cpus",
            self.settings.connections, self.machine.cpus
        );
        let _ = writeln!(
            out,
            "{:<16} {:>9} {:>12} {:>8} {:>8} {:>9} {:>10} {:>12} {:>15}",
            "scenario",
            "count",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "vs echo",
            "peak RSS",
            "CPU us/call",
            "client us/call"
        );
        for s in &self.scenarios {
            let ratio = s
                .ratio_to_echo
                .map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
            let rss = s.server_peak_rss_bytes.map_or_else(|| "-".to_owned(), mib);
            let us = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |us| format!("{us:.0}"));
            let _ = writeln!(
                out,
                "{:<16} {:>9} {:>12.1} {:>8.2} {:>8.2} {:>9} {:>10} {:>12} {:>15}",
                s.scenario,
                s.count,
                s.requests_per_second,
                s.latency_ms.p50,
                s.latency_ms.p99,
                ratio,
                rss,
                us(s.server_cpu_us_per_call),
                us(s.client_cpu_us_per_call)
            );
        }
        if let Some(ceiling) = self.echo_ceiling_rps {
            let _ = writeln!(out, "echo ceiling: {ceiling:.1} calls/s");
        }
        // With anchors, the single-row INSERT is a line of their table.
        if let (Some(pg), None) = (&self.pgbench, &self.anchors) {
            let _ = write!(
                out,
                "pgbench single-row INSERT: {:.1} tps ({} clients, {} threads, {}s)",
                pg.tps, pg.clients, pg.threads, pg.seconds
            );
            if let Some(submit) = self.scenarios.iter().find(|s| s.scenario == "submit") {
                let _ = write!(
                    out,
                    "; submit is {:.2}x of it",
                    submit.requests_per_second / pg.tps.max(f64::MIN_POSITIVE)
                );
            }
            let _ = writeln!(out);
        }
        if let Some(peak) = self.server.peak_rss_bytes {
            let _ = writeln!(out, "server peak RSS (VmHWM): {}", mib(peak));
        }
        if let Some(anchors) = &self.anchors {
            let _ = write!(out, "{}", anchors.text());
        }
        for s in &self.scenarios {
            let verdict = if s.passed { "passed" } else { "failed" };
            let _ = writeln!(
                out,
                "result: {} {verdict} ({} calls, {} unexpected)",
                s.scenario, s.count, s.unexpected
            );
        }
        match (&self.pgbench, &self.pgbench_error) {
            (Some(pg), _) => {
                let _ = writeln!(out, "result: pgbench passed ({:.1} tps)", pg.tps);
            }
            (None, Some(e)) => {
                let _ = writeln!(out, "result: pgbench failed ({e})");
            }
            (None, None) => {}
        }
        // The verdict is the only `passed` or `failed` of the line: the
        // smoke test counts lines by it.
        match &self.anchors {
            Some(anchors) if anchors.passed() => {
                let _ = writeln!(
                    out,
                    "result: anchors passed ({} measured)",
                    anchors.anchors.len()
                );
            }
            Some(anchors) => {
                let _ = writeln!(
                    out,
                    "result: anchors failed ({} measured, {} not)",
                    anchors.anchors.len(),
                    anchors.errors.len()
                );
            }
            None => {}
        }
        if let Some(check) = &self.trace_export {
            let r = &check.received;
            let _ = writeln!(
                out,
                "trace export: sampler {}; the OTLP receiver got {} spans ({} SERVER spans for {} calls to the service) in {} exports{}",
                check.sampler,
                r.spans,
                r.server_spans,
                check.service_calls,
                r.exports,
                if check.flushed_at_exit {
                    ""
                } else {
                    "; the server did not exit within its grace period"
                }
            );
            let verdict = if check.passed() { "passed" } else { "failed" };
            let _ = writeln!(out, "result: trace export {verdict}");
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> Result<(), String> {
        write_json(self, path)
    }

    /// The report of the scenario of this name.
    pub fn scenario(&self, name: &str) -> Option<&ScenarioReport> {
        self.scenarios.iter().find(|s| s.scenario == name)
    }
}

/// Two runs of the same scenarios, trace export off and on.
#[derive(Clone, Debug, Serialize)]
pub struct TraceComparison {
    pub off: Report,
    pub on: Report,
    /// Scenario to requests/s with export on over requests/s with it off.
    pub on_over_off: BTreeMap<String, f64>,
}

impl TraceComparison {
    pub fn new(off: Report, on: Report) -> Self {
        let on_over_off = on
            .scenarios
            .iter()
            .filter(|s| !s.scenario.starts_with("echo"))
            .filter_map(|s_on| {
                let s_off = off.scenario(&s_on.scenario)?;
                (s_off.requests_per_second > 0.0).then(|| {
                    (
                        s_on.scenario.clone(),
                        s_on.requests_per_second / s_off.requests_per_second,
                    )
                })
            })
            .collect();
        Self {
            off,
            on,
            on_over_off,
        }
    }

    /// Under `== {title}`, one line per scenario: throughput and p99 off
    /// and on.
    pub fn text(&self, title: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "== {title}\n{:<16} {:>12} {:>12} {:>8} {:>10} {:>10} {:>14}",
            "scenario", "off req/s", "on req/s", "on/off", "off p99", "on p99", "CPU us/call"
        );
        for (name, ratio) in &self.on_over_off {
            if let (Some(off), Some(on)) = (self.off.scenario(name), self.on.scenario(name)) {
                let cpu = cpu_change(off.server_cpu_us_per_call, on.server_cpu_us_per_call);
                let _ = writeln!(
                    out,
                    "{:<16} {:>12.1} {:>12.1} {:>7.1}% {:>8.2}ms {:>8.2}ms {:>14}",
                    name,
                    off.requests_per_second,
                    on.requests_per_second,
                    ratio * 100.0,
                    off.latency_ms.p99,
                    on.latency_ms.p99,
                    cpu
                );
            }
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> Result<(), String> {
        write_json(self, path)
    }
}

/// The off/on pair made several times, and the medians over the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct TraceRounds {
    pub rounds: Vec<TraceComparison>,
    /// Scenario to its medians.
    pub median: BTreeMap<String, MedianComparison>,
}

/// One scenario over the rounds of a [`TraceRounds`].
#[derive(Clone, Debug, Serialize)]
pub struct MedianComparison {
    /// Rounds the scenario was measured in, off and on.
    pub rounds: usize,
    pub off_requests_per_second: f64,
    pub on_requests_per_second: f64,
    /// The median on over the median off.
    pub on_over_off: f64,
    /// The median of the rounds' own on/off ratios: each round's pair ran
    /// back to back, under the same load from the rest of the machine, so
    /// this is the steadier figure of the two.
    pub median_round_on_over_off: f64,
    /// The lowest and highest on/off ratio of a single round.
    pub on_over_off_min: f64,
    pub on_over_off_max: f64,
    pub off_cpu_us_per_call: Option<f64>,
    pub on_cpu_us_per_call: Option<f64>,
}

impl TraceRounds {
    pub fn new(rounds: Vec<TraceComparison>) -> Self {
        #[derive(Default)]
        struct Samples {
            off: Vec<f64>,
            on: Vec<f64>,
            ratio: Vec<f64>,
            off_cpu: Vec<f64>,
            on_cpu: Vec<f64>,
        }
        let mut samples: BTreeMap<&str, Samples> = BTreeMap::new();
        for round in &rounds {
            for (name, ratio) in &round.on_over_off {
                let (Some(off), Some(on)) = (round.off.scenario(name), round.on.scenario(name))
                else {
                    continue;
                };
                let s = samples.entry(name).or_default();
                s.off.push(off.requests_per_second);
                s.on.push(on.requests_per_second);
                s.ratio.push(*ratio);
                s.off_cpu.extend(off.server_cpu_us_per_call);
                s.on_cpu.extend(on.server_cpu_us_per_call);
            }
        }
        let median = samples
            .into_iter()
            .filter_map(|(name, s)| {
                let off = median(&s.off)?;
                let on = median(&s.on)?;
                let row = MedianComparison {
                    rounds: s.ratio.len(),
                    off_requests_per_second: off,
                    on_requests_per_second: on,
                    on_over_off: on / off,
                    median_round_on_over_off: median(&s.ratio)?,
                    on_over_off_min: s.ratio.iter().copied().fold(f64::INFINITY, f64::min),
                    on_over_off_max: s.ratio.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    off_cpu_us_per_call: median(&s.off_cpu),
                    on_cpu_us_per_call: median(&s.on_cpu),
                };
                Some((name.to_owned(), row))
            })
            .collect();
        Self { rounds, median }
    }

    /// One line per scenario: the median throughput off and on, their
    /// ratio, the median and range of the rounds' ratios, and the median
    /// CPU per call.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "== trace export off vs on, median of {} rounds\n{:<16} {:>12} {:>12} {:>8} {:>12} {:>11} {:>11} {:>14}",
            self.rounds.len(),
            "scenario",
            "off req/s",
            "on req/s",
            "on/off",
            "round on/off",
            "min on/off",
            "max on/off",
            "CPU us/call"
        );
        for (name, m) in &self.median {
            let _ = writeln!(
                out,
                "{:<16} {:>12.1} {:>12.1} {:>7.1}% {:>11.1}% {:>10.1}% {:>10.1}% {:>14}",
                name,
                m.off_requests_per_second,
                m.on_requests_per_second,
                m.on_over_off * 100.0,
                m.median_round_on_over_off * 100.0,
                m.on_over_off_min * 100.0,
                m.on_over_off_max * 100.0,
                cpu_change(m.off_cpu_us_per_call, m.on_cpu_us_per_call)
            );
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> Result<(), String> {
        write_json(self, path)
    }
}

/// The middle value, or the mean of the two middle ones for an even
/// count; none of none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// Server CPU per call off and on, `117 -> 162`.
fn cpu_change(off: Option<f64>, on: Option<f64>) -> String {
    match (off, on) {
        (Some(a), Some(b)) => format!("{a:.0} -> {b:.0}"),
        _ => "-".to_owned(),
    }
}

fn write_json(value: &impl Serialize, path: &Path) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| format!("cannot encode the report: {e}"))?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The canonical name of a gRPC status code, as grpcurl and ghz show it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_canonical_name() {
        for i in 0..17 {
            let name = code_name(Code::from(i));
            assert!(
                name.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{name}"
            );
        }
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
    }

    /// A run of `get` at `rps` calls/s, at `cpu` µs of server CPU a call,
    /// and of the echo ceiling.
    fn run(trace_export: bool, rps: f64, cpu: f64) -> Report {
        let scenario = |name: &str, rps: f64, cpu: Option<f64>| ScenarioReport {
            scenario: name.to_owned(),
            concurrency: 16,
            connections: 4,
            rate: None,
            count: rps as u64,
            total_seconds: 1.0,
            requests_per_second: rps,
            latency_ms: Latency {
                average: 1.0,
                fastest: 0.1,
                slowest: 9.0,
                p50: 1.0,
                p90: 2.0,
                p99: 3.0,
                p99_9: 4.0,
            },
            start_lag_ms: None,
            status_codes: BTreeMap::new(),
            unexpected: 0,
            ratio_to_echo: None,
            server_peak_rss_bytes: None,
            server_cpu_seconds: None,
            server_cpu_us_per_call: cpu,
            client_cpu_us_per_call: None,
            passed: true,
        };
        Report {
            machine: Machine::this(),
            server: ServerInfo {
                mode: "spawned",
                backend: Some("sqlite"),
                address: None,
                peak_rss_bytes: None,
                trace_export,
            },
            settings: Settings {
                concurrency: 16,
                connections: 4,
                rate: None,
                duration_seconds: Some(1.0),
                count: None,
                warmup_seconds: 0.0,
                echo_payload_bytes: 256,
                submit_preload: 0,
                get_preload: 1000,
                get_miss_ratio: 0.0,
                list_page_size: 20,
                task_preload: 5000,
            },
            scenarios: vec![
                scenario("get", rps, Some(cpu)),
                scenario("echo", 30_000.0, None),
            ],
            echo_ceiling_rps: Some(30_000.0),
            pgbench: None,
            pgbench_error: None,
            anchors: None,
            trace_export: None,
            passed: true,
        }
    }

    #[test]
    fn rounds_give_the_medians_and_the_range_of_the_ratios() {
        let rounds = TraceRounds::new(vec![
            TraceComparison::new(run(false, 1000.0, 100.0), run(true, 900.0, 140.0)),
            TraceComparison::new(run(false, 1200.0, 110.0), run(true, 960.0, 150.0)),
            TraceComparison::new(run(false, 1100.0, 90.0), run(true, 1045.0, 130.0)),
        ]);
        assert_eq!(rounds.median.keys().collect::<Vec<_>>(), ["get"]);
        let get = &rounds.median["get"];
        assert_eq!(get.rounds, 3);
        assert_eq!(get.off_requests_per_second, 1100.0);
        assert_eq!(get.on_requests_per_second, 960.0);
        assert!((get.on_over_off - 960.0 / 1100.0).abs() < 1e-12);
        // The rounds' own ratios are 0.9, 0.8 and 0.95.
        assert!((get.median_round_on_over_off - 0.9).abs() < 1e-12);
        assert!((get.on_over_off_min - 0.8).abs() < 1e-12);
        assert!((get.on_over_off_max - 0.95).abs() < 1e-12);
        assert_eq!(get.off_cpu_us_per_call, Some(100.0));
        assert_eq!(get.on_cpu_us_per_call, Some(140.0));
        let text = rounds.text();
        assert!(text.starts_with("== trace export off vs on, median of 3 rounds\n"));
        assert!(text.contains("100 -> 140"), "{text}");
    }

    #[test]
    fn the_anchors_result_line_says_failed_only_when_they_failed() {
        use crate::anchors::{AnchorError, Measured};
        use crate::cli::Backend;

        // What the smoke test counts: lines that start with `result:` and
        // say `failed`.
        let failed_lines = |report: &Report| {
            report
                .summary_text()
                .lines()
                .filter(|l| l.starts_with("result: ") && l.contains(" failed"))
                .count()
        };
        let with = |errors: Vec<AnchorError>| {
            let mut report = run(false, 1000.0, 100.0);
            let measured = Measured {
                errors,
                ..Measured::default()
            };
            report.anchors = Some(AnchorsReport::new(
                Backend::Sqlite,
                measured,
                &[("get", 1000.0)],
                Some(30_000.0),
                16,
            ));
            report
        };
        let clean = with(Vec::new());
        assert!(
            clean
                .summary_text()
                .contains("result: anchors passed (0 measured)")
        );
        assert_eq!(failed_lines(&clean), 0);
        let broken = with(vec![AnchorError {
            name: "submit-write-set",
            message: "disk full".to_owned(),
        }]);
        assert_eq!(failed_lines(&broken), 1);
        assert!(broken.summary_text().contains("| get "));
    }

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[4.0]), Some(4.0));
        assert_eq!(median(&[9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(median(&[9.0, 1.0, 3.0, 5.0]), Some(4.0));
        assert_eq!(median(&[2.0, 2.0, 7.0, 1.0, 100.0]), Some(2.0));
    }
}
