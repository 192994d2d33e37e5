//! Every text the bot sends, in English and Russian, in one place.

/// Longest caller name shown (article title and invitation), in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// The language of the bot's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English (the default).
    En,
    /// Russian.
    Ru,
}

impl Lang {
    /// Russian for a `language_code` of `ru` (or `ru-…`), English otherwise.
    pub fn from_code(code: Option<&str>) -> Self {
        match code {
            Some(c)
                if c.eq_ignore_ascii_case("ru") || c.to_ascii_lowercase().starts_with("ru-") =>
            {
                Self::Ru
            }
            _ => Self::En,
        }
    }
}

/// A caller's name fit for a title: control characters dropped, whitespace collapsed, at
/// most [`MAX_NAME_CHARS`] characters (an ellipsis marks a cut).
pub fn display_name(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if cleaned.chars().count() <= MAX_NAME_CHARS {
        return cleaned;
    }
    let mut cut: String = cleaned.chars().take(MAX_NAME_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Who a caller is, in `lang`: the first name, else the `@username`, else a neutral word.
pub fn caller_name(lang: Lang, first_name: Option<&str>, username: Option<&str>) -> String {
    let first = first_name.map(display_name).filter(|n| !n.is_empty());
    let user = username
        .map(display_name)
        .filter(|n| !n.is_empty())
        .map(|u| format!("@{u}"));
    first.or(user).unwrap_or_else(|| {
        match lang {
            Lang::En => "A friend",
            Lang::Ru => "Друг",
        }
        .to_owned()
    })
}

/// Title of the inline "Share" article.
pub fn share_title(lang: Lang, caller: &str) -> String {
    match lang {
        Lang::En => format!("{caller} invites you to a call"),
        Lang::Ru => format!("{caller} приглашает в звонок"),
    }
}

/// Description line of the inline "Share" article.
pub fn share_description(lang: Lang, video: bool) -> &'static str {
    match (lang, video) {
        (Lang::En, true) => "Video call · tap to send the invitation",
        (Lang::En, false) => "Voice call · tap to send the invitation",
        (Lang::Ru, true) => "Видеозвонок · нажмите, чтобы отправить приглашение",
        (Lang::Ru, false) => "Аудиозвонок · нажмите, чтобы отправить приглашение",
    }
}

/// The invitation message the article sends into the chat.
pub fn share_message(lang: Lang, caller: &str, video: bool) -> String {
    match (lang, video) {
        (Lang::En, true) => {
            format!("{caller} invites you to a video call. Tap the button to join.")
        }
        (Lang::En, false) => {
            format!("{caller} invites you to a voice call. Tap the button to join.")
        }
        (Lang::Ru, true) => {
            format!("{caller} приглашает вас в видеозвонок. Нажмите кнопку, чтобы присоединиться.")
        }
        (Lang::Ru, false) => {
            format!("{caller} приглашает вас в аудиозвонок. Нажмите кнопку, чтобы присоединиться.")
        }
    }
}

/// The button that joins a call.
pub fn join_button(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "Join call",
        Lang::Ru => "Присоединиться",
    }
}

/// The answer to `/start`.
pub fn welcome(lang: Lang) -> &'static str {
    match lang {
        Lang::En => {
            "Welcome! Start a group voice or video call right here in Telegram and share it \
             with friends: they join with one tap.\n\nTap the button to open the app. /help \
             tells more."
        }
        Lang::Ru => {
            "Добро пожаловать! Начните групповой аудио- или видеозвонок прямо в Telegram и \
             поделитесь им с друзьями: они присоединятся одним нажатием.\n\nНажмите кнопку, \
             чтобы открыть приложение. Подробнее — /help."
        }
    }
}

/// The button that opens the Mini App.
pub fn open_app_button(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "Open the app",
        Lang::Ru => "Открыть приложение",
    }
}

/// The answer to `/start <call code>` of a call that can be joined.
pub fn welcome_to_call(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "You are invited to a call. Tap the button to join.",
        Lang::Ru => "Вас пригласили в звонок. Нажмите кнопку, чтобы присоединиться.",
    }
}

/// The answer to `/help`, naming `support` (`BOT_SUPPORT_CONTACT`) when configured.
pub fn help(lang: Lang, support: Option<&str>) -> String {
    let body = match lang {
        Lang::En => {
            "How it works:\n1. Open the app and start a call.\n2. Tap “Share” and pick a chat: \
             the people there get a button that joins the call.\n3. Friends you have called \
             before can be called again from the app.\n\nCommands:\n/start — open the app\n\
             /help — this help"
        }
        Lang::Ru => {
            "Как это работает:\n1. Откройте приложение и начните звонок.\n2. Нажмите \
             «Поделиться» и выберите чат: его участники получат кнопку для входа в звонок.\n\
             3. Друзьям, с которыми вы уже созванивались, можно позвонить прямо из \
             приложения.\n\nКоманды:\n/start — открыть приложение\n/help — эта справка"
        }
    };
    let contact = match (lang, support) {
        (Lang::En, Some(c)) => format!("Questions or problems? Contact {c}."),
        (Lang::Ru, Some(c)) => format!("Вопросы или проблемы? Напишите {c}."),
        (Lang::En, None) => {
            "Questions or problems? Ask whoever invited you to this bot.".to_owned()
        }
        (Lang::Ru, None) => "Вопросы или проблемы? Спросите того, кто пригласил вас.".to_owned(),
    };
    format!("{body}\n\n{contact}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_follows_the_code() {
        assert_eq!(Lang::from_code(Some("ru")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("RU")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("ru-RU")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("rus")), Lang::En);
        assert_eq!(Lang::from_code(Some("en")), Lang::En);
        assert_eq!(Lang::from_code(Some("uk")), Lang::En);
        assert_eq!(Lang::from_code(None), Lang::En);
    }

    #[test]
    fn names_are_capped_and_cleaned() {
        let long = "A".repeat(10_000);
        let name = display_name(&long);
        assert_eq!(name.chars().count(), MAX_NAME_CHARS);
        assert!(name.ends_with('…'));
        assert_eq!(display_name("Ada\n\u{0}Lovelace  "), "Ada Lovelace");
        assert_eq!(caller_name(Lang::En, Some("  "), Some("ada_l")), "@ada_l");
        assert_eq!(caller_name(Lang::Ru, None, None), "Друг");
        assert_eq!(caller_name(Lang::En, Some("Ada"), Some("ada_l")), "Ada");
    }
}
