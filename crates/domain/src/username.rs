//! Telegram username validation: anything that is not `^[A-Za-z0-9_]{5,32}$` is dropped.

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
