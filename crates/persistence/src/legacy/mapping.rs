//! Pure mapping of the older backend's rows onto telcall's: timestamps, status names,
//! usernames, titles, statistics figures, and the reasons a row is skipped or repaired.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, SubsecRound, TimeDelta, Utc};
use telcall_domain::{CallCode, CallStatsInput, CallStatus, UserProfile};

/// How long an older call without `expires_at` lives: telcall's own call lifetime.
pub const DEFAULT_CALL_LIFETIME: TimeDelta = TimeDelta::hours(24);
/// Longest call title telcall stores (characters).
pub const MAX_TITLE_CHARS: usize = 255;
/// Longest call code telcall stores and looks up (characters of `A-Z a-z 0-9 - _`).
pub const MAX_CODE_CHARS: usize = CallCode::MAX_STORED_LEN;

/// A timestamp as the older database hands it over.
#[derive(Debug, Clone, PartialEq)]
pub enum RawTime {
    /// Microseconds since the Unix epoch (PostgreSQL, both timestamp flavours, read as UTC).
    Micros(i64),
    /// Text (SQLite): naive `2026-12-01 02:55:29.347579` meant as UTC, or with an offset.
    Text(String),
}

/// Why a row of the older database is not imported.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkipReason {
    /// A required column is null or unreadable.
    Unreadable(&'static str),
    /// The call code is not one telcall can look up (see [`CallCode::is_well_formed`]):
    /// empty, longer than [`MAX_CODE_CHARS`], or with characters outside `A-Z a-z 0-9 - _`.
    /// No link can reach such a call.
    BadCode,
    /// The status is none of the three known names.
    UnknownStatus(String),
    /// The row names a user the older database no longer has (or that was not imported).
    MissingUser,
    /// The row names a call the older database no longer has (or that was not imported).
    MissingCall,
    /// A friend link from a user to themselves.
    SelfLink,
    /// A statistics figure telcall's rules refuse.
    BadFigures(String),
    /// The same row appears twice in the older database.
    DuplicateInSource,
    /// telcall keeps one statistics row per participant and call, the newest (as the API
    /// does when a participant reports again); this one is older than another (or as
    /// recent as one read before it).
    OlderStats,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable(column) => write!(f, "{column} is missing or unreadable"),
            Self::BadCode => write!(
                f,
                "call code is not 1 to {MAX_CODE_CHARS} characters of A-Z a-z 0-9 - _ \
                 (no link can reach it)"
            ),
            Self::UnknownStatus(status) => write!(f, "unknown call status {status:?}"),
            Self::MissingUser => f.write_str("refers to a user that does not exist"),
            Self::MissingCall => {
                f.write_str("refers to a call that does not exist (or was not imported)")
            }
            Self::SelfLink => f.write_str("friend link of a user to themselves"),
            Self::BadFigures(why) => write!(f, "figures out of bounds: {why}"),
            Self::DuplicateInSource => f.write_str("duplicate row in the source"),
            Self::OlderStats => f.write_str(
                "not the newest statistics row of its participant and call (the newest is kept)",
            ),
        }
    }
}

/// A change made to a row so that telcall accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Repair {
    /// The username failed telcall's username rule and was dropped (as at sign-in).
    UsernameDropped,
    /// A first or last name lost control characters or was cut (as at sign-in).
    NameCleaned,
    /// The photo URL had control characters or whitespace, or was too long, and was
    /// dropped (as at sign-in).
    PhotoUrlDropped,
    /// The title lost its control characters (telcall's API refuses them).
    TitleCleaned,
    /// The title was cut to [`MAX_TITLE_CHARS`] characters.
    TitleTruncated,
    /// `expires_at` was null: creation time plus [`DEFAULT_CALL_LIFETIME`].
    ExpiryFilledIn,
    /// `updated_at` was null or unreadable: the creation time is used.
    UpdatedAtFilledIn,
    /// A one-directional friend link also got its reverse direction.
    ReverseLinkAdded,
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UsernameDropped => "username failed the username rule: stored as null",
            Self::NameCleaned => "name cleaned as at sign-in (control characters, length)",
            Self::PhotoUrlDropped => {
                "photo URL with control characters, whitespace or too long: stored as null"
            }
            Self::TitleCleaned => "control characters removed from the title",
            Self::TitleTruncated => "title cut to 255 characters",
            Self::ExpiryFilledIn => "expires_at was null: set to created_at + 24 h",
            Self::UpdatedAtFilledIn => "updated_at was null: set to created_at",
            Self::ReverseLinkAdded => "one-directional friend link: reverse direction added",
        })
    }
}

/// The instant a [`RawTime`] names, truncated to microseconds (telcall's precision), or
/// `None` when it cannot be read.
pub fn parse_time(raw: &RawTime) -> Option<DateTime<Utc>> {
    let at = match raw {
        RawTime::Micros(us) => DateTime::<Utc>::from_timestamp_micros(*us)?,
        RawTime::Text(text) => parse_text_time(text.trim())?,
    };
    Some(at.trunc_subsecs(6))
}

fn parse_text_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(at) = DateTime::parse_from_str(text, format) {
            return Some(at.with_timezone(&Utc));
        }
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc());
        }
    }
    // A number: seconds since the epoch (what some writers store in SQLite).
    let seconds: f64 = text.parse().ok()?;
    if !seconds.is_finite() {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)]
    DateTime::<Utc>::from_timestamp_micros((seconds * 1e6).round() as i64)
}

/// A required timestamp, or the skip reason naming `column`.
fn required(raw: Option<&RawTime>, column: &'static str) -> Result<DateTime<Utc>, SkipReason> {
    raw.and_then(parse_time)
        .ok_or(SkipReason::Unreadable(column))
}

/// telcall's status for the older enum name (`ACTIVE`, `ENDED`, `EXPIRED`; any case).
pub fn map_status(name: &str) -> Result<CallStatus, SkipReason> {
    match name.trim().to_ascii_uppercase().as_str() {
        "ACTIVE" => Ok(CallStatus::Active),
        "ENDED" => Ok(CallStatus::Ended),
        "EXPIRED" => Ok(CallStatus::Expired),
        _ => Err(SkipReason::UnknownStatus(name.to_owned())),
    }
}

/// A `users` row of the older database.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyUser {
    /// Older internal id.
    pub id: i64,
    /// Telegram id (the key across both databases).
    pub telegram_user_id: Option<i64>,
    /// Username as stored.
    pub username: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Photo URL.
    pub photo_url: Option<String>,
    /// Creation time.
    pub created_at: Option<RawTime>,
    /// Last profile update.
    pub updated_at: Option<RawTime>,
}

/// A user as telcall stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// Telegram id.
    pub telegram_user_id: i64,
    /// Username, when it passes the username rule.
    pub username: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Photo URL.
    pub photo_url: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last profile update.
    pub updated_at: DateTime<Utc>,
}

/// Maps a user; username, names and photo go through the domain's normalisation
/// ([`UserProfile::from_telegram`]), exactly as at sign-in.
pub fn map_user(user: &LegacyUser) -> Result<(UserRow, Vec<Repair>), SkipReason> {
    let telegram_user_id = user
        .telegram_user_id
        .ok_or(SkipReason::Unreadable("telegram_user_id"))?;
    let created_at = required(user.created_at.as_ref(), "created_at")?;
    let mut repairs = Vec::new();
    let updated_at = user
        .updated_at
        .as_ref()
        .and_then(parse_time)
        .unwrap_or_else(|| {
            repairs.push(Repair::UpdatedAtFilledIn);
            created_at
        });
    let profile = UserProfile::from_telegram(
        telegram_user_id,
        user.username.as_deref(),
        user.first_name.as_deref(),
        user.last_name.as_deref(),
        user.photo_url.as_deref(),
    );
    if user.username.is_some() && profile.username.is_none() {
        repairs.push(Repair::UsernameDropped);
    }
    if profile.first_name != user.first_name || profile.last_name != user.last_name {
        repairs.push(Repair::NameCleaned);
    }
    if user.photo_url.is_some() && profile.photo_url.is_none() {
        repairs.push(Repair::PhotoUrlDropped);
    }
    Ok((
        UserRow {
            telegram_user_id,
            username: profile.username,
            first_name: profile.first_name,
            last_name: profile.last_name,
            photo_url: profile.photo_url,
            created_at,
            updated_at,
        },
        repairs,
    ))
}

/// A `calls` row of the older database, its creator named by Telegram id.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyCall {
    /// Older internal id.
    pub id: i64,
    /// The public code (`call_id`).
    pub code: Option<String>,
    /// The creator's Telegram id (null when the creator row is gone).
    pub creator_telegram_id: Option<i64>,
    /// Title.
    pub title: Option<String>,
    /// Video flag.
    pub is_video_enabled: bool,
    /// Status name.
    pub status: Option<String>,
    /// Creation time.
    pub created_at: Option<RawTime>,
    /// Expiry time.
    pub expires_at: Option<RawTime>,
}

/// A call as telcall stores it, its creator named by Telegram id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRow {
    /// The public code, unchanged.
    pub code: String,
    /// The creator's Telegram id.
    pub creator_telegram_id: i64,
    /// Title.
    pub title: Option<String>,
    /// Video flag.
    pub is_video_enabled: bool,
    /// Status.
    pub status: CallStatus,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry time.
    pub expires_at: DateTime<Utc>,
    /// When it stopped being active: the expiry time of expired calls; unknown (null) for
    /// ended ones, which the older schema did not record.
    pub ended_at: Option<DateTime<Utc>>,
}

/// Maps a call; the code is kept exactly, when telcall can look it up.
pub fn map_call(call: &LegacyCall) -> Result<(CallRow, Vec<Repair>), SkipReason> {
    let code = call.code.clone().unwrap_or_default();
    if !CallCode::is_well_formed(&code) {
        return Err(SkipReason::BadCode);
    }
    let creator_telegram_id = call.creator_telegram_id.ok_or(SkipReason::MissingUser)?;
    let status = map_status(
        call.status
            .as_deref()
            .ok_or(SkipReason::Unreadable("status"))?,
    )?;
    let created_at = required(call.created_at.as_ref(), "created_at")?;
    let mut repairs = Vec::new();
    let expires_at = match &call.expires_at {
        None => {
            repairs.push(Repair::ExpiryFilledIn);
            created_at + DEFAULT_CALL_LIFETIME
        }
        Some(raw) => parse_time(raw).ok_or(SkipReason::Unreadable("expires_at"))?,
    };
    let title = call
        .title
        .as_deref()
        .and_then(|t| map_title(t, &mut repairs));
    let ended_at = (status == CallStatus::Expired).then_some(expires_at);
    Ok((
        CallRow {
            code,
            creator_telegram_id,
            title,
            is_video_enabled: call.is_video_enabled,
            status,
            created_at,
            expires_at,
            ended_at,
        },
        repairs,
    ))
}

/// A title as telcall's API would accept it: control characters removed, at most
/// [`MAX_TITLE_CHARS`] characters, `None` when blank.
fn map_title(title: &str, repairs: &mut Vec<Repair>) -> Option<String> {
    let mut title = title.to_owned();
    if title.chars().any(char::is_control) {
        repairs.push(Repair::TitleCleaned);
        title.retain(|c| !c.is_control());
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        repairs.push(Repair::TitleTruncated);
        title = title.chars().take(MAX_TITLE_CHARS).collect();
    }
    (!title.trim().is_empty()).then_some(title)
}

/// The code of the call a row refers to, when it could name an imported call.
fn call_code(code: Option<&String>) -> Result<String, SkipReason> {
    match code {
        Some(code) if CallCode::is_well_formed(code) => Ok(code.clone()),
        _ => Err(SkipReason::MissingCall),
    }
}

/// A `participants` row of the older database, with natural keys.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyParticipant {
    /// Older internal id.
    pub id: i64,
    /// The call's code (null when the call row is gone).
    pub code: Option<String>,
    /// The user's Telegram id (null when the user row is gone).
    pub telegram_user_id: Option<i64>,
    /// Join time.
    pub joined_at: Option<RawTime>,
    /// Leave time.
    pub left_at: Option<RawTime>,
}

/// A participant as telcall stores it, with natural keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantRow {
    /// The call's code.
    pub code: String,
    /// The user's Telegram id.
    pub telegram_user_id: i64,
    /// Join time.
    pub joined_at: DateTime<Utc>,
    /// Leave time.
    pub left_at: Option<DateTime<Utc>>,
}

/// Maps a participant.
pub fn map_participant(p: &LegacyParticipant) -> Result<ParticipantRow, SkipReason> {
    let code = call_code(p.code.as_ref())?;
    let telegram_user_id = p.telegram_user_id.ok_or(SkipReason::MissingUser)?;
    let joined_at = required(p.joined_at.as_ref(), "joined_at")?;
    let left_at = match &p.left_at {
        None => None,
        Some(raw) => Some(parse_time(raw).ok_or(SkipReason::Unreadable("left_at"))?),
    };
    Ok(ParticipantRow {
        code,
        telegram_user_id,
        joined_at,
        left_at,
    })
}

/// A `friend_links` row of the older database, with natural keys.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyFriendLink {
    /// Older id of the owner (part of the primary key).
    pub user_id: i64,
    /// Older id of the friend (part of the primary key).
    pub friend_id: i64,
    /// The owner's Telegram id.
    pub user_telegram_id: Option<i64>,
    /// The friend's Telegram id.
    pub friend_telegram_id: Option<i64>,
    /// First shared call.
    pub created_at: Option<RawTime>,
    /// Last shared call.
    pub updated_at: Option<RawTime>,
    /// Whether the older database also has the reverse direction.
    pub reverse_exists: bool,
}

/// A friend link as telcall stores it, with natural keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    /// The owner's Telegram id.
    pub user_telegram_id: i64,
    /// The friend's Telegram id.
    pub friend_telegram_id: i64,
    /// Last shared call.
    pub last_call_at: DateTime<Utc>,
    /// First shared call.
    pub created_at: DateTime<Utc>,
}

/// Maps a friend link; a one-directional link yields both directions (telcall's links are
/// symmetric), with [`Repair::ReverseLinkAdded`].
pub fn map_link(link: &LegacyFriendLink) -> Result<(Vec<LinkRow>, Vec<Repair>), SkipReason> {
    let (Some(user), Some(friend)) = (link.user_telegram_id, link.friend_telegram_id) else {
        return Err(SkipReason::MissingUser);
    };
    if user == friend {
        return Err(SkipReason::SelfLink);
    }
    let created_at = required(link.created_at.as_ref(), "created_at")?;
    let mut repairs = Vec::new();
    let last_call_at = link
        .updated_at
        .as_ref()
        .and_then(parse_time)
        .unwrap_or_else(|| {
            repairs.push(Repair::UpdatedAtFilledIn);
            created_at
        });
    let forward = LinkRow {
        user_telegram_id: user,
        friend_telegram_id: friend,
        last_call_at,
        created_at,
    };
    let mut rows = vec![forward];
    if !link.reverse_exists {
        repairs.push(Repair::ReverseLinkAdded);
        rows.push(LinkRow {
            user_telegram_id: friend,
            friend_telegram_id: user,
            last_call_at,
            created_at,
        });
    }
    Ok((rows, repairs))
}

/// A `call_stats` row of the older database, with natural keys.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyStat {
    /// Older internal id.
    pub id: i64,
    /// The call's code (the older table references calls by code).
    pub code: Option<String>,
    /// The reporter's Telegram id.
    pub telegram_user_id: Option<i64>,
    /// The figures (the older integer duration as a number of seconds).
    pub figures: CallStatsInput,
    /// When it was stored.
    pub created_at: Option<RawTime>,
}

/// A statistics row as telcall stores it, with natural keys.
#[derive(Debug, Clone, PartialEq)]
pub struct StatRow {
    /// The call's code.
    pub code: String,
    /// The reporter's Telegram id.
    pub telegram_user_id: i64,
    /// The figures.
    pub figures: CallStatsInput,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// Maps a statistics row; its figures must pass telcall's own checks
/// ([`CallStatsInput::validate`]), else the row is skipped (never clamped).
pub fn map_stat(stat: &LegacyStat) -> Result<StatRow, SkipReason> {
    let code = call_code(stat.code.as_ref())?;
    let telegram_user_id = stat.telegram_user_id.ok_or(SkipReason::MissingUser)?;
    stat.figures.validate().map_err(SkipReason::BadFigures)?;
    let created_at = required(stat.created_at.as_ref(), "created_at")?;
    Ok(StatRow {
        code,
        telegram_user_id,
        figures: stat.figures.clone(),
        created_at,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn text(s: &str) -> Option<RawTime> {
        Some(RawTime::Text(s.to_owned()))
    }

    #[test]
    fn naive_and_aware_texts_are_utc() {
        let want = Utc
            .with_ymd_and_hms(2026, 12, 1, 2, 55, 29)
            .unwrap()
            .checked_add_signed(TimeDelta::microseconds(347_579))
            .unwrap();
        for s in [
            "2026-12-01 02:55:29.347579",
            "2026-12-01T02:55:29.347579",
            "2026-12-01 02:55:29.347579+00:00",
            "2026-12-01T05:55:29.347579+03:00",
            "2026-12-01T02:55:29.347579Z",
        ] {
            assert_eq!(parse_time(&RawTime::Text(s.into())), Some(want), "{s}");
        }
        assert_eq!(
            parse_time(&RawTime::Text("2026-12-01 02:55:29".into())),
            Some(Utc.with_ymd_and_hms(2026, 12, 1, 2, 55, 29).unwrap())
        );
        assert_eq!(parse_time(&RawTime::Text("yesterday".into())), None);
        assert_eq!(
            parse_time(&RawTime::Micros(want.timestamp_micros())),
            Some(want)
        );
    }

    #[test]
    fn statuses_map_by_name() {
        assert_eq!(map_status("ACTIVE"), Ok(CallStatus::Active));
        assert_eq!(map_status("ENDED"), Ok(CallStatus::Ended));
        assert_eq!(map_status("expired"), Ok(CallStatus::Expired));
        assert!(matches!(
            map_status("PAUSED"),
            Err(SkipReason::UnknownStatus(_))
        ));
    }

    #[test]
    fn null_expiry_is_created_plus_a_day_and_codes_stay() {
        let call = LegacyCall {
            id: 1,
            code: Some("abc123".into()),
            creator_telegram_id: Some(7),
            title: Some("x".repeat(300)),
            is_video_enabled: true,
            status: Some("EXPIRED".into()),
            created_at: text("2026-12-01 00:00:00"),
            expires_at: None,
        };
        let (row, repairs) = map_call(&call).unwrap();
        assert_eq!(row.code, "abc123");
        assert_eq!(row.expires_at - row.created_at, DEFAULT_CALL_LIFETIME);
        assert_eq!(row.ended_at, Some(row.expires_at));
        assert_eq!(row.title.unwrap().chars().count(), MAX_TITLE_CHARS);
        assert_eq!(
            repairs,
            vec![Repair::ExpiryFilledIn, Repair::TitleTruncated]
        );
        let orphan = LegacyCall {
            creator_telegram_id: None,
            ..call
        };
        assert_eq!(map_call(&orphan), Err(SkipReason::MissingUser));
    }

    #[test]
    fn one_directional_links_get_their_reverse() {
        let link = LegacyFriendLink {
            user_id: 1,
            friend_id: 2,
            user_telegram_id: Some(10),
            friend_telegram_id: Some(20),
            created_at: text("2026-11-01 10:00:00"),
            updated_at: text("2026-11-05 10:00:00"),
            reverse_exists: false,
        };
        let (rows, repairs) = map_link(&link).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].user_telegram_id, 20);
        assert_eq!(rows[1].last_call_at, rows[0].last_call_at);
        assert_eq!(repairs, vec![Repair::ReverseLinkAdded]);
        let both = LegacyFriendLink {
            reverse_exists: true,
            ..link.clone()
        };
        assert_eq!(map_link(&both).unwrap().0.len(), 1);
        let own = LegacyFriendLink {
            friend_telegram_id: Some(10),
            ..link
        };
        assert_eq!(map_link(&own), Err(SkipReason::SelfLink));
    }

    fn arb_name() -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop_oneof!["[A-Za-z0-9_]{0,40}", any::<String>(),])
    }

    proptest! {
        /// Any instant written the way the older SQLite backend wrote it (naive UTC text,
        /// microseconds), or handed over as PostgreSQL microseconds, reads back exactly.
        #[test]
        fn legacy_timestamps_round_trip(us in -2_000_000_000_000_000_i64..8_000_000_000_000_000) {
            let at = DateTime::<Utc>::from_timestamp_micros(us).unwrap();
            let naive = at.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            prop_assert_eq!(parse_time(&RawTime::Text(naive)), Some(at));
            prop_assert_eq!(parse_time(&RawTime::Micros(us)), Some(at));
        }

        /// Users keep their Telegram id; username, names and photo are exactly what sign-in
        /// would store ([`UserProfile::from_telegram`]: no control character, bounded
        /// lengths), and every change is counted as a repair.
        #[test]
        fn users_map_like_sign_in(
            tg in any::<i64>(),
            username in arb_name(),
            first in arb_name(),
            last in arb_name(),
            photo in arb_name(),
            us in 0_i64..4_000_000_000_000_000,
        ) {
            let user = LegacyUser {
                id: 1,
                telegram_user_id: Some(tg),
                username: username.clone(),
                first_name: first.clone(),
                last_name: last.clone(),
                photo_url: photo.clone(),
                created_at: Some(RawTime::Micros(us)),
                updated_at: None,
            };
            let (row, repairs) = map_user(&user).unwrap();
            let signed_in = UserProfile::from_telegram(
                tg,
                username.as_deref(),
                first.as_deref(),
                last.as_deref(),
                photo.as_deref(),
            );
            prop_assert_eq!(row.telegram_user_id, tg);
            prop_assert_eq!(&row.username, &signed_in.username);
            prop_assert_eq!(&row.first_name, &signed_in.first_name);
            prop_assert_eq!(&row.last_name, &signed_in.last_name);
            prop_assert_eq!(&row.photo_url, &signed_in.photo_url);
            for text in [&row.first_name, &row.last_name, &row.photo_url].into_iter().flatten() {
                prop_assert!(!text.chars().any(char::is_control), "{:?}", text);
            }
            prop_assert_eq!(row.updated_at, row.created_at);
            prop_assert_eq!(
                repairs.contains(&Repair::UsernameDropped),
                username.is_some() && row.username.is_none()
            );
            prop_assert_eq!(
                repairs.contains(&Repair::NameCleaned),
                row.first_name != first || row.last_name != last
            );
            prop_assert_eq!(
                repairs.contains(&Repair::PhotoUrlDropped),
                photo.is_some() && row.photo_url.is_none()
            );
        }

        /// A call is imported exactly when its code is one telcall looks up, and then with
        /// that code unchanged; its title is one the API would accept. Participants and
        /// statistics naming a code that cannot be looked up are skipped the same way.
        #[test]
        fn calls_keep_reachable_codes_and_clean_titles(
            code in prop::option::of(prop_oneof![
                "[A-Za-z0-9_-]{1,20}",
                "[A-Za-z0-9_-]{21,40}",
                any::<String>(),
            ]),
            title in prop::option::of(prop_oneof!["[ -~]{0,300}", any::<String>()]),
            status in prop_oneof![Just("ACTIVE"), Just("ENDED"), Just("EXPIRED")],
        ) {
            let call = LegacyCall {
                id: 1,
                code: code.clone(),
                creator_telegram_id: Some(7),
                title: title.clone(),
                is_video_enabled: false,
                status: Some(status.to_owned()),
                created_at: text("2026-12-01 00:00:00"),
                expires_at: None,
            };
            let reachable = code.as_deref().is_some_and(CallCode::is_well_formed);
            match map_call(&call) {
                Ok((row, repairs)) => {
                    prop_assert!(reachable);
                    prop_assert_eq!(Some(&row.code), code.as_ref());
                    if let Some(t) = &row.title {
                        prop_assert!(t.chars().count() <= MAX_TITLE_CHARS);
                        prop_assert!(!t.chars().any(char::is_control));
                        prop_assert!(!t.trim().is_empty());
                    }
                    prop_assert_eq!(
                        repairs.contains(&Repair::TitleCleaned),
                        title.as_deref().is_some_and(|t| t.chars().any(char::is_control))
                    );
                }
                Err(reason) => {
                    prop_assert!(!reachable);
                    prop_assert_eq!(reason, SkipReason::BadCode);
                }
            }
            let participant = LegacyParticipant {
                id: 1,
                code: code.clone(),
                telegram_user_id: Some(7),
                joined_at: text("2026-12-01 00:00:00"),
                left_at: None,
            };
            match map_participant(&participant) {
                Ok(row) => prop_assert_eq!(Some(&row.code), code.as_ref()),
                Err(reason) => {
                    prop_assert!(!reachable);
                    prop_assert_eq!(reason, SkipReason::MissingCall);
                }
            }
        }

        /// A statistics row is imported exactly when telcall's own checks accept its
        /// figures, and then unchanged.
        #[test]
        fn stats_pass_the_domain_checks_or_are_skipped(
            duration in prop::option::of(-10.0_f64..2e12),
            lost in prop::option::of(any::<i64>()),
            rtt in prop::option::of(prop_oneof![Just(f64::NAN), -1.0_f64..1e13]),
            resolution in prop::option::of("[0-9x]{0,40}"),
        ) {
            let figures = CallStatsInput {
                duration_seconds: duration,
                audio_packets_lost: lost,
                rtt_ms: rtt,
                video_resolution: resolution,
                ..CallStatsInput::default()
            };
            let stat = LegacyStat {
                id: 1,
                code: Some("code".into()),
                telegram_user_id: Some(5),
                figures: figures.clone(),
                created_at: text("2026-12-01 02:55:29.347579"),
            };
            match map_stat(&stat) {
                Ok(row) => {
                    prop_assert!(figures.validate().is_ok());
                    prop_assert_eq!(row.figures, figures);
                }
                Err(reason) => {
                    prop_assert!(figures.validate().is_err());
                    prop_assert!(matches!(reason, SkipReason::BadFigures(_)));
                }
            }
        }
    }
}
