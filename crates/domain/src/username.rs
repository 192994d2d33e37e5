//! Normalisation of what Telegram tells us about a user: the username rule
//! (`^[A-Za-z0-9_]{5,32}$`, anything else is dropped) and the cleaning of names and photo
//! URLs (control characters never reach storage, lengths are bounded). Sign-in builds its
//! [`crate::UserProfile`] through [`crate::UserProfile::from_telegram`], which applies
//! these; the bot's `/start` stores its sender through the same
//! [`crate::UserService::sign_in`], and the import of the older backend's users goes through
//! `from_telegram` too.

/// Returns the username if it is a valid Telegram username, else `None`.
///
/// ```
/// use telcall_domain::username::sanitize_username;
/// assert_eq!(sanitize_username(Some("ada_l")), Some("ada_l".to_owned()));
/// assert_eq!(sanitize_username(Some("ada")), None);
/// assert_eq!(sanitize_username(Some("<script>")), None);
/// ```
pub fn sanitize_username(raw: Option<&str>) -> Option<String> {
    let name = raw?;
    let ok = (5..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then(|| name.to_owned())
}

/// Longest first or last name kept, in characters (Telegram's own limit is 64); longer
/// names are cut.
pub const MAX_NAME_CHARS: usize = 255;

/// Longest photo URL kept, in bytes; a longer one is dropped (a cut URL leads nowhere).
pub const MAX_PHOTO_URL_LEN: usize = 2048;

/// A first or last name with every control character (NUL, newlines, escapes, C1 codes)
/// removed, surrounding whitespace trimmed and cut to [`MAX_NAME_CHARS`] characters; `None`
/// when nothing is left.
///
/// ```
/// use telcall_domain::username::{MAX_NAME_CHARS, clean_name};
/// assert_eq!(clean_name(Some("A\u{0}da\n")), Some("Ada".to_owned()));
/// assert_eq!(clean_name(Some("Zoë 🚀")), Some("Zoë 🚀".to_owned()));
/// assert_eq!(clean_name(Some("\u{0}\u{7}")), None);
/// let long = "ж".repeat(300);
/// assert_eq!(clean_name(Some(&long)).unwrap().chars().count(), MAX_NAME_CHARS);
/// ```
pub fn clean_name(raw: Option<&str>) -> Option<String> {
    let cleaned: String = raw?.chars().filter(|c| !c.is_control()).collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        return None;
    }
    let capped: String = trimmed.chars().take(MAX_NAME_CHARS).collect();
    Some(capped.trim_end().to_owned())
}

/// A photo URL, or `None` when it contains a control character or whitespace (no real URL
/// does), is empty or is longer than [`MAX_PHOTO_URL_LEN`].
///
/// ```
/// use telcall_domain::username::clean_photo_url;
/// let url = "https://t.me/i/userpic/320/ada.jpg";
/// assert_eq!(clean_photo_url(Some(url)), Some(url.to_owned()));
/// assert_eq!(clean_photo_url(Some("https://x/\u{0}.jpg")), None);
/// assert_eq!(clean_photo_url(Some(&format!("https://x/{}", "a".repeat(3000)))), None);
/// ```
pub fn clean_photo_url(raw: Option<&str>) -> Option<String> {
    let url = raw?.trim();
    let ok = !url.is_empty()
        && url.len() <= MAX_PHOTO_URL_LEN
        && !url.chars().any(|c| c.is_control() || c.is_whitespace());
    ok.then(|| url.to_owned())
}
