//! Where the bot's updates come from (`BOT_UPDATES`): with `webhook` and a
//! `BOT_WEBHOOK_URL`, a background task registers the webhook after start-up; with
//! `polling`, a background task long-polls `getUpdates`. Both stop at shutdown.
//!
//! Telegram serves `getUpdates` to one poller at a time. With several instances
//! (`REDIS_URL`) the instances share a lease in Redis ([`POLLING_LEASE`]): the one holding it
//! polls, renewing it every [`LEASE_RENEW_INTERVAL`]; when it stops or dies, another takes
//! the lease over within [`LEASE_TTL`] and starts polling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::BotUpdates;
use crate::state::AppState;

/// Name of the Redis lease of the polling mode.
pub const POLLING_LEASE: &str = "bot-polling";
/// How long the polling lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(15);
/// How often the polling lease is renewed (or, by the others, tried).
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(5);

/// Starts the background task `BOT_UPDATES` asks for, if any.
pub fn spawn_update_source(
    state: &AppState,
    shutdown: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let bot = &state.settings.bot;
    match bot.updates {
        BotUpdates::Webhook => {
            let url = bot.webhook_url.clone()?;
            Some(tokio::spawn(telcall_telegram::run_registration(
                state.bot.api().clone(),
                url,
                (*state.webhook_secret).clone(),
                shutdown,
            )))
        }
        BotUpdates::Polling => match (&state.redis, &state.broker) {
            (Some(redis), Some(broker)) => {
                tracing::info!(
                    "bot updates by polling: the instance holding the Redis lease polls"
                );
                let lease = telcall_redis::RedisLease::new(
                    redis.clone(),
                    POLLING_LEASE,
                    broker.instance(),
                    LEASE_TTL,
                );
                Some(tokio::spawn(poll_under_lease(
                    state.bot.clone(),
                    lease,
                    shutdown,
                )))
            }
            _ => {
                tracing::info!("bot updates by polling: only this instance may poll this bot");
                Some(telcall_telegram::spawn_polling(
                    state.bot.clone(),
                    telcall_telegram::PollingConfig::default(),
                    shutdown,
                ))
            }
        },
        BotUpdates::Off => None,
    }
}

/// A polling task started under the lease, with its own stop signal.
struct Poller {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Poller {
    fn start(bot: &Arc<telcall_telegram::Bot>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = telcall_telegram::spawn_polling(
            bot.clone(),
            telcall_telegram::PollingConfig::default(),
            stopped,
        );
        Self { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Polls while this instance holds the lease; tries to take it while another does. Stops
/// polling when the lease is lost (or cannot be renewed for its TTL), and gives it up at
/// shutdown.
async fn poll_under_lease(
    bot: Arc<telcall_telegram::Bot>,
    lease: telcall_redis::RedisLease,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(LEASE_RENEW_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut poller: Option<Poller> = None;
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = crate::stopped(&mut shutdown) => break,
        }
        match lease.acquire().await {
            Ok(true) => {
                renewed = Instant::now();
                if poller.is_none() {
                    tracing::info!("bot polling lease taken: this instance polls");
                    poller = Some(Poller::start(&bot));
                }
            }
            Ok(false) => {
                if let Some(p) = poller.take() {
                    tracing::warn!("bot polling lease lost: this instance stops polling");
                    p.stop().await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not take or renew the bot polling lease");
                // Stop before the lease lapses: another instance may take it then.
                if renewed.elapsed() + LEASE_RENEW_INTERVAL >= lease.ttl()
                    && let Some(p) = poller.take()
                {
                    tracing::warn!("bot polling lease not renewed: this instance stops polling");
                    p.stop().await;
                }
            }
        }
    }
    if let Some(p) = poller.take() {
        p.stop().await;
        if let Err(error) = lease.release().await {
            tracing::warn!(%error, "could not give up the bot polling lease; it lapses");
        }
    }
}
