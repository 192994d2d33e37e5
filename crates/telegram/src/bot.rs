//! The bot's behaviour: which update gets which answer. Inline `call_<code>` queries get
//! a "Share" article for an active call, `/start` signs the sender in (the same rule as
//! the Mini App) and answers with a button into the app, `/help` explains. Everything
//! else is ignored.
//!
//! Transport-agnostic: the webhook route and the polling loop both call
//! [`Bot::handle_value`].

use serde::Deserialize;
use serde_json::{Value, json};
use telcall_domain::{Call, CallCode, CallService, DomainError, UserService};

use crate::api::{BotApi, BotApiError};
use crate::links::MiniAppLinks;
use crate::recent::RecentUpdates;
use crate::texts::{self, Lang};
use crate::types::{InlineQuery, Message, Update};

/// Seconds Telegram may cache an inline answer (per user: answers are personal). Short,
/// so a call that ends stops being offered soon.
pub const INLINE_CACHE_SECONDS: u32 = 10;
/// The inline query prefix the Mini App's "Share" button sends.
pub const CALL_QUERY_PREFIX: &str = "call_";
/// Longest inline query text looked at, in bytes (Telegram sends at most 256 characters).
pub const MAX_QUERY_BYTES: usize = 1024;
/// Longest inline query id echoed back to Telegram.
const MAX_QUERY_ID_LEN: usize = 64;

/// What the bot needs beyond its services.
#[derive(Debug, Clone)]
pub struct BotConfig {
    /// Links into the Mini App (bot username, `MINI_APP_NAME`).
    pub links: MiniAppLinks,
    /// Who `/help` names (`BOT_SUPPORT_CONTACT`).
    pub support_contact: Option<String>,
}

/// What the bot did with one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The `update_id` was handled recently: a re-delivery, ignored.
    Duplicate,
    /// Not something the bot answers (unknown kind, no text, not a command, malformed).
    Ignored,
    /// An inline query for an active call: answered with the "Share" article.
    SharedCall,
    /// Any other inline query: answered with no results.
    NoInlineResults,
    /// `/start`: the sender is signed in and welcomed.
    Welcomed,
    /// `/start <call code>` of an active call: welcomed with a button into that call.
    WelcomedToCall,
    /// `/help`: answered with the help text.
    Helped,
}

/// Handling an update failed after it was accepted (the update is still answered 200).
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// The Bot API refused the answer or could not be reached.
    #[error(transparent)]
    Api(#[from] BotApiError),
    /// Storage failed while looking up a call or signing the sender in.
    #[error(transparent)]
    Domain(#[from] DomainError),
}

/// The bot service.
pub struct Bot {
    api: BotApi,
    users: UserService,
    calls: CallService,
    config: BotConfig,
    recent: RecentUpdates,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A `/start` or `/help` command.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command<'a> {
    Start(Option<&'a str>),
    Help,
}

impl Bot {
    /// A bot answering through `api`, signing users in with `users`, looking calls up with
    /// `calls`.
    pub fn new(api: BotApi, users: UserService, calls: CallService, config: BotConfig) -> Self {
        Self {
            api,
            users,
            calls,
            config,
            recent: RecentUpdates::default(),
        }
    }

    /// The Bot API client the bot answers through.
    pub fn api(&self) -> &BotApi {
        &self.api
    }

    /// The links the bot's buttons open.
    pub fn links(&self) -> &MiniAppLinks {
        &self.config.links
    }

    /// Handles one update as Telegram sent it (any JSON: what is not an update is
    /// ignored). An `update_id` seen recently is ignored.
    pub async fn handle_value(&self, update: &Value) -> Result<Outcome, BotError> {
        let Some(update_id) = update.get("update_id").and_then(Value::as_i64) else {
            return Ok(Outcome::Ignored);
        };
        if !self.recent.first_time(update_id) {
            tracing::debug!(update_id, "re-delivered update ignored");
            return Ok(Outcome::Duplicate);
        }
        match Update::deserialize(update) {
            Ok(update) => self.dispatch(update).await,
            Err(e) => {
                tracing::debug!(update_id, error = %e, "malformed update ignored");
                Ok(Outcome::Ignored)
            }
        }
    }

    /// Handles a parsed update (with the duplicate check).
    pub async fn handle(&self, update: Update) -> Result<Outcome, BotError> {
        if !self.recent.first_time(update.update_id) {
            return Ok(Outcome::Duplicate);
        }
        self.dispatch(update).await
    }

    async fn dispatch(&self, update: Update) -> Result<Outcome, BotError> {
        if let Some(query) = update.inline_query {
            return self.inline_query(&query).await;
        }
        if let Some(message) = update.message {
            return self.message(&message).await;
        }
        Ok(Outcome::Ignored)
    }

    async fn inline_query(&self, query: &InlineQuery) -> Result<Outcome, BotError> {
        if query.query.len() > MAX_QUERY_BYTES
            || query.id.is_empty()
            || query.id.len() > MAX_QUERY_ID_LEN
        {
            return Ok(Outcome::Ignored);
        }
        let lang = Lang::from_code(query.from.language_code.as_deref());
        let call = match query
            .query
            .trim()
            .strip_prefix(CALL_QUERY_PREFIX)
            .and_then(call_code)
        {
            Some(code) => self.active_call(&code).await?,
            None => None,
        };
        match call {
            Some(call) => {
                let body = self.share_answer(query, lang, &call);
                self.api.answer_inline_query(&body).await?;
                Ok(Outcome::SharedCall)
            }
            None => {
                self.api
                    .answer_inline_query(&empty_inline_answer(&query.id))
                    .await?;
                Ok(Outcome::NoInlineResults)
            }
        }
    }

    /// The call with `code` if it can be joined now; `None` for an unknown, ended or
    /// expired one.
    async fn active_call(&self, code: &CallCode) -> Result<Option<Call>, BotError> {
        match self.calls.joinable_call(code).await {
            Ok(call) => Ok(Some(call)),
            Err(
                DomainError::CallNotFound
                | DomainError::CallExpired
                | DomainError::CallNotAvailable,
            ) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The `answerInlineQuery` body offering `call` to share.
    pub fn share_answer(&self, query: &InlineQuery, lang: Lang, call: &Call) -> Value {
        let caller = texts::caller_name(
            lang,
            query.from.first_name.as_deref(),
            query.from.username.as_deref(),
        );
        let code = call.code.as_str();
        json!({
            "inline_query_id": query.id,
            "results": [{
                "type": "article",
                "id": code,
                "title": texts::share_title(lang, &caller),
                "description": texts::share_description(lang, call.is_video_enabled),
                "input_message_content": {
                    "message_text": texts::share_message(lang, &caller, call.is_video_enabled),
                },
                "reply_markup": {
                    "inline_keyboard": [[{
                        "text": texts::join_button(lang),
                        "url": self.config.links.join_url(code),
                    }]],
                },
            }],
            "is_personal": true,
            "cache_time": INLINE_CACHE_SECONDS,
        })
    }

    async fn message(&self, message: &Message) -> Result<Outcome, BotError> {
        let (Some(from), Some(text)) = (&message.from, &message.text) else {
            return Ok(Outcome::Ignored);
        };
        if from.is_bot || !message.chat.is_private() {
            return Ok(Outcome::Ignored);
        }
        let Some(command) = parse_command(text, self.config.links.bot_username()) else {
            return Ok(Outcome::Ignored);
        };
        let lang = Lang::from_code(from.language_code.as_deref());
        let chat = message.chat.id;
        match command {
            Command::Start(payload) => {
                let user = self.users.sign_in(&from.account()).await?;
                tracing::info!(user = user.id.get(), "signed in through /start");
                let code = payload
                    .map(|p| p.strip_prefix(CALL_QUERY_PREFIX).unwrap_or(p))
                    .and_then(call_code);
                let call = match code {
                    Some(code) => self.active_call(&code).await?,
                    None => None,
                };
                let (text, button, url, outcome) = match call {
                    Some(call) => (
                        texts::welcome_to_call(lang),
                        texts::join_button(lang),
                        self.config.links.join_url(call.code.as_str()),
                        Outcome::WelcomedToCall,
                    ),
                    None => (
                        texts::welcome(lang),
                        texts::open_app_button(lang),
                        self.config.links.app_url(),
                        Outcome::Welcomed,
                    ),
                };
                self.api
                    .send_message(&message_with_button(chat, text, button, &url))
                    .await?;
                Ok(outcome)
            }
            Command::Help => {
                let text = texts::help(lang, self.config.support_contact.as_deref());
                self.api
                    .send_message(&json!({ "chat_id": chat, "text": text }))
                    .await?;
                Ok(Outcome::Helped)
            }
        }
    }
}

/// The `answerInlineQuery` body with no results.
pub fn empty_inline_answer(query_id: &str) -> Value {
    json!({
        "inline_query_id": query_id,
        "results": [],
        "is_personal": true,
        "cache_time": INLINE_CACHE_SECONDS,
    })
}

/// A `sendMessage` body with one `url` button.
pub fn message_with_button(chat: i64, text: &str, button: &str, url: &str) -> Value {
    json!({
        "chat_id": chat,
        "text": text,
        "reply_markup": { "inline_keyboard": [[{ "text": button, "url": url }]] },
    })
}

/// The call code in a query or `/start` payload, if it is one (see
/// [`CallCode::is_well_formed`]); anything else names no call and is never looked up.
fn call_code(text: &str) -> Option<CallCode> {
    text.parse().ok()
}

/// `/start`, `/start <payload>`, `/help`, also addressed as `/start@<bot>`.
fn parse_command<'a>(text: &'a str, bot_username: &str) -> Option<Command<'a>> {
    let text = text.trim();
    let (head, rest) = match text.split_once(char::is_whitespace) {
        Some((head, rest)) => (head, Some(rest.trim()).filter(|r| !r.is_empty())),
        None => (text, None),
    };
    let name = match head.split_once('@') {
        Some((name, bot)) if bot.eq_ignore_ascii_case(bot_username) => name,
        Some(_) => return None,
        None => head,
    };
    match name {
        "/start" => Some(Command::Start(rest)),
        "/help" => Some(Command::Help),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse_command("/start", "b_bot"), Some(Command::Start(None)));
        assert_eq!(
            parse_command("  /start   abc_DEF-1 ", "b_bot"),
            Some(Command::Start(Some("abc_DEF-1")))
        );
        assert_eq!(
            parse_command("/start@B_bot", "b_bot"),
            Some(Command::Start(None))
        );
        assert_eq!(parse_command("/start@other_bot", "b_bot"), None);
        assert_eq!(parse_command("/help", "b_bot"), Some(Command::Help));
        assert_eq!(parse_command("/help me", "b_bot"), Some(Command::Help));
        assert_eq!(parse_command("/starting", "b_bot"), None);
        assert_eq!(parse_command("hello /start", "b_bot"), None);
        assert_eq!(parse_command("", "b_bot"), None);
    }

    #[test]
    fn code_shapes() {
        assert_eq!(
            call_code("AbC_-09xyzXYZ1234")
                .as_ref()
                .map(CallCode::as_str),
            Some("AbC_-09xyzXYZ1234")
        );
        assert!(call_code("").is_none());
        assert!(call_code("has space").is_none());
        assert!(call_code("../etc").is_none());
        assert!(call_code(&"a".repeat(CallCode::MAX_STORED_LEN + 1)).is_none());
    }
}
