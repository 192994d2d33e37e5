//! Long polling for machines without a public HTTPS URL: `deleteWebhook` once, then
//! `getUpdates` with an offset in a loop, each update fed to [`Bot::handle_value`], with
//! backoff on errors, until shutdown.
//!
//! Only one process may poll a bot at a time (Telegram answers a second poller with
//! 409 Conflict). [`run_polling`] is the whole loop as one future, so whoever decides
//! which instance polls can wrap it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bot::Bot;

/// Timings of the polling loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollingConfig {
    /// How long one `getUpdates` waits for an update (Telegram's `timeout`).
    pub long_poll: Duration,
    /// First pause after an error.
    pub backoff_initial: Duration,
    /// Longest pause after repeated errors.
    pub backoff_max: Duration,
}

impl Default for PollingConfig {
    fn default() -> Self {
        Self {
            long_poll: Duration::from_secs(25),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// The pause after `failures` consecutive errors: doubling from the initial pause, capped.
pub fn backoff(config: &PollingConfig, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    config
        .backoff_initial
        .saturating_mul(factor)
        .min(config.backoff_max)
}

/// Polls until `shutdown` carries `true` (or its sender is dropped). An in-flight long
/// poll is abandoned at shutdown; an update being handled is finished first.
pub async fn run_polling(
    bot: Arc<Bot>,
    config: PollingConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    // deleteWebhook first: Telegram refuses getUpdates while a webhook is set.
    loop {
        if *shutdown.borrow() {
            return;
        }
        let res = tokio::select! {
            res = bot.api().delete_webhook() => res,
            () = stopped(&mut shutdown) => return,
        };
        match res {
            Ok(_) => {
                tracing::info!("bot polling started (webhook removed)");
                break;
            }
            Err(e) => {
                failures += 1;
                let pause = backoff(&config, failures);
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "deleteWebhook failed");
                if pause_or_stop(pause, &mut shutdown).await {
                    return;
                }
            }
        }
    }
    failures = 0;
    let mut offset = 0i64;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let res = tokio::select! {
            res = bot.api().get_updates(offset, config.long_poll) => res,
            () = stopped(&mut shutdown) => break,
        };
        match res {
            Ok(updates) => {
                failures = 0;
                for update in updates {
                    if let Some(id) = update.get("update_id").and_then(Value::as_i64) {
                        offset = offset.max(id.saturating_add(1));
                    }
                    if let Err(e) = bot.handle_value(&update).await {
                        tracing::warn!(error = %e, "bot update failed");
                    }
                }
            }
            Err(e) => {
                failures += 1;
                let pause = backoff(&config, failures);
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "getUpdates failed");
                if pause_or_stop(pause, &mut shutdown).await {
                    break;
                }
            }
        }
    }
    tracing::info!("bot polling stopped");
}

/// Starts [`run_polling`] on the current Tokio runtime.
pub fn spawn_polling(
    bot: Arc<Bot>,
    config: PollingConfig,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(run_polling(bot, config, shutdown))
}

/// Sleeps `pause`; `true` when shutdown came first.
async fn pause_or_stop(pause: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(pause) => false,
        () = stopped(shutdown) => true,
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let c = PollingConfig {
            long_poll: Duration::from_secs(1),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
        };
        assert_eq!(backoff(&c, 1), Duration::from_secs(1));
        assert_eq!(backoff(&c, 2), Duration::from_secs(2));
        assert_eq!(backoff(&c, 3), Duration::from_secs(4));
        assert_eq!(backoff(&c, 5), Duration::from_secs(10));
        assert_eq!(backoff(&c, u32::MAX), Duration::from_secs(10));
    }
}
