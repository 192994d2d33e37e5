//! The call sweeper: every interval, marks calls past their expiry as `expired` and ends
//! calls past the maximum call duration (counted from their creation), one statement each,
//! and tells their rooms. Idempotent, so every instance of a deployment may run it: each
//! call is finished by exactly one. Survives database errors; stops on shutdown.

use std::time::Duration;

use telcall_domain::CallService;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Runs one sweep; returns how many calls it finished (expired, or ended at the maximum
/// duration). Errors are logged.
pub async fn sweep_once(calls: &CallService) -> usize {
    let expired = match calls.expire_due().await {
        Ok(expired) => {
            if !expired.is_empty() {
                tracing::info!(count = expired.len(), "expired calls swept");
            }
            expired.len()
        }
        Err(e) => {
            tracing::warn!(error = %e, "expired-call sweep failed; retrying next tick");
            0
        }
    };
    let overlong = match calls.end_overlong().await {
        Ok(ended) => {
            for call in &ended {
                tracing::info!(call = %call.code, "maximum call duration reached; call ended");
            }
            ended.len()
        }
        Err(e) => {
            tracing::warn!(error = %e, "maximum-duration sweep failed; retrying next tick");
            0
        }
    };
    expired + overlong
}

/// Starts the sweeper on the current runtime.
pub fn spawn(
    calls: CallService,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    sweep_once(&calls).await;
                }
                () = crate::stopped(&mut shutdown) => break,
            }
        }
    })
}
