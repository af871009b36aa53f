//! Anchors: what the database engine itself does with the work of a
//! scenario, measured in the same run and on the same machine, printed
//! beside the service's rate with their ratio and the target the service is
//! held to.
//!
//! On PostgreSQL pgbench replays the statements of each scenario against
//! the spawned server's own database, which the server migrated: the real
//! tables with their indexes, checks and foreign keys
//! ([`postgres`]; the scripts are in `tools/loadgen/anchors/`). On SQLite
//! the submission's rows are written straight through the engine into a
//! fresh file migrated the way the server migrates its own ([`sqlite`]).
//! Where no anchor stands for a scenario, the target is a share of the echo
//! ceiling or an absolute rate. A target not met does not fail the run:
//! the figures are for a full run on a quiet machine, not for a smoke test.

mod postgres;
#[cfg(test)]
mod schema;
mod sqlite;

use std::fmt::Write as _;

use serde::Serialize;

use crate::cli::Backend;
use crate::pgbench::PgbenchResult;

/// The controller the anchors write as: none of the service's rows is
/// theirs, so they delete exactly what they added.
pub const ANCHOR_CONTROLLER: &str = "loadgen-anchor";

/// One anchor's measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Anchor {
    pub name: &'static str,
    /// Units of the service's work per second: requests stored, requests
    /// read, or claim-complete steps.
    pub per_second: f64,
    pub count: u64,
    /// How it was measured.
    pub how: String,
    /// Something that makes the figure less than it seems.
    pub warning: Option<String>,
}

/// An anchor that could not be measured.
#[derive(Clone, Debug, Serialize)]
pub struct AnchorError {
    pub name: &'static str,
    pub message: String,
}

/// What the anchors of one run measured.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub anchors: Vec<Anchor>,
    pub errors: Vec<AnchorError>,
    /// The single-row INSERT as pgbench reported it, for the report's
    /// `pgbench` field.
    pub insert_one_row: Option<PgbenchResult>,
}

impl Measured {
    fn record(&mut self, name: &'static str, result: Result<Anchor, String>) {
        match result {
            Ok(anchor) => self.anchors.push(anchor),
            Err(message) => self.errors.push(AnchorError { name, message }),
        }
    }

    fn per_second(&self, name: &str) -> Option<f64> {
        self.anchors
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.per_second)
    }
}

/// What the anchors need to know of the run.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    pub backend: Backend,
    /// The spawned server's PostgreSQL database.
    pub database_url: Option<&'a str>,
    pub clients: u32,
    pub duration: std::time::Duration,
    pub task_preload: u64,
    /// The service's tenant, whose stored requests `point-select` reads.
    pub tenant: &'a str,
    /// The submitting caller, as the service records it on events.
    pub actor: &'a str,
}

/// Runs the anchors of `plan.backend`, one after the other, each for
/// `plan.duration`.
pub async fn measure(plan: &Plan<'_>) -> Measured {
    match (plan.backend, plan.database_url) {
        (Backend::Postgres, Some(url)) => postgres::measure(url, plan).await,
        (Backend::Postgres, None) => {
            let mut measured = Measured::default();
            measured.record("all", Err("no database to run pgbench against".to_owned()));
            measured
        }
        (Backend::Sqlite, _) => {
            let mut measured = Measured::default();
            let result = sqlite::submit_write_set(plan.duration, plan.actor).await;
            measured.record(sqlite::SUBMIT_WRITE_SET, result);
            measured
        }
    }
}

/// What a scenario's rate is held to.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// At least `factor` times the anchor's rate.
    OfAnchor { factor: f64 },
    /// At least `share` of the echo ceiling.
    OfEcho { share: f64 },
    /// At least `per_second`, at `in_flight` calls in flight when the
    /// target says so. The anchor beside it, if any, is for reference.
    Absolute {
        per_second: f64,
        in_flight: Option<u32>,
    },
}

impl Target {
    pub fn text(self) -> String {
        match self {
            Target::OfAnchor { factor } => format!(">= {factor:.1}x anchor"),
            Target::OfEcho { share } => format!(">= {:.0} % of echo", share * 100.0),
            Target::Absolute {
                per_second,
                in_flight: Some(n),
            } => format!(">= {}/s at {n} in flight", thousands(per_second)),
            Target::Absolute {
                per_second,
                in_flight: None,
            } => format!(">= {}/s", thousands(per_second)),
        }
    }

    /// The ratio shown (service over the anchor, or over the echo ceiling)
    /// and whether the target is met, when the figures it needs are there.
    pub fn judge(
        self,
        service: f64,
        anchor: Option<f64>,
        echo: Option<f64>,
    ) -> (Option<f64>, Option<bool>) {
        let over = |base: Option<f64>| base.filter(|b| *b > 0.0).map(|b| service / b);
        match self {
            Target::OfAnchor { factor } => {
                let ratio = over(anchor);
                (ratio, ratio.map(|r| r >= factor))
            }
            Target::OfEcho { share } => {
                let ratio = over(echo);
                (ratio, ratio.map(|r| r >= share))
            }
            Target::Absolute { per_second, .. } => (over(anchor), Some(service >= per_second)),
        }
    }
}

/// What a scenario is set beside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Beside {
    Anchor(&'static str),
    Echo,
    Nothing,
}

/// One line of the table: a scenario, what it is set beside, its target.
#[derive(Clone, Copy, Debug)]
struct Goal {
    scenario: &'static str,
    beside: Beside,
    target: Target,
}

const POSTGRES_GOALS: &[Goal] = &[
    Goal {
        scenario: "submit",
        beside: Beside::Anchor(postgres::SUBMIT_WRITE_SET),
        target: Target::OfAnchor { factor: 1.0 },
    },
    Goal {
        scenario: "submit",
        beside: Beside::Anchor(postgres::INSERT_ONE_ROW),
        target: Target::OfAnchor { factor: 0.4 },
    },
    Goal {
        scenario: "get",
        beside: Beside::Anchor(postgres::POINT_SELECT),
        target: Target::OfAnchor { factor: 0.5 },
    },
    Goal {
        scenario: "list",
        beside: Beside::Echo,
        target: Target::OfEcho { share: 0.25 },
    },
    Goal {
        scenario: "list-by-state",
        beside: Beside::Echo,
        target: Target::OfEcho { share: 0.25 },
    },
    Goal {
        scenario: "claim-complete",
        beside: Beside::Anchor(postgres::CLAIM_COMPLETE),
        target: Target::OfAnchor { factor: 0.5 },
    },
];

const SQLITE_GOALS: &[Goal] = &[
    Goal {
        scenario: "submit",
        beside: Beside::Anchor(sqlite::SUBMIT_WRITE_SET),
        target: Target::Absolute {
            per_second: 10_000.0,
            in_flight: Some(64),
        },
    },
    Goal {
        scenario: "get",
        beside: Beside::Echo,
        target: Target::OfEcho { share: 0.5 },
    },
    Goal {
        scenario: "list",
        beside: Beside::Echo,
        target: Target::OfEcho { share: 0.25 },
    },
    Goal {
        scenario: "list-by-state",
        beside: Beside::Echo,
        target: Target::OfEcho { share: 0.25 },
    },
    Goal {
        scenario: "claim-complete",
        beside: Beside::Nothing,
        target: Target::Absolute {
            per_second: 2_000.0,
            in_flight: None,
        },
    },
];

/// One line of the anchors table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub scenario: &'static str,
    pub service_per_second: f64,
    /// The anchor's name, `echo`, or none.
    pub anchor: Option<&'static str>,
    pub anchor_per_second: Option<f64>,
    pub ratio: Option<f64>,
    pub target: Target,
    pub target_text: String,
    /// Absent when a figure it needs is missing.
    pub met: Option<bool>,
}

/// The anchors of a run and the table they make with its scenarios.
#[derive(Clone, Debug, Serialize)]
pub struct AnchorsReport {
    pub backend: &'static str,
    pub anchors: Vec<Anchor>,
    pub errors: Vec<AnchorError>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl AnchorsReport {
    /// The table of `backend` for the scenarios measured (`(name,
    /// calls/s)`), the echo ceiling and the calls in flight of the run.
    pub fn new(
        backend: Backend,
        measured: Measured,
        scenarios: &[(&str, f64)],
        echo: Option<f64>,
        in_flight: u32,
    ) -> Self {
        let goals = match backend {
            Backend::Postgres => POSTGRES_GOALS,
            Backend::Sqlite => SQLITE_GOALS,
        };
        let mut rows = Vec::new();
        let mut notes = Vec::new();
        for goal in goals {
            let Some(&(_, service)) = scenarios.iter().find(|(name, _)| *name == goal.scenario)
            else {
                continue;
            };
            let (anchor, anchor_per_second) = match goal.beside {
                Beside::Anchor(name) => (Some(name), measured.per_second(name)),
                Beside::Echo => (Some("echo"), echo),
                Beside::Nothing => (None, None),
            };
            let (ratio, met) = goal.target.judge(service, anchor_per_second, echo);
            if let Target::Absolute {
                in_flight: Some(n), ..
            } = goal.target
                && n != in_flight
            {
                notes.push(format!(
                    "{}: the target holds at {n} calls in flight; this run had {in_flight}",
                    goal.scenario
                ));
            }
            rows.push(Row {
                scenario: goal.scenario,
                service_per_second: service,
                anchor,
                anchor_per_second,
                ratio,
                target: goal.target,
                target_text: goal.target.text(),
                met,
            });
        }
        if rows.iter().any(|r| r.scenario == "claim-complete") {
            notes.push(
                "claim-complete: staying within 20 % of its rate with 1,000 tasks queued takes a second run (--task-preload 1000); not judged here"
                    .to_owned(),
            );
        }
        notes.extend(
            measured
                .anchors
                .iter()
                .filter_map(|a| a.warning.as_ref().map(|w| format!("{}: {w}", a.name))),
        );
        Self {
            backend: backend.as_str(),
            anchors: measured.anchors,
            errors: measured.errors,
            rows,
            notes,
        }
    }

    /// The table, as Markdown with aligned columns, then how each anchor
    /// was measured, the notes and the anchors that failed.
    pub fn text(&self) -> String {
        let header = ["Scenario", "Service", "Anchor", "Ratio", "Target", "Met"];
        let mut cells: Vec<[String; 6]> = vec![header.map(str::to_owned)];
        for row in &self.rows {
            let anchor = match (row.anchor, row.anchor_per_second) {
                (Some(name), Some(rate)) => format!("{name} {}/s", rate_text(rate)),
                (Some(name), None) => format!("{name} (not measured)"),
                (None, _) => "-".to_owned(),
            };
            cells.push([
                row.scenario.to_owned(),
                format!("{}/s", rate_text(row.service_per_second)),
                anchor,
                row.ratio.map_or("-".to_owned(), |r| format!("{r:.2}x")),
                row.target_text.clone(),
                match row.met {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "-",
                }
                .to_owned(),
            ]);
        }
        let mut widths = [0usize; 6];
        for line in &cells {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "== anchors: what {} itself does with the same work, in this run",
            self.backend
        );
        for (i, line) in cells.iter().enumerate() {
            let _ = writeln!(out, "{}", table_line(line, &widths));
            if i == 0 {
                let rule = widths.map(|w| "-".repeat(w));
                let _ = writeln!(out, "{}", table_line(&rule, &widths));
            }
        }
        for anchor in &self.anchors {
            let _ = writeln!(
                out,
                "anchor {}: {}/s, {} in all ({})",
                anchor.name,
                rate_text(anchor.per_second),
                anchor.count,
                anchor.how
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        for error in &self.errors {
            let _ = writeln!(out, "anchor {} failed: {}", error.name, error.message);
        }
        out
    }

    pub fn passed(&self) -> bool {
        self.errors.is_empty()
    }
}

/// `| a | b |` with each cell padded to its column's width.
fn table_line(cells: &[String; 6], widths: &[usize; 6]) -> String {
    let mut line = String::from("|");
    for (cell, width) in cells.iter().zip(widths) {
        let _ = write!(line, " {cell:<width$} |");
    }
    line
}

/// A rate with one decimal and thousands separated: `12,345.6`.
fn rate_text(rate: f64) -> String {
    let tenths = (rate * 10.0).round() as u64;
    format!("{}.{}", thousands((tenths / 10) as f64), tenths % 10)
}

/// A whole number with thousands separated: `10,000`.
fn thousands(value: f64) -> String {
    let digits = (value.round() as u64).to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(name: &'static str, per_second: f64) -> Anchor {
        Anchor {
            name,
            per_second,
            count: 1,
            how: String::new(),
            warning: None,
        }
    }

    #[test]
    fn targets_are_judged_on_the_ratio_or_the_rate() {
        let twice = Target::OfAnchor { factor: 1.0 };
        assert_eq!(
            twice.judge(200.0, Some(100.0), None),
            (Some(2.0), Some(true))
        );
        assert_eq!(
            twice.judge(99.0, Some(100.0), None),
            (Some(0.99), Some(false))
        );
        assert_eq!(twice.judge(99.0, None, Some(1.0)), (None, None));
        assert_eq!(twice.judge(99.0, Some(0.0), None), (None, None));
        let quarter = Target::OfEcho { share: 0.25 };
        assert_eq!(
            quarter.judge(250.0, Some(1.0), Some(1000.0)),
            (Some(0.25), Some(true))
        );
        assert_eq!(quarter.judge(249.0, None, Some(1000.0)).1, Some(false));
        let absolute = Target::Absolute {
            per_second: 10_000.0,
            in_flight: Some(64),
        };
        assert_eq!(
            absolute.judge(12_000.0, Some(48_000.0), None),
            (Some(0.25), Some(true))
        );
        assert_eq!(absolute.judge(9_999.0, None, None), (None, Some(false)));
    }

    #[test]
    fn targets_read_as_the_goals_state_them() {
        assert_eq!(Target::OfAnchor { factor: 0.4 }.text(), ">= 0.4x anchor");
        assert_eq!(Target::OfEcho { share: 0.5 }.text(), ">= 50 % of echo");
        assert_eq!(
            Target::Absolute {
                per_second: 10_000.0,
                in_flight: Some(64)
            }
            .text(),
            ">= 10,000/s at 64 in flight"
        );
        assert_eq!(
            Target::Absolute {
                per_second: 2_000.0,
                in_flight: None
            }
            .text(),
            ">= 2,000/s"
        );
    }

    #[test]
    fn a_postgres_table_sets_each_scenario_beside_its_anchor() {
        let measured = Measured {
            anchors: vec![
                anchor(postgres::SUBMIT_WRITE_SET, 2000.0),
                anchor(postgres::INSERT_ONE_ROW, 4000.0),
                anchor(postgres::POINT_SELECT, 10_000.0),
            ],
            errors: vec![AnchorError {
                name: postgres::CLAIM_COMPLETE,
                message: "pgbench failed".to_owned(),
            }],
            insert_one_row: None,
        };
        let scenarios = [
            ("submit", 2500.0),
            ("get", 4000.0),
            ("list", 3000.0),
            ("claim-complete", 900.0),
            ("echo", 20_000.0),
        ];
        let report =
            AnchorsReport::new(Backend::Postgres, measured, &scenarios, Some(20_000.0), 16);
        let lines: Vec<_> = report
            .rows
            .iter()
            .map(|r| (r.scenario, r.anchor, r.ratio, r.met))
            .collect();
        assert_eq!(
            lines,
            [
                ("submit", Some("submit-write-set"), Some(1.25), Some(true)),
                ("submit", Some("insert-one-row"), Some(0.625), Some(true)),
                ("get", Some("point-select"), Some(0.4), Some(false)),
                ("list", Some("echo"), Some(0.15), Some(false)),
                ("claim-complete", Some("claim-complete"), None, None),
            ]
        );
        assert!(!report.passed());
        let text = report.text();
        let cells: Vec<Vec<&str>> = text
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| {
                l.split('|')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .collect();
        assert_eq!(
            cells[0],
            ["Scenario", "Service", "Anchor", "Ratio", "Target", "Met"]
        );
        assert_eq!(
            cells[2],
            [
                "submit",
                "2,500.0/s",
                "submit-write-set 2,000.0/s",
                "1.25x",
                ">= 1.0x anchor",
                "yes"
            ]
        );
        assert_eq!(cells[6][5], "-");
        assert!(text.contains("claim-complete (not measured)"));
        assert!(text.contains("anchor claim-complete failed: pgbench failed"));
        assert!(text.contains("note: claim-complete: staying within 20 %"));
    }

    #[test]
    fn a_sqlite_table_holds_absolute_targets_and_says_at_what_load() {
        let measured = Measured {
            anchors: vec![anchor(sqlite::SUBMIT_WRITE_SET, 40_000.0)],
            ..Measured::default()
        };
        let scenarios = [("submit", 12_000.0), ("claim-complete", 1_500.0)];
        let report = AnchorsReport::new(Backend::Sqlite, measured, &scenarios, None, 16);
        assert_eq!(report.rows.len(), 2);
        assert_eq!(report.rows[0].ratio, Some(0.3));
        assert_eq!(report.rows[0].met, Some(true));
        assert_eq!(report.rows[1].anchor, None);
        assert_eq!(report.rows[1].met, Some(false));
        assert!(report.passed());
        assert!(report.notes[0].contains("64 calls in flight; this run had 16"));
    }

    #[test]
    fn rates_are_printed_with_thousands_separated() {
        assert_eq!(rate_text(0.0), "0.0");
        assert_eq!(rate_text(999.96), "1,000.0");
        assert_eq!(rate_text(1_234_567.84), "1,234,567.8");
        assert_eq!(thousands(100.0), "100");
        assert_eq!(thousands(100_000.0), "100,000");
    }
}
