//! `loadgen`: the load generator of gdpr-intake.
//!
//! ghz cannot be installed everywhere this project is built, so the
//! repository carries its own: it drives Submit, Get and List at a fixed
//! concurrency or rate, prints what ghz prints, and measures in the same run
//! a bare echo service on the same tonic server settings, so the service's
//! throughput is stated as a share of what gRPC alone reaches on the
//! machine. It can spawn the real `gdpr-intake` binary (SQLite, or a fresh
//! PostgreSQL database) and report the child's peak memory, and set each
//! scenario beside what the database engine itself does with the same work
//! (the anchors). See `tests/load/README.md`.

mod anchors;
mod calls;
mod cli;
mod collector;
mod drive;
mod echo;
mod feed;
mod pgbench;
mod report;
mod spawn;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use gdpr_intake::auth::Role;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use calls::{Scenario, ScenarioCaller, Shared};
use cli::{Args, Backend, ScenarioArg, TraceExport};
use collector::Collector;
use drive::{Plan, Stop};
use report::{
    Machine, Report, ScenarioReport, ServerInfo, Settings, TraceComparison, TraceExportCheck,
    TraceRounds,
};
use spawn::{FreshDatabase, SpawnedServer};

/// The tenant of a spawned server's calls (its database is fresh).
const TENANT: &str = "loadgen";
/// The processor that `claim-complete` claims as.
const PROCESSOR: &str = "loadgen-processor";
/// Tokens outlive any sensible run.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a traced server has to drain and flush its spans at the end.
const FLUSH_GRACE: Duration = Duration::from_secs(30);
/// The sampler of a traced run: every span, the most export can cost.
const SAMPLER: &str = "always_on";
/// The batch span processor's queue in a traced run (the SDK's default is
/// 2,048).
const BSP_QUEUE: usize = 65_536;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("loadgen: {message}");
            ExitCode::from(2)
        }
    }
}

/// Where the intake service is.
enum Target {
    Spawned(SpawnedServer),
    External {
        addr: String,
    },
    /// Only the echo service is driven.
    None,
}

async fn run(args: Args) -> Result<bool, String> {
    args.check_rounds()?;
    let backend = match (&args.addr, args.spawn) {
        (Some(_), _) => None,
        (None, spawn) => Some(spawn.unwrap_or(Backend::Sqlite)),
    };
    if args.pgbench {
        if backend == Some(Backend::Sqlite) {
            return Err(
                "--pgbench compares with PostgreSQL: use --spawn postgres, or --addr with --database-url"
                    .to_owned(),
            );
        }
        if args.database_url.is_none() {
            return Err("--pgbench needs --database-url".to_owned());
        }
        if !pgbench::available() {
            return Err(
                "--pgbench: no pgbench on PATH (Debian: apt-get install postgresql-client)"
                    .to_owned(),
            );
        }
    }
    if args.anchors {
        match backend {
            None => {
                return Err(
                    "--anchors writes to the spawned server's database beside it: it needs a spawned server, not --addr"
                        .to_owned(),
                );
            }
            Some(Backend::Postgres) if !pgbench::available() => {
                return Err(
                    "--anchors on PostgreSQL runs pgbench: no pgbench on PATH (Debian: apt-get install postgresql-client)"
                        .to_owned(),
                );
            }
            Some(_) => {}
        }
    }
    if args.trace_export != TraceExport::Off && backend.is_none() {
        return Err(
            "--trace-export sets the spawned server's exporter: it needs a spawned server, not --addr"
                .to_owned(),
        );
    }
    let mut passed = true;
    let mut comparisons = Vec::new();
    let mut single = None;
    for round in 0..args.rounds {
        let (mut off, mut on) = (None, None);
        for &export in args.trace_export.runs(round) {
            if args.rounds > 1 {
                eprintln!(
                    "loadgen: round {} of {}, trace export {}",
                    round + 1,
                    args.rounds,
                    if export { "on" } else { "off" }
                );
            }
            let report = run_fresh(&args, backend, export).await?;
            print!("{}", report.summary_text());
            passed &= report.passed;
            if export {
                on = Some(report);
            } else {
                off = Some(report);
            }
        }
        match (off, on) {
            (Some(off), Some(on)) => {
                let comparison = TraceComparison::new(off, on);
                let title = if args.rounds > 1 {
                    format!(
                        "round {} of {}: trace export off vs on",
                        round + 1,
                        args.rounds
                    )
                } else {
                    "trace export off vs on".to_owned()
                };
                print!("\n{}", comparison.text(&title));
                comparisons.push(comparison);
            }
            (report, None) | (None, report) => single = report,
        }
    }
    if comparisons.len() > 1 {
        let rounds = TraceRounds::new(comparisons);
        print!("\n{}", rounds.text());
        if let Some(path) = &args.json {
            rounds.write_json(path)?;
        }
    } else if let Some(path) = &args.json {
        match (comparisons.pop(), single) {
            (Some(comparison), _) => comparison.write_json(path)?,
            (None, Some(report)) => report.write_json(path)?,
            (None, None) => {}
        }
    }
    Ok(passed)
}

/// One run, on a fresh database when the backend is PostgreSQL: it lives
/// for the whole run and is dropped whatever happens in it.
async fn run_fresh(args: &Args, backend: Option<Backend>, export: bool) -> Result<Report, String> {
    let fresh = match backend {
        Some(Backend::Postgres) => {
            let url = args.database_url.as_deref().ok_or(
                "--spawn postgres needs --database-url (a server to create a fresh database on)",
            )?;
            Some(FreshDatabase::create(url).await?)
        }
        _ => None,
    };
    let result = run_on(args, backend, fresh.as_ref().map(|d| d.url.clone()), export).await;
    if let Some(db) = fresh
        && let Err(e) = db.drop_now().await
    {
        eprintln!("loadgen: {e}");
    }
    result
}

async fn run_on(
    args: &Args,
    backend: Option<Backend>,
    fresh_url: Option<String>,
    trace_export: bool,
) -> Result<Report, String> {
    let scenarios: Vec<Scenario> = match args.scenario {
        ScenarioArg::All => vec![
            Scenario::Submit,
            Scenario::Get,
            Scenario::List,
            Scenario::ListByState,
            Scenario::ClaimComplete,
            Scenario::Echo,
        ],
        ScenarioArg::Submit => vec![Scenario::Submit],
        ScenarioArg::Get => vec![Scenario::Get],
        ScenarioArg::List => vec![Scenario::List],
        ScenarioArg::ListByState => vec![Scenario::ListByState],
        ScenarioArg::ClaimComplete => vec![Scenario::ClaimComplete],
        ScenarioArg::Echo => vec![Scenario::Echo],
    };
    let needs_service = scenarios.iter().any(|s| *s != Scenario::Echo);
    if scenarios.contains(&Scenario::ClaimComplete)
        && args.count.is_some_and(|n| n > args.task_preload)
    {
        return Err(format!(
            "claim-complete uses one task per call: --task-preload ({}) must be at least --count",
            args.task_preload
        ));
    }
    if scenarios.contains(&Scenario::ClaimComplete) && args.addr.is_some() {
        return Err(
            "claim-complete sets up its own processor and route as admin: it needs a spawned server, not --addr (use the ghz configuration for a running one)"
                .to_owned(),
        );
    }

    let echo_server = echo::EchoServer::start()?;
    let collector = if trace_export {
        Some(Collector::start()?)
    } else {
        None
    };
    let envs: Vec<(&str, String)> = match &collector {
        Some(c) => vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", c.endpoint()),
            ("OTEL_TRACES_SAMPLER", SAMPLER.to_owned()),
            // Room for a few seconds of spans at full load, so that a slow
            // export on a busy machine delays spans instead of dropping
            // them: the run measures exporting every span.
            ("OTEL_BSP_MAX_QUEUE_SIZE", BSP_QUEUE.to_string()),
            ("OTEL_SERVICE_NAME", "gdpr-intake-loadgen".to_owned()),
        ],
        None => Vec::new(),
    };
    let target = match (&args.addr, backend) {
        (Some(addr), _) => Target::External { addr: addr.clone() },
        (None, Some(backend)) if needs_service => {
            let binary = spawn::server_binary(args.server_bin.as_deref())?;
            let server = SpawnedServer::start(
                &binary,
                backend,
                fresh_url.as_deref(),
                &args.server_args,
                &envs,
            )
            .await?;
            eprintln!(
                "loadgen: spawned {} on {} at {} (log: {})",
                binary.display(),
                backend.as_str(),
                server.addr,
                server.log_path().display()
            );
            Target::Spawned(server)
        }
        _ => Target::None,
    };

    let authorization = if needs_service {
        let token = match &target {
            Target::Spawned(server) => server.token(Role::Controller, TENANT, TOKEN_TTL)?,
            _ => external_token(args)?,
        };
        Some(bearer(&token)?)
    } else {
        None
    };
    let service_channels = match &target {
        Target::Spawned(server) => connect(&server.addr.to_string(), args.connections).await?,
        Target::External { addr } => connect(addr, args.connections).await?,
        Target::None => Vec::new(),
    };
    let echo_channels = connect(&echo_server.addr().to_string(), args.connections).await?;

    let concurrency = usize::try_from(args.concurrency).unwrap_or(1);
    let stop = match args.count {
        Some(n) => Stop::Count(n),
        None => Stop::After(args.duration),
    };
    let mut shared = Shared {
        authorization,
        names: Vec::new(),
        get_miss_ratio: args.get_miss_ratio,
        list_page_size: args.list_page_size,
        echo_payload: vec![0x5a; args.echo_payload],
        timeout: args.timeout,
        service_calls: Arc::new(AtomicU64::new(0)),
        processor_authorization: None,
    };

    let watchers = match (&shared.authorization, args.feed_watchers) {
        (Some(authorization), n) if n > 0 => {
            Some(feed::FeedWatchers::start(n, &service_channels, authorization).await?)
        }
        _ => None,
    };

    let mut reports: Vec<ScenarioReport> = Vec::new();
    let mut echo_ceiling = None;
    for scenario in &scenarios {
        let scenario = *scenario;
        // Whether the scenario filled the tables (a page for List does not).
        let preloaded = match scenario {
            Scenario::Submit if args.submit_preload > 0 => {
                eprintln!(
                    "loadgen: submitting {} requests before submit",
                    args.submit_preload
                );
                calls::preload(
                    &service_channels,
                    Arc::new(shared.clone()),
                    concurrency,
                    args.submit_preload,
                )
                .await?;
                true
            }
            Scenario::Get => {
                eprintln!("loadgen: submitting {} requests for get", args.get_preload);
                shared.names = calls::preload(
                    &service_channels,
                    Arc::new(shared.clone()),
                    concurrency,
                    args.get_preload,
                )
                .await?;
                true
            }
            Scenario::List | Scenario::ListByState => {
                // A full first page, whatever ran before (submissions of
                // an adult go in progress).
                let page = u64::try_from(args.list_page_size).unwrap_or(1);
                calls::preload(
                    &service_channels,
                    Arc::new(shared.clone()),
                    concurrency,
                    page,
                )
                .await?;
                false
            }
            Scenario::ClaimComplete => {
                let Target::Spawned(server) = &target else {
                    return Err("claim-complete needs a spawned server".to_owned());
                };
                let admin = bearer(&server.token(Role::Admin, "", TOKEN_TTL)?)?;
                let channel = service_channels
                    .first()
                    .cloned()
                    .ok_or("no connection to set up claim-complete over")?;
                calls::route_to_processor(channel, &admin, TENANT, PROCESSOR, args.timeout).await?;
                shared.processor_authorization = Some(bearer(&server.token(
                    Role::Processor,
                    PROCESSOR,
                    TOKEN_TTL,
                )?)?);
                eprintln!(
                    "loadgen: submitting {} requests, one task each, for claim-complete",
                    args.task_preload
                );
                // The first thousand, then statistics that know the tasks
                // table is not empty, then the rest: a foreign-key check
                // planned while it was empty (and cached on each of the
                // server's connections) reads the whole table, and the
                // preload would slow down as the table grows.
                let first = args.task_preload.min(1_000);
                calls::preload(
                    &service_channels,
                    Arc::new(shared.clone()),
                    concurrency,
                    first,
                )
                .await?;
                if let Some(url) = fresh_url.as_deref() {
                    spawn::analyze(url).await?;
                }
                calls::preload(
                    &service_channels,
                    Arc::new(shared.clone()),
                    concurrency,
                    args.task_preload - first,
                )
                .await?;
                true
            }
            Scenario::Submit | Scenario::Echo => false,
        };
        if preloaded && let Some(url) = fresh_url.as_deref() {
            // What autovacuum does to a table that grew by itself (and the
            // anchors do after their bulk insert): without statistics the
            // planner takes the tables for empty, and the plans it caches on
            // each connection, foreign-key checks included, never change.
            eprintln!("loadgen: ANALYZE after the preload");
            spawn::analyze(url).await?;
        }
        let channels = if scenario == Scenario::Echo {
            &echo_channels
        } else {
            &service_channels
        };
        let shared_now = Arc::new(shared.clone());
        // Each claim-complete step uses up a task: it claims exactly the
        // tasks made for it, or --count of them, whatever --duration says.
        let stop = if scenario == Scenario::ClaimComplete {
            Stop::Count(args.count.unwrap_or(args.task_preload))
        } else {
            stop
        };
        let server = match &target {
            Target::Spawned(server) if scenario != Scenario::Echo => Some(server),
            _ => None,
        };
        let (stats, cpu) = measure(
            args,
            scenario,
            channels,
            &shared_now,
            args.rate,
            stop,
            server,
        )
        .await?;
        let mut report = ScenarioReport::new(
            scenario.name(),
            args.concurrency,
            args.connections,
            args.rate,
            &stats,
        );
        if let Some(server) = server {
            report.server_peak_rss_bytes = server.peak_rss();
            report.set_server_cpu(cpu.server);
        }
        report.set_client_cpu(cpu.own);
        if scenario == Scenario::Echo && args.rate.is_none() {
            echo_ceiling = Some(report.requests_per_second);
        }
        print_scenario(&report);
        reports.push(report);
    }

    if let Some(watchers) = watchers {
        let read = watchers.finish(Duration::from_secs(3)).await?;
        println!(
            "feed watchers: {}, events read: {read} ({} per watcher)",
            args.feed_watchers,
            read / u64::from(args.feed_watchers)
        );
    }

    // The ceiling is always a closed loop at the same concurrency: at a
    // fixed rate, echo would only show the rate.
    if echo_ceiling.is_none() {
        let shared_now = Arc::new(shared.clone());
        let (stats, cpu) = measure(
            args,
            Scenario::Echo,
            &echo_channels,
            &shared_now,
            None,
            stop,
            None,
        )
        .await?;
        let mut report = ScenarioReport::new(
            "echo (ceiling)",
            args.concurrency,
            args.connections,
            None,
            &stats,
        );
        report.set_client_cpu(cpu.own);
        echo_ceiling = Some(report.requests_per_second);
        print_scenario(&report);
        reports.push(report);
    }
    if let Some(ceiling) = echo_ceiling.filter(|c| *c > 0.0) {
        for report in reports
            .iter_mut()
            .filter(|r| !r.scenario.starts_with("echo"))
        {
            report.ratio_to_echo = Some(report.requests_per_second / ceiling);
        }
    }

    let (mut pgbench, mut pgbench_error) = (None, None);
    let mut anchors = None;
    if let (true, Some(backend)) = (args.anchors, backend) {
        let actor = spawn::token_subject(Role::Controller, TENANT);
        let plan = anchors::Plan {
            backend,
            database_url: fresh_url.as_deref(),
            clients: args.concurrency,
            duration: args.duration,
            task_preload: args.task_preload,
            tenant: TENANT,
            actor: &actor,
        };
        let measured = anchors::measure(&plan).await;
        pgbench.clone_from(&measured.insert_one_row);
        let rates: Vec<(&str, f64)> = reports
            .iter()
            .map(|r| (r.scenario.as_str(), r.requests_per_second))
            .collect();
        anchors = Some(anchors::AnchorsReport::new(
            backend,
            measured,
            &rates,
            echo_ceiling,
            args.concurrency,
        ));
    } else if args.pgbench {
        let url = fresh_url.as_deref().or(args.database_url.as_deref());
        match url {
            Some(url) => {
                eprintln!("loadgen: running pgbench with {} clients", args.concurrency);
                match pgbench::run(url, args.concurrency, args.duration).await {
                    Ok(result) => pgbench = Some(result),
                    Err(e) => pgbench_error = Some(e),
                }
            }
            None => pgbench_error = Some("no database to run it against".to_owned()),
        }
    }

    let server_info = match &target {
        Target::Spawned(server) => ServerInfo {
            mode: "spawned",
            backend: backend.map(Backend::as_str),
            address: Some(server.addr.to_string()),
            peak_rss_bytes: server.peak_rss(),
            trace_export,
        },
        Target::External { addr } => ServerInfo {
            mode: "external",
            backend: None,
            address: Some(addr.clone()),
            peak_rss_bytes: None,
            trace_export: false,
        },
        Target::None => ServerInfo {
            mode: "none",
            backend: None,
            address: None,
            peak_rss_bytes: None,
            trace_export: false,
        },
    };
    // A traced server drains and flushes its spans before they are counted.
    let trace_check = match (target, &collector) {
        (Target::Spawned(server), Some(collector)) => {
            let flushed_at_exit = server.stop_gracefully(FLUSH_GRACE).await;
            Some(TraceExportCheck {
                sampler: SAMPLER,
                service_calls: shared.service_calls.load(Ordering::Relaxed),
                received: collector.received(),
                flushed_at_exit,
            })
        }
        (Target::Spawned(server), None) => {
            server.stop();
            None
        }
        _ => None,
    };
    let passed = reports.iter().all(|r| r.passed)
        && pgbench_error.is_none()
        && anchors.as_ref().is_none_or(anchors::AnchorsReport::passed)
        && trace_check.as_ref().is_none_or(TraceExportCheck::passed);
    let report = Report {
        machine: Machine::this(),
        server: server_info,
        settings: Settings {
            concurrency: args.concurrency,
            connections: args.connections,
            rate: args.rate,
            duration_seconds: args.count.is_none().then_some(args.duration.as_secs_f64()),
            count: args.count,
            warmup_seconds: args.warmup.as_secs_f64(),
            echo_payload_bytes: args.echo_payload,
            submit_preload: args.submit_preload,
            get_preload: args.get_preload,
            get_miss_ratio: args.get_miss_ratio,
            list_page_size: args.list_page_size,
            task_preload: args.task_preload,
        },
        scenarios: reports,
        echo_ceiling_rps: echo_ceiling,
        pgbench,
        pgbench_error,
        anchors,
        trace_export: trace_check,
        passed,
    };
    drop(echo_server);
    drop(collector);
    Ok(report)
}

/// The CPU time spent during a measurement: the spawned server's, and
/// loadgen's own.
struct Cpu {
    server: Option<Duration>,
    own: Option<Duration>,
}

/// Warms up (when asked), then measures `scenario` once.
async fn measure(
    args: &Args,
    scenario: Scenario,
    channels: &[Channel],
    shared: &Arc<Shared>,
    rate: Option<f64>,
    stop: Stop,
    server: Option<&SpawnedServer>,
) -> Result<(drive::Stats, Cpu), String> {
    if channels.is_empty() {
        return Err(format!("no connection for {}", scenario.name()));
    }
    let concurrency = usize::try_from(args.concurrency).unwrap_or(1);
    let make = |seed_base: u64| {
        move |worker: usize| {
            ScenarioCaller::new(
                scenario,
                channels[worker % channels.len()].clone(),
                Arc::clone(shared),
                seed_base + worker as u64,
            )
        }
    };
    // A warm-up would use up claim-complete's tasks.
    if !args.warmup.is_zero() && scenario != Scenario::ClaimComplete {
        let plan = Plan {
            concurrency,
            rate,
            stop: Stop::After(args.warmup),
        };
        drive::run(plan, make(1 << 32)).await?;
    }
    eprintln!("loadgen: measuring {}", scenario.name());
    let plan = Plan {
        concurrency,
        rate,
        stop,
    };
    let cpu_before = server.and_then(SpawnedServer::cpu_time);
    let own_before = spawn::own_cpu_time();
    let stats = drive::run(plan, make(1 << 40)).await?;
    let own = spawn::own_cpu_time()
        .zip(own_before)
        .map(|(after, before)| after.saturating_sub(before));
    let cpu = server
        .and_then(SpawnedServer::cpu_time)
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    Ok((stats, Cpu { server: cpu, own }))
}

fn print_scenario(report: &ScenarioReport) {
    let load = match report.rate {
        Some(rate) => format!("{rate}/s, at most {} in flight", report.concurrency),
        None => format!("{} in flight", report.concurrency),
    };
    println!(
        "\n== {} ({load}, {} connection(s))\n{}",
        report.scenario,
        report.connections,
        report.ghz_text()
    );
}

/// `Bearer <token>` as call metadata.
fn bearer(token: &str) -> Result<MetadataValue<Ascii>, String> {
    MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| "the token is not valid ASCII metadata".to_owned())
}

/// The token for an external server: --token, or the variable named by
/// --token-env.
fn external_token(args: &Args) -> Result<String, String> {
    if let Some(token) = &args.token {
        return Ok(token.clone());
    }
    if let Some(name) = &args.token_env {
        return std::env::var(name)
            .map_err(|_| format!("--token-env {name}: the variable is not set"));
    }
    Err("--addr needs a controller token: --token or --token-env".to_owned())
}

/// `n` separate HTTP/2 connections to `addr` (`host:port` or a URL).
async fn connect(addr: &str, n: u32) -> Result<Vec<Channel>, String> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| format!("`{addr}` is not an address: {e}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut channels = Vec::new();
    for _ in 0..n {
        // Each connect() opens its own connection; clones of one Channel
        // would share it.
        channels.push(
            endpoint
                .connect()
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?,
        );
    }
    Ok(channels)
}
