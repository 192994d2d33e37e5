//! Friend-call notifications through the Telegram Bot API (`sendMessage` with a button
//! that opens the Mini App on the call).

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use telcall_domain::{Call, CallNotifier, NotifyError, User};

/// Time limit of one Bot API request.
pub const BOT_API_TIMEOUT: Duration = Duration::from_secs(5);

/// [`CallNotifier`] that messages the friend through the bot.
pub struct TelegramNotifier {
    client: reqwest::Client,
    base: String,
    bot_token: SecretString,
}

impl TelegramNotifier {
    /// A notifier talking to the Bot API at `base` (e.g. `https://api.telegram.org`).
    pub fn new(base: &str, bot_token: SecretString) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(BOT_API_TIMEOUT)
            .connect_timeout(BOT_API_TIMEOUT)
            .user_agent(concat!("telcall/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            bot_token,
        })
    }

    /// The `sendMessage` body for a call from `from` to `to`.
    pub fn message_body(to: &User, from: &User, call: &Call, join_url: &str) -> serde_json::Value {
        let caller = match from.display_name() {
            name if name.is_empty() => from
                .username
                .as_ref()
                .map(|u| format!("@{u}"))
                .unwrap_or_else(|| "A friend".to_owned()),
            name => name,
        };
        let kind = if call.is_video_enabled {
            "video"
        } else {
            "voice"
        };
        json!({
            "chat_id": to.telegram_user_id,
            "text": format!("{caller} is calling you ({kind} call). Tap the button to join."),
            "reply_markup": {
                "inline_keyboard": [[{ "text": "Join call", "url": join_url }]]
            }
        })
    }
}

#[async_trait]
impl CallNotifier for TelegramNotifier {
    async fn notify_call(
        &self,
        to: &User,
        from: &User,
        call: &Call,
        join_url: &str,
    ) -> Result<(), NotifyError> {
        // The token is part of the URL path: build it here and never log it.
        let url = format!(
            "{}/bot{}/sendMessage",
            self.base,
            self.bot_token.expose_secret()
        );
        let body = Self::message_body(to, from, call, join_url);
        let resp = self
            .client
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| NotifyError(format!("Bot API request failed: {}", e.without_url())))?;
        let status = resp.status();
        if status.is_success() {
            tracing::info!(call = %call.code, to = to.id, "friend notified");
            Ok(())
        } else {
            let text = resp.text().await.unwrap_or_default();
            let text: String = text.chars().take(200).collect();
            Err(NotifyError(format!("Bot API answered {status}: {text}")))
        }
    }
}
