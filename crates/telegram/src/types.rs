//! The parts of Telegram's `Update` the bot reads. Everything is optional and unknown
//! fields are ignored, so an update of a kind the bot does not handle still parses.

use serde::Deserialize;
use telcall_domain::TelegramAccount;

/// An incoming update.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Update {
    /// Telegram's sequence number of the update.
    pub update_id: i64,
    /// A new message.
    #[serde(default)]
    pub message: Option<Message>,
    /// An inline query ("Share" in the Mini App).
    #[serde(default)]
    pub inline_query: Option<InlineQuery>,
}

/// A message.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Message {
    /// Message id in its chat.
    #[serde(default)]
    pub message_id: i64,
    /// The sender (absent for channel posts).
    #[serde(default)]
    pub from: Option<TgUser>,
    /// The chat it was sent in.
    pub chat: Chat,
    /// Text of a text message.
    #[serde(default)]
    pub text: Option<String>,
}

/// A chat.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Chat {
    /// Chat id.
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

impl Chat {
    /// Whether this is the bot's private chat with a user.
    pub fn is_private(&self) -> bool {
        self.kind.as_deref() == Some("private")
    }
}

/// A Telegram user as updates describe them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TgUser {
    /// Telegram user id.
    pub id: i64,
    /// Whether this is a bot.
    #[serde(default)]
    pub is_bot: bool,
    /// First name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default)]
    pub last_name: Option<String>,
    /// Username without `@`.
    #[serde(default)]
    pub username: Option<String>,
    /// IETF language tag of the user's client.
    #[serde(default)]
    pub language_code: Option<String>,
}

impl TgUser {
    /// The account as the domain's sign-in rule takes it. Updates carry no photo, so the
    /// stored one is kept.
    pub fn account(&self) -> TelegramAccount {
        TelegramAccount {
            id: self.id,
            username: self.username.clone(),
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            photo_url: None,
            photo_known: false,
        }
    }
}

/// An inline query.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InlineQuery {
    /// Id to answer with.
    pub id: String,
    /// Who asks.
    pub from: TgUser,
    /// The query text.
    #[serde(default)]
    pub query: String,
}
