//! The expired-call sweeper: every interval, marks calls past their expiry as `expired`
//! (one statement) and tells their rooms. Survives database errors; stops on shutdown.

use std::time::Duration;

use telcall_domain::CallService;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Runs one sweep; returns how many calls it expired. Errors are logged.
pub async fn sweep_once(calls: &CallService) -> usize {
    match calls.expire_due().await {
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
    }
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
