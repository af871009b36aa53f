//! Entry point: parse configuration, set up logging, run the command.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use gdpr_intake::auth::{Role, TokenClaims, dev};
use gdpr_intake::clock::SystemClock;
use gdpr_intake::config::{Cli, Command, DatabaseArgs, ServeArgs, TokenArgs};
use gdpr_intake::startup::{Application, KeySource, Settings};
use gdpr_intake::store::{self, StoreConfig};
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gdpr-intake: {message}");
            ExitCode::FAILURE
        }
    }
}

fn store_config(args: &DatabaseArgs) -> StoreConfig {
    StoreConfig {
        database_url: args.database_url.clone(),
        data_dir: args.data_dir.clone(),
        max_connections: args.db_max_connections,
        acquire_timeout: args.db_acquire_timeout,
        statement_timeout: args.db_statement_timeout,
    }
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
    })
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    // Configuration is checked before anything is bound or written.
    let settings = settings(&args)?;
    let telemetry = TelemetryConfig::from_env(args.log_format, args.metrics_listen)?;
    // Inside the runtime: the OTLP channel is created here and driven by it.
    let telemetry = Telemetry::builder(telemetry)
        .build()
        .map_err(|e| e.to_string())?;
    telemetry.install_global();
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
