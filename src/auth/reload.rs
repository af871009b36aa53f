//! Keeps the key set in step with the JWKS file while the service runs: a
//! Kubernetes Secret mounted as a file changes under a running pod, and a
//! key added to it (or removed) must take effect without a restart.
//!
//! The file is read again every interval and, when its bytes changed,
//! loaded in place of the set in force ([`Authenticator::reload`]). A
//! file that cannot be read or does not parse leaves the set in force as it
//! is, and is logged and counted once for as long as it stays the same.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::Authenticator;

/// Re-reads `path` every `every` until `stop` completes, reloading `auth`
/// when the file's bytes change; `failed` is called once for each failure
/// to read or load it that differs from the one before.
pub async fn watch_jwks_file<S, F>(
    auth: Authenticator,
    path: PathBuf,
    every: Duration,
    failed: F,
    stop: S,
) where
    S: Future<Output = ()>,
    F: Fn(),
{
    let origin = format!("jwks file {}", path.display());
    // What the set in force was loaded from, as far as this task can tell:
    // the file as it is now, just after start-up loaded it.
    let mut seen: Option<Vec<u8>> = tokio::fs::read(&path).await.ok();
    let mut last_error: Option<String> = None;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticks.tick() => {}
        }
        let outcome = match tokio::fs::read(&path).await {
            Err(e) => Err(format!("cannot read it: {e}")),
            Ok(bytes) if seen.as_deref() == Some(bytes.as_slice()) => Ok(None),
            Ok(bytes) => {
                let loaded = std::str::from_utf8(&bytes)
                    .map_err(|_| "it is not UTF-8".to_owned())
                    .and_then(|json| auth.reload(json, &origin).map_err(|e| e.to_string()));
                seen = Some(bytes);
                loaded.map(Some)
            }
        };
        match outcome {
            Ok(None) => {}
            Ok(Some(keys)) => {
                last_error = None;
                tracing::info!(jwks = %path.display(), keys, "loaded the changed JWKS file");
            }
            Err(error) => {
                if last_error.as_ref() != Some(&error) {
                    tracing::warn!(
                        jwks = %path.display(),
                        %error,
                        "the JWKS file could not be loaded; the keys in force stay as they are"
                    );
                    failed();
                    last_error = Some(error);
                }
            }
        }
    }
}
