//! Entry point: parse configuration, set up logging, run the command.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use gdpr_intake::auth::{Role, TokenClaims, dev};
use gdpr_intake::clock::SystemClock;
use gdpr_intake::config::{
    AuditCommand, AuditExportArgs, AuditVerifyArgs, BackupArgs, Cli, Command, DatabaseArgs,
    KeysCommand, KeysStatusArgs, PublicKeysArgs, ReportArgs, ReportFormat, RestoreArgs, ServeArgs,
    TokenArgs, VerifyBundleArgs,
};
use gdpr_intake::evidence::{self, EvidenceKey, PublicKeys};
use gdpr_intake::startup::{Application, KeySource, Settings};
use gdpr_intake::store::{self, AuditKey, DataKey, StoreConfig, audit};
use gdpr_intake::telemetry::{Telemetry, TelemetryConfig};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gdpr-intake: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        None => runtime.block_on(serve(cli.serve)),
        Some(Command::Serve(args)) => runtime.block_on(serve(args)),
        Some(Command::Migrate(args)) => runtime.block_on(migrate(args)),
        Some(Command::Token(args)) => token(args),
        Some(Command::Backup(args)) => runtime.block_on(backup(args)),
        Some(Command::Restore(args)) => runtime.block_on(restore(args)),
        Some(Command::Keys(KeysCommand::Status(args))) => runtime.block_on(keys_status(args)),
        Some(Command::Report(args)) => runtime.block_on(report(args)),
        Some(Command::Audit(AuditCommand::Verify(args))) => {
            return runtime.block_on(audit_verify(args));
        }
        Some(Command::Audit(AuditCommand::Export(args))) => {
            return match runtime.block_on(audit_export(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err((code, message)) => {
                    eprintln!("gdpr-intake: {message}");
                    ExitCode::from(code)
                }
            };
        }
        Some(Command::Audit(AuditCommand::VerifyBundle(args))) => return verify_bundle(args),
        Some(Command::Audit(AuditCommand::PublicKeys(args))) => public_keys(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gdpr-intake: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Exit code of `audit verify` when a trail is broken; a plain failure
/// (bad configuration, database unreachable) is 1.
const AUDIT_BROKEN: u8 = 2;

fn store_config(args: &DatabaseArgs) -> StoreConfig {
    StoreConfig {
        database_url: args.database_url.clone(),
        data_dir: args.data_dir.clone(),
        max_connections: args.db_max_connections,
        acquire_timeout: args.db_acquire_timeout,
        statement_timeout: args.db_statement_timeout,
        // Set from the configured (or development) key files where they are
        // needed: both in `serve`, the audit key in `audit verify`, none in
        // `migrate`.
        audit_key: None,
        data_key: None,
    }
}

/// The key ring in `file`, or else the development ring `ensure_dev`
/// keeps in `data_dir` (created if missing); `true` when it is the
/// development ring.
fn configured_or_dev<K>(
    file: Option<&std::path::Path>,
    data_dir: &std::path::Path,
    from_file: fn(&std::path::Path) -> Result<K, store::KeyFileError>,
    ensure_dev: fn(&std::path::Path) -> Result<(K, bool), store::KeyFileError>,
) -> Result<(K, bool), String> {
    match file {
        Some(path) => from_file(path).map(|key| (key, false)),
        None => ensure_dev(data_dir).map(|(key, _)| (key, true)),
    }
    .map_err(|e| e.to_string())
}

/// The configured data key, or `serve`'s development key.
fn serve_data_key(args: &DatabaseArgs) -> Result<(DataKey, bool), String> {
    let file = args.data_key_file.as_deref();
    configured_or_dev(
        file,
        &args.data_dir,
        DataKey::from_file,
        DataKey::ensure_dev,
    )
}

/// The configured audit key, or `serve`'s development key.
fn serve_audit_key(args: &DatabaseArgs) -> Result<(AuditKey, bool), String> {
    let file = args.audit_key_file.as_deref();
    configured_or_dev(
        file,
        &args.data_dir,
        AuditKey::from_file,
        AuditKey::ensure_dev,
    )
}

/// The configured evidence key, or `serve`'s development key.
fn serve_evidence_key(args: &DatabaseArgs) -> Result<(EvidenceKey, bool), String> {
    let file = args.evidence_key_file.as_deref();
    configured_or_dev(
        file,
        &args.data_dir,
        EvidenceKey::from_file,
        EvidenceKey::ensure_dev,
    )
}

/// The evidence key of a command that signs or publishes: the configured
/// file, or the development key `serve` created in the data directory;
/// never a new one (it would sign what nobody can check, or publish a key
/// that signed nothing).
fn existing_evidence_key(args: &DatabaseArgs) -> Result<EvidenceKey, String> {
    let path = args
        .evidence_key_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join(evidence::DEV_EVIDENCE_KEY_FILE));
    EvidenceKey::from_file(&path).map_err(|e| {
        format!("{e} (set --evidence-key-file or GDPR_INTAKE_EVIDENCE_KEY_FILE to the key the service signs with)")
    })
}

/// `audit export`: one request's evidence bundle, read from the database
/// directly (the data key opens the record, the audit key checks the
/// trail first).
async fn audit_export(args: AuditExportArgs) -> Result<(), (u8, String)> {
    let fail = |message: String| (1, message);
    let id = args
        .request
        .strip_prefix(gdpr_intake::domain::request::NAME_PREFIX)
        .and_then(|id| uuid::Uuid::try_parse(id).ok())
        .ok_or_else(|| {
            fail(format!(
                "--request must be dataSubjectRequests/{{id}}, not `{}`",
                args.request
            ))
        })?;
    let evidence_key = existing_evidence_key(&args.database).map_err(fail)?;
    let (audit_key, _) = serve_audit_key(&args.database).map_err(fail)?;
    let (data_key, _) = serve_data_key(&args.database).map_err(fail)?;
    let config = store_config(&args.database).with_keys(audit_key, data_key);
    let store = store::connect(&config, false)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let bundle = gdpr_intake::service::evidence::export(
        store.as_ref(),
        None,
        id,
        args.include_personal_data,
        &evidence_key,
        jiff::Timestamp::now(),
    )
    .await
    .map_err(|e| {
        // A broken trail, like `audit verify`'s finding, exits 2.
        let code = match &e {
            gdpr_intake::service::ServiceError::FailedPrecondition { reason, .. }
                if *reason == gdpr_intake::service::evidence::AUDIT_TRAIL_BROKEN =>
            {
                AUDIT_BROKEN
            }
            _ => 1,
        };
        (code, format!("{}: {e}", args.request))
    })?;
    match &args.out {
        Some(path) => std::fs::write(path, bundle)
            .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?,
        None => print!("{bundle}"),
    }
    Ok(())
}

/// `report`: the compliance report, from the database directly.
async fn report(args: ReportArgs) -> Result<(), String> {
    use gdpr_intake::domain::jurisdiction::Regime;
    use gdpr_intake::service::reporting;
    let regime = match args.regime.as_deref() {
        None => None,
        Some(r) => Some(
            [Regime::Gdpr, Regime::Ccpa, Regime::Lgpd]
                .into_iter()
                .find(|x| x.as_str().eq_ignore_ascii_case(r))
                .ok_or_else(|| format!("--regime must be GDPR, CCPA or LGPD, not `{r}`"))?,
        ),
    };
    let request = reporting::ReportRequest {
        start: args.from,
        end: args.to,
        regime,
        controller_id: args.controller.clone(),
        ccpa_7102: args.ccpa_7102,
    };
    let store = store::connect(&store_config(&args.database), false)
        .await
        .map_err(|e| e.to_string())?;
    let report = reporting::report(
        store.as_ref(),
        args.controller,
        &request,
        jiff::Timestamp::now(),
    )
    .await
    .map_err(|e| match e {
        gdpr_intake::service::ServiceError::InvalidArgument(v) => v
            .iter()
            .map(|f| format!("{}: {}", f.field, f.description))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    })?;
    match args.format {
        ReportFormat::Json => println!("{:#}", reporting::to_json(&report, &request)),
        ReportFormat::Csv => print!("{}", reporting::to_csv(&report)),
    }
    Ok(())
}

/// `audit verify-bundle`: exits 0 when the bundle holds, 2 (naming the
/// first problem) when it does not, 1 when a file cannot be read.
fn verify_bundle(args: VerifyBundleArgs) -> ExitCode {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let keys = match read(&args.public_keys).and_then(|text| {
        PublicKeys::parse(&text).map_err(|e| format!("{}: {e}", args.public_keys.display()))
    }) {
        Ok(keys) => keys,
        Err(message) => {
            eprintln!("gdpr-intake: {message}");
            return ExitCode::FAILURE;
        }
    };
    let text = match read(&args.bundle) {
        Ok(text) => text,
        Err(message) => {
            eprintln!("gdpr-intake: {message}");
            return ExitCode::FAILURE;
        }
    };
    match evidence::verify(&text, &keys) {
        Ok(verified) => {
            println!(
                "evidence bundle intact: {}, {} events, signed by evidence key {}",
                verified.request, verified.events, verified.key_id
            );
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("evidence bundle broken: {problem}");
            ExitCode::from(AUDIT_BROKEN)
        }
    }
}

/// `audit public-keys`: the evidence keys' public halves, as JSON.
fn public_keys(args: PublicKeysArgs) -> Result<(), String> {
    let key = existing_evidence_key(&args.database)?;
    println!("{:#}", key.public_keys());
    Ok(())
}

fn settings(args: &ServeArgs) -> Result<Settings, String> {
    let age_policy = args.age_policy()?;
    if args.jwt_leeway.as_secs() > 60 {
        return Err("--jwt-leeway must be at most 60s".to_owned());
    }
    let keys = match (&args.jwks_file, &args.jwt_issuer) {
        (Some(path), Some(issuer)) => KeySource::Jwks {
            path: path.clone(),
            issuer: issuer.clone(),
        },
        (Some(_), None) => {
            return Err(
                "--jwt-issuer (GDPR_INTAKE_JWT_ISSUER) is required with --jwks-file".to_owned(),
            );
        }
        (None, _) => KeySource::DevKeys {
            data_dir: args.database.data_dir.clone(),
        },
    };
    Ok(Settings {
        listen: args.listen,
        store: store_config(&args.database),
        keys,
        jwt_audience: args.jwt_audience.clone(),
        jwt_leeway: args.jwt_leeway,
        drain_timeout: args.drain_timeout,
        migrate_on_start: args.migrate_on_start,
        age_policy,
        controller_countries: args.controller_countries()?,
        tls: args.tls()?,
        limits: args.call_limits(),
        connections: args.connection_limits()?,
        watchdog: args.watchdog()?,
        revocation_refresh: args.revocation_refresh()?,
        jwks_refresh: args.jwks_refresh()?,
        feed_poll_interval: args.feed_poll_interval()?,
        // Loaded with the other keys in `serve`, once telemetry is up.
        evidence_key: None,
        duplicate_window: args.duplicate_window()?,
    })
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    // Configuration is checked before anything is bound or written.
    let settings = settings(&args)?;
    let mut telemetry = TelemetryConfig::from_env(args.log_format, args.metrics_listen)?;
    telemetry.trace_level = args.trace_level;
    // Inside the runtime: the OTLP channel is created here and driven by it.
    let telemetry = Telemetry::builder(telemetry)
        .build()
        .map_err(|e| e.to_string())?;
    telemetry.install_global();
    let (audit_key, dev_key) = serve_audit_key(&args.database)?;
    if dev_key {
        tracing::warn!(
            path = %args.database.data_dir.join(audit::DEV_AUDIT_KEY_FILE).display(),
            "no --audit-key-file (GDPR_INTAKE_AUDIT_KEY_FILE): the audit trail is keyed \
             with a DEVELOPMENT key kept next to the data; whoever can read it can rewrite \
             the trail undetected; do not run like this in production"
        );
    }
    let (data_key, dev_key) = serve_data_key(&args.database)?;
    if dev_key {
        tracing::warn!(
            path = %args.database.data_dir.join(store::crypt::DEV_DATA_KEY_FILE).display(),
            "no --data-key-file (GDPR_INTAKE_DATA_KEY_FILE): personal data is sealed with \
             a DEVELOPMENT key kept next to the data; whoever can read it can read the \
             data; do not run like this in production"
        );
    }
    let (evidence_key, dev_key) = serve_evidence_key(&args.database)?;
    if dev_key {
        tracing::warn!(
            path = %args.database.data_dir.join(evidence::DEV_EVIDENCE_KEY_FILE).display(),
            "no --evidence-key-file (GDPR_INTAKE_EVIDENCE_KEY_FILE): evidence bundles are \
             signed with a DEVELOPMENT key kept next to the data; publish the key of a \
             managed file instead in production"
        );
    }
    let mut settings = settings;
    settings.store = settings.store.with_keys(audit_key, data_key);
    settings.evidence_key = Some(evidence_key);
    let app = Application::build_with_telemetry(settings, Arc::new(SystemClock), telemetry)
        .await
        .map_err(|e| e.to_string())?;
    app.run_until_stopped(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn migrate(args: DatabaseArgs) -> Result<(), String> {
    let store = store::connect(&store_config(&args), true)
        .await
        .map_err(|e| e.to_string())?;
    println!("migrations applied ({})", store.backend());
    Ok(())
}

/// What `backup` and `restore` say for PostgreSQL, whose own tools do it.
const POSTGRES_BACKUP: &str = "backup and restore are for SQLite; for PostgreSQL use \
    pg_dump --format=custom and pg_restore (docs/operations.md, Backup and restore)";

fn print_contents(what: &str, path: &std::path::Path, c: store::backup::Contents) {
    println!(
        "{what} {}: {} requests, {} tasks, {} events, {} bytes",
        path.display(),
        c.requests,
        c.tasks,
        c.events,
        c.bytes
    );
}

async fn backup(args: BackupArgs) -> Result<(), String> {
    if args.database.database_url.is_some() {
        return Err(POSTGRES_BACKUP.to_owned());
    }
    let contents = store::backup::backup(&args.database.data_dir, &args.to)
        .await
        .map_err(|e| e.to_string())?;
    print_contents("backup written to", &args.to, contents);
    Ok(())
}

async fn restore(args: RestoreArgs) -> Result<(), String> {
    if args.database.database_url.is_some() {
        return Err(POSTGRES_BACKUP.to_owned());
    }
    let contents = store::backup::restore(&args.from, &args.database.data_dir)
        .await
        .map_err(|e| e.to_string())?;
    print_contents("restored into", &args.database.data_dir, contents);
    println!("start the service on it with the data and audit keys the backup was written with");
    Ok(())
}

/// `keys status`: sealed values per key id, beside the ring configured
/// (`--data-key-file`, or the development key if there is one; never
/// created here).
async fn keys_status(args: KeysStatusArgs) -> Result<(), String> {
    let key_file = args
        .database
        .data_key_file
        .clone()
        .unwrap_or_else(|| args.database.data_dir.join(store::crypt::DEV_DATA_KEY_FILE));
    let ring = if key_file.exists() {
        Some(DataKey::from_file(&key_file).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let store = store::connect(&store_config(&args.database), false)
        .await
        .map_err(|e| e.to_string())?;
    let uses = store.key_use().await.map_err(|e| e.to_string())?;
    let registered = store
        .registered_keys(store::keys::KeyPurpose::Data)
        .await
        .map_err(|e| e.to_string())?;
    match &ring {
        Some(ring) => println!(
            "ring {}: primary {}, keys {}",
            key_file.display(),
            ring.primary_id(),
            ring.ids().join(", ")
        ),
        None => println!("no data key file at {}", key_file.display()),
    }
    if let Some(newest) = registered.first() {
        println!(
            "newest primary made by a replica: {} (since {}); the re-seal moves values to it",
            newest.key_id, newest.primary_since
        );
    }
    if uses.is_empty() {
        println!("no personal data is stored");
    }
    let mut missing = 0;
    for u in &uses {
        let (name, place) = match (&u.key_id, &ring) {
            (None, _) => (
                "sealed before key ids".to_owned(),
                "opened by its key in the ring",
            ),
            (Some(id), Some(ring)) if ring.primary_id() == id => (format!("key {id}"), "primary"),
            (Some(id), Some(ring)) if ring.ids().contains(&id.as_str()) => {
                (format!("key {id}"), "in the ring")
            }
            (Some(id), _) => {
                missing += 1;
                (format!("key {id}"), "NOT IN THE RING")
            }
        };
        println!("{name}: {} requests, {} values ({place})", u.rows, u.values);
    }
    if let Some(ring) = &ring {
        for id in ring.ids() {
            if !uses.iter().any(|u| u.key_id.as_deref() == Some(id)) {
                let place = if id == ring.primary_id() {
                    "primary"
                } else {
                    "in the ring; nothing is sealed with it, it may be removed"
                };
                println!("key {id}: 0 requests, 0 values ({place})");
            }
        }
    }
    if missing > 0 {
        return Err(format!(
            "{missing} key id(s) in use are not in the ring: their values cannot be read"
        ));
    }
    Ok(())
}

/// `audit verify`: walks every trail; prints the first finding and exits
/// with [`AUDIT_BROKEN`], or a summary line and success.
async fn audit_verify(args: AuditVerifyArgs) -> ExitCode {
    let fail = |message: String| {
        eprintln!("gdpr-intake: {message}");
        ExitCode::FAILURE
    };
    // Never created here: checking with a new key would only report that
    // every trail is broken.
    let key_file = args
        .database
        .audit_key_file
        .clone()
        .unwrap_or_else(|| args.database.data_dir.join(audit::DEV_AUDIT_KEY_FILE));
    let key = match AuditKey::from_file(&key_file) {
        Ok(key) => key,
        Err(e) => {
            return fail(format!(
                "{e} (set --audit-key-file or GDPR_INTAKE_AUDIT_KEY_FILE)"
            ));
        }
    };
    let mut config = store_config(&args.database);
    config.audit_key = Some(key.clone());
    let store = match store::connect(&config, false).await {
        Ok(store) => store,
        Err(e) => return fail(e.to_string()),
    };
    match audit::verify(store.as_ref(), &key, args.page_size).await {
        Err(e) => fail(e.to_string()),
        Ok(report) => match report.finding {
            Some(finding) => {
                eprintln!("audit trail broken: {finding}");
                ExitCode::from(AUDIT_BROKEN)
            }
            None => {
                println!(
                    "audit trail intact: {} requests, {} events",
                    report.requests, report.events
                );
                ExitCode::SUCCESS
            }
        },
    }
}

fn token(args: TokenArgs) -> Result<(), String> {
    let role: Role = args.role.parse().map_err(|_| {
        format!(
            "--role must be controller, processor, admin or auditor, not `{}`",
            args.role
        )
    })?;
    let subject = args
        .subject
        .unwrap_or_else(|| format!("{}@{}", role.as_str(), args.tenant));
    let claims = TokenClaims {
        issuer: dev::DEV_ISSUER.to_owned(),
        audience: args.jwt_audience,
        subject,
        role,
        tenant: args.tenant,
        ttl_secs: args.ttl.as_secs(),
        token_id: Some(uuid::Uuid::new_v4().to_string()),
    };
    let token = dev::mint_token(&args.data_dir, &claims).map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
