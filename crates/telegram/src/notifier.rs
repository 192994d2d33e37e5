//! Friend-call notifications through the Bot API (`sendMessage` with a button that opens
//! the Mini App on the call).

use async_trait::async_trait;
use serde_json::json;
use telcall_domain::{Call, CallNotifier, NotifyError, User};

use crate::api::BotApi;

/// [`CallNotifier`] that messages the friend through the bot.
#[derive(Debug, Clone)]
pub struct TelegramNotifier {
    api: BotApi,
}

impl TelegramNotifier {
    /// A notifier sending through `api`.
    pub fn new(api: BotApi) -> Self {
        Self { api }
    }

    /// The `sendMessage` body for a call from `from` to `to`.
    pub fn message_body(to: &User, from: &User, call: &Call, join_url: &str) -> serde_json::Value {
        let caller = match crate::texts::display_name(&from.display_name()) {
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
        let body = Self::message_body(to, from, call, join_url);
        self.api
            .send_message(&body)
            .await
            .map_err(|e| NotifyError(e.to_string()))?;
        tracing::info!(call = %call.code, to = to.id.get(), "friend notified");
        Ok(())
    }
}
