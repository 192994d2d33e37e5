//! telcall's Telegram bot: the Bot API client ([`BotApi`]), the update types
//! ([`types`]), the bot's behaviour ([`Bot`]: inline "Share" answers, `/start`, `/help`,
//! texts in [`texts`], button URLs from [`MiniAppLinks`]), the webhook secret check
//! ([`WebhookSecret`]), the recent-update set that drops re-deliveries
//! ([`RecentUpdates`]), the long-polling loop ([`polling`]) and the friend-call
//! notifier ([`TelegramNotifier`]).
//!
//! Transport-agnostic: nothing here knows actix. The server's webhook route and the
//! polling loop feed the same [`Bot::handle_value`].

pub mod api;
pub mod bot;
pub mod links;
pub mod notifier;
pub mod polling;
pub mod recent;
pub mod registration;
pub mod secret;
pub mod texts;
pub mod types;

pub use api::{BOT_API_TIMEOUT, BotApi, BotApiError, WebhookRegistration};
pub use bot::{Bot, BotConfig, BotError, Outcome};
pub use links::MiniAppLinks;
pub use notifier::TelegramNotifier;
pub use polling::{PollingConfig, run_polling, spawn_polling};
pub use recent::RecentUpdates;
pub use registration::{WebhookStatus, register_webhook, run_registration};
pub use secret::{InvalidSecret, WebhookSecret};
pub use texts::Lang;
