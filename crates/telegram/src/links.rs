//! The Mini App links the bot's buttons open (CONTRACT's `join_url` and the app itself).

/// Builds `t.me` links to the Mini App, with or without a `MINI_APP_NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiniAppLinks {
    bot_username: String,
    mini_app_name: Option<String>,
}

impl MiniAppLinks {
    /// Links for the bot `bot_username` (without `@`) and the optional Mini App short name.
    pub fn new(bot_username: &str, mini_app_name: Option<&str>) -> Self {
        Self {
            bot_username: bot_username.trim_start_matches('@').to_owned(),
            mini_app_name: mini_app_name
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
        }
    }

    /// The bot's username, without `@`.
    pub fn bot_username(&self) -> &str {
        &self.bot_username
    }

    /// The link that opens the Mini App on the call `code`:
    /// `https://t.me/<bot>?startapp=<code>` or `https://t.me/<bot>/<app>?startapp=<code>`.
    ///
    /// ```
    /// use telcall_telegram::MiniAppLinks;
    /// assert_eq!(MiniAppLinks::new("my_bot", None).join_url("abc"), "https://t.me/my_bot?startapp=abc");
    /// assert_eq!(MiniAppLinks::new("my_bot", Some("call")).join_url("abc"), "https://t.me/my_bot/call?startapp=abc");
    /// ```
    pub fn join_url(&self, code: &str) -> String {
        match &self.mini_app_name {
            Some(app) => format!("https://t.me/{}/{app}?startapp={code}", self.bot_username),
            None => format!("https://t.me/{}?startapp={code}", self.bot_username),
        }
    }

    /// The link that opens the Mini App itself: `https://t.me/<bot>?startapp` or
    /// `https://t.me/<bot>/<app>`.
    ///
    /// ```
    /// use telcall_telegram::MiniAppLinks;
    /// assert_eq!(MiniAppLinks::new("my_bot", None).app_url(), "https://t.me/my_bot?startapp");
    /// assert_eq!(MiniAppLinks::new("my_bot", Some("call")).app_url(), "https://t.me/my_bot/call");
    /// ```
    pub fn app_url(&self) -> String {
        match &self.mini_app_name {
            Some(app) => format!("https://t.me/{}/{app}", self.bot_username),
            None => format!("https://t.me/{}?startapp", self.bot_username),
        }
    }
}
