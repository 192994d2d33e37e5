//! Users: signing in (the one rule that turns what Telegram says about a person into a
//! stored user, shared by the Mini App sign-in and the bot's `/start`) and authenticating
//! (the user behind a verified session, for every authenticated route and the WebSocket
//! handshake).

use std::sync::Arc;

use chrono::Duration;

use crate::cache::TtlCache;
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
    /// Users recently found by [`UserService::authenticate`], each kept for a fixed time: a
    /// session's user is then read from storage once per that time, not once per request.
    /// The price, documented with the setting: a user deleted from storage keeps being
    /// found, and a profile changed by another instance is seen, at most that long
    /// afterwards.
    cache: Option<Arc<TtlCache<UserId, User>>>,
}

impl UserService {
    /// A service over `repo`.
    pub fn new(repo: Arc<dyn Repositories>, clock: Arc<dyn Clock>) -> Self {
        Self {
            repo,
            clock,
            cache: None,
        }
    }

    /// Keeps each user [`UserService::authenticate`] found (and each user signed in) for
    /// `ttl`, at most `capacity` of them, instead of reading storage on every request. A
    /// zero `ttl` or `capacity` keeps nothing.
    #[must_use]
    pub fn with_cache(mut self, ttl: Duration, capacity: usize) -> Self {
        self.cache = TtlCache::new(ttl, capacity).map(Arc::new);
        self
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
        let user = self.repo.upsert_user(&profile, self.clock.now()).await?;
        if let Some(cache) = &self.cache {
            cache.put(user.id, user.clone(), self.clock.now());
        }
        Ok(user)
    }

    /// The user a verified session or ticket names (`user_id` is its subject):
    /// [`DomainError::UserNotFound`] when that user no longer exists. Used by every
    /// authenticated route and the WebSocket handshake alike. With
    /// [`UserService::with_cache`], a user found within its time is not read again.
    pub async fn authenticate(&self, user_id: UserId) -> Result<User, DomainError> {
        let Some(cache) = &self.cache else {
            return self
                .repo
                .find_user(user_id)
                .await?
                .ok_or(DomainError::UserNotFound);
        };
        let now = self.clock.now();
        if let Some(user) = cache.fresh(&user_id, now) {
            return Ok(user);
        }
        let user = self
            .repo
            .find_user(user_id)
            .await?
            .ok_or(DomainError::UserNotFound)?;
        cache.put(user.id, user.clone(), now);
        Ok(user)
    }
}
