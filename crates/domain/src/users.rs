//! Users: signing in (the one rule that turns what Telegram says about a person into a
//! stored user, shared by the Mini App sign-in and the bot's `/start`) and authenticating
//! (the user behind a verified session, for every authenticated route and the WebSocket
//! handshake).

use std::sync::Arc;

use crate::clock::Clock;
use crate::entities::{User, UserId, UserProfile};
use crate::error::DomainError;
use crate::repo::Repositories;

/// A Telegram user as Telegram describes them (initData's `user`, an update's `from`),
/// before any normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TelegramAccount {
    /// Telegram's user id.
    pub id: i64,
    /// Username without `@`, unvalidated.
    pub username: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Profile photo URL. `None` with [`TelegramAccount::photo_known`] false means "not
    /// told" (bot updates carry no photo), which keeps the stored photo.
    pub photo_url: Option<String>,
    /// Whether `photo_url` says something about the photo (true for initData, where a
    /// missing photo means the user has none or hides it).
    pub photo_known: bool,
}

/// Signing users in from their Telegram accounts and finding the user behind a session.
#[derive(Clone)]
pub struct UserService {
    repo: Arc<dyn Repositories>,
    clock: Arc<dyn Clock>,
}

impl UserService {
    /// A service over `repo`.
    pub fn new(repo: Arc<dyn Repositories>, clock: Arc<dyn Clock>) -> Self {
        Self { repo, clock }
    }

    /// Signs in the person of a verified Telegram `account`: creates their user, or
    /// refreshes names, username and photo of the one with the same Telegram id (keeping its
    /// internal id). Used by `POST /auth/telegram` and the bot's `/start` alike, so both
    /// create the same user.
    pub async fn sign_in(&self, account: &TelegramAccount) -> Result<User, DomainError> {
        // The one normalisation every sign-in path goes through.
        let mut profile = UserProfile::from_telegram(
            account.id,
            account.username.as_deref(),
            account.first_name.as_deref(),
            account.last_name.as_deref(),
            account.photo_url.as_deref(),
        );
        if !account.photo_known {
            // Nothing said about the photo: keep the one a sign-in stored.
            profile.photo_url = self
                .repo
                .find_user_by_telegram_id(account.id)
                .await?
                .and_then(|u| u.photo_url);
        }
        Ok(self.repo.upsert_user(&profile, self.clock.now()).await?)
    }

    /// The user a verified session or ticket names (`user_id` is its subject):
    /// [`DomainError::UserNotFound`] when that user no longer exists. Used by every
    /// authenticated route and the WebSocket handshake alike.
    pub async fn authenticate(&self, user_id: UserId) -> Result<User, DomainError> {
        self.repo
            .find_user(user_id)
            .await?
            .ok_or(DomainError::UserNotFound)
    }
}
