//! The entities telcall stores and the value types around them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// Declares a 64-bit database key as its own type, so that one kind of id cannot be
/// passed where another is expected. On the wire (serde) it is the bare integer.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The id with this number.
            pub const fn new(id: i64) -> Self {
                Self(id)
            }

            /// The number, as stored and sent.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id_type!(
    /// Internal user id (the JWT `sub`; not the Telegram user id).
    UserId
);
id_type!(
    /// Internal call id (database key; the public id is [`Call::code`]).
    CallId
);

/// A person who signed in through Telegram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Internal id.
    pub id: UserId,
    /// Telegram's user id.
    pub telegram_user_id: i64,
    /// Validated Telegram username, if any.
    pub username: Option<String>,
    /// First name as Telegram reported it.
    pub first_name: Option<String>,
    /// Last name as Telegram reported it.
    pub last_name: Option<String>,
    /// Profile photo URL as Telegram reported it.
    pub photo_url: Option<String>,
    /// First sign-in.
    pub created_at: DateTime<Utc>,
    /// Last sign-in.
    pub updated_at: DateTime<Utc>,
}

impl User {
    /// First and last name joined by a space, skipping missing parts.
    pub fn display_name(&self) -> String {
        [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a sign-in tells us about a user; the input of an upsert by Telegram id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserProfile {
    /// Telegram's user id (the upsert key).
    pub telegram_user_id: i64,
    /// Username, already validated (see [`UserProfile::from_telegram`]).
    pub username: Option<String>,
    /// First name, without control characters.
    pub first_name: Option<String>,
    /// Last name, without control characters.
    pub last_name: Option<String>,
    /// Photo URL.
    pub photo_url: Option<String>,
}

impl UserProfile {
    /// The profile of a Telegram user as Telegram reported it, normalised: a username that
    /// breaks the username rule is dropped, names lose control characters and are cut to
    /// [`crate::username::MAX_NAME_CHARS`], a photo URL with control characters or
    /// whitespace, or longer than [`crate::username::MAX_PHOTO_URL_LEN`], is dropped (see
    /// [`crate::username`]). Every path that stores a Telegram user builds its profile here,
    /// the import of the older backend's users included.
    pub fn from_telegram(
        telegram_user_id: i64,
        username: Option<&str>,
        first_name: Option<&str>,
        last_name: Option<&str>,
        photo_url: Option<&str>,
    ) -> Self {
        use crate::username::{clean_name, clean_photo_url, sanitize_username};
        Self {
            telegram_user_id,
            username: sanitize_username(username),
            first_name: clean_name(first_name),
            last_name: clean_name(last_name),
            photo_url: clean_photo_url(photo_url),
        }
    }
}

/// Lifecycle state of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallStatus {
    /// Open for joining.
    Active,
    /// Ended by its organizer or by a limit.
    Ended,
    /// Its lifetime passed.
    Expired,
}

impl CallStatus {
    /// The wire and storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Ended => "ended",
            Self::Expired => "expired",
        }
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of parsing an unknown call status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown call status: {0}")]
pub struct UnknownCallStatus(pub String);

impl FromStr for CallStatus {
    type Err = UnknownCallStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Self::Active),
            "ended" => Ok(Self::Ended),
            "expired" => Ok(Self::Expired),
            other => Err(UnknownCallStatus(other.to_owned())),
        }
    }
}

/// The public, unguessable id of a call (`call_id` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallCode(String);

impl CallCode {
    /// Length of generated codes (within the 16–20 the contract allows).
    pub const LEN: usize = 18;
    const ALPHABET: &'static [u8; 64] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    /// A fresh code of [`Self::LEN`] URL-safe characters from a CSPRNG (the thread-local ChaCha generator seeded by the OS) (108 bits).
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let code = (0..Self::LEN)
            .map(|_| char::from(Self::ALPHABET[rng.random_range(0..Self::ALPHABET.len())]))
            .collect();
        Self(code)
    }

    /// Wraps a code read back from storage without checking it. A code from a client is
    /// parsed instead (`code.parse::<CallCode>()`, [`CallCode::from_typed`]).
    pub fn from_raw(code: impl Into<String>) -> Self {
        Self(code.into())
    }

    /// Longest code storage can hold (the column's width); generated codes are shorter.
    pub const MAX_STORED_LEN: usize = 32;

    /// Whether `code` could name a stored call: 1 to [`Self::MAX_STORED_LEN`] characters of
    /// the URL-safe alphabet (`A-Z a-z 0-9 - _`). Anything else — a NUL byte, a space, a
    /// slash, a 300-character string — names no call, so it is "not found" without asking
    /// storage.
    ///
    /// ```
    /// use telcall_domain::CallCode;
    /// assert!(CallCode::is_well_formed(CallCode::generate().as_str()));
    /// assert!(CallCode::is_well_formed("abc-DEF_123"));
    /// assert!(!CallCode::is_well_formed("a\u{0}b"));
    /// assert!(!CallCode::is_well_formed(""));
    /// assert!(!CallCode::is_well_formed(&"a".repeat(33)));
    /// ```
    pub fn is_well_formed(code: &str) -> bool {
        (1..=Self::MAX_STORED_LEN).contains(&code.len())
            && code.bytes().all(|b| Self::ALPHABET.contains(&b))
    }

    /// A code a person typed or pasted (`POST /api/calls/join_by_code`): surrounding
    /// whitespace is ignored; nothing left is [`DomainError::CallCodeRequired`], anything
    /// else that is not a code names no call ([`DomainError::CallNotFound`]).
    ///
    /// ```
    /// use telcall_domain::{CallCode, DomainError};
    /// assert_eq!(CallCode::from_typed("  abc\n").map(|c| c.to_string()).as_deref(), Ok("abc"));
    /// assert_eq!(CallCode::from_typed(" \t"), Err(DomainError::CallCodeRequired));
    /// assert_eq!(CallCode::from_typed("a b"), Err(DomainError::CallNotFound));
    /// ```
    pub fn from_typed(text: &str) -> Result<Self, DomainError> {
        let code = text.trim();
        if code.is_empty() {
            return Err(DomainError::CallCodeRequired);
        }
        Ok(code.parse()?)
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Text that is not a call code (see [`CallCode::is_well_formed`]): it names no call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a call code")]
pub struct MalformedCallCode;

/// A code that names no call is simply not found.
impl From<MalformedCallCode> for DomainError {
    fn from(_: MalformedCallCode) -> Self {
        Self::CallNotFound
    }
}

/// Parses a code from a request, taken exactly (no trimming): it must be
/// [well formed](CallCode::is_well_formed).
///
/// ```
/// use telcall_domain::CallCode;
/// assert_eq!("abc-DEF_123".parse::<CallCode>().map(|c| c.to_string()).as_deref(), Ok("abc-DEF_123"));
/// assert!(" abc".parse::<CallCode>().is_err());
/// assert!("".parse::<CallCode>().is_err());
/// ```
impl FromStr for CallCode {
    type Err = MalformedCallCode;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        if Self::is_well_formed(code) {
            Ok(Self(code.to_owned()))
        } else {
            Err(MalformedCallCode)
        }
    }
}

impl fmt::Display for CallCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A group call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Internal id.
    pub id: CallId,
    /// Public id.
    pub code: CallCode,
    /// The organizer.
    pub creator_id: UserId,
    /// Optional title (≤ 255 characters).
    pub title: Option<String>,
    /// Whether video is on by default.
    pub is_video_enabled: bool,
    /// Lifecycle state as stored.
    pub status: CallStatus,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// When it was ended or marked expired.
    pub ended_at: Option<DateTime<Utc>>,
}

impl Call {
    /// Whether the call's lifetime has passed at `now` (whatever its stored status).
    pub fn is_past_expiry(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }

    /// Whether a call may last no longer than `cap` and that much time has passed at `now`
    /// since it was created (whatever its stored status, and however often its room
    /// emptied and filled again).
    pub fn is_past_duration_cap(&self, now: DateTime<Utc>, cap: chrono::Duration) -> bool {
        self.created_at
            .checked_add_signed(cap)
            .is_some_and(|end| now >= end)
    }

    /// Whether `user` may end this call.
    pub fn can_be_ended_by(&self, user: UserId) -> bool {
        self.creator_id == user
    }

    /// Whether people may join the call at `now`.
    pub fn is_joinable_at(&self, now: DateTime<Utc>) -> bool {
        self.status == CallStatus::Active && !self.is_past_expiry(now)
    }
}

/// Input of [`crate::CallRepository::create_call`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    /// Public id.
    pub code: CallCode,
    /// The organizer.
    pub creator_id: UserId,
    /// Optional title.
    pub title: Option<String>,
    /// Video on by default.
    pub is_video_enabled: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry time.
    pub expires_at: DateTime<Utc>,
}

/// One stay of a user in a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// Row id.
    pub id: i64,
    /// The call.
    pub call_id: CallId,
    /// The user.
    pub user_id: UserId,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
    /// When they left, if they did.
    pub left_at: Option<DateTime<Utc>>,
}

/// A friend as listed to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Friend {
    /// The friend's user record.
    pub user: User,
    /// Most recent shared call.
    pub last_call_at: DateTime<Utc>,
}

/// Filter and page of a friend listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FriendQuery {
    /// Case-insensitive substring of first name, last name or username; taken literally.
    pub search: Option<String>,
    /// Page size (1..=100).
    pub limit: u64,
    /// Rows to skip.
    pub offset: u64,
}

/// Quality figures one participant reported for a call. Packet counts are integers, read
/// from any integral JSON number (`2613` or `2613.0`, see [`crate::wire`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CallStatsInput {
    /// Seconds in the call.
    pub duration_seconds: Option<f64>,
    /// Audio bitrate.
    pub audio_bitrate_kbps: Option<f64>,
    /// Audio packets lost.
    #[serde(default, deserialize_with = "crate::wire::option_i64")]
    pub audio_packets_lost: Option<i64>,
    /// Audio packets sent.
    #[serde(default, deserialize_with = "crate::wire::option_i64")]
    pub audio_packets_sent: Option<i64>,
    /// Audio jitter.
    pub audio_jitter_ms: Option<f64>,
    /// Video bitrate.
    pub video_bitrate_kbps: Option<f64>,
    /// Video packets lost.
    #[serde(default, deserialize_with = "crate::wire::option_i64")]
    pub video_packets_lost: Option<i64>,
    /// Video packets sent.
    #[serde(default, deserialize_with = "crate::wire::option_i64")]
    pub video_packets_sent: Option<i64>,
    /// Video frame rate.
    pub video_frame_rate: Option<f64>,
    /// Video resolution such as `1280x720`.
    pub video_resolution: Option<String>,
    /// Round-trip time.
    pub rtt_ms: Option<f64>,
}

/// The inclusive range a numeric figure of a report must fall in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FigureBound {
    /// The field's wire name.
    pub name: &'static str,
    /// Whether the field is an integer (packet counts) rather than a number.
    pub integer: bool,
    /// Largest accepted value (the smallest is 0).
    pub maximum: f64,
}

impl CallStatsInput {
    /// Bounds of every numeric figure, in field order. The maxima are far above anything a
    /// real call produces (a call lives at most a day) and keep any sum of a call's reports
    /// far inside a 64-bit integer.
    pub const BOUNDS: [FigureBound; 10] = [
        FigureBound::number("duration_seconds", 604_800.0),
        FigureBound::number("audio_bitrate_kbps", 10_000.0),
        FigureBound::integer("audio_packets_lost", 1_000_000_000.0),
        FigureBound::integer("audio_packets_sent", 1_000_000_000.0),
        FigureBound::number("audio_jitter_ms", 60_000.0),
        FigureBound::number("video_bitrate_kbps", 100_000.0),
        FigureBound::integer("video_packets_lost", 1_000_000_000.0),
        FigureBound::integer("video_packets_sent", 1_000_000_000.0),
        FigureBound::number("video_frame_rate", 1_000.0),
        FigureBound::number("rtt_ms", 60_000.0),
    ];
    /// Longest accepted `video_resolution`.
    pub const MAX_RESOLUTION_LEN: usize = 32;

    /// The numeric figures as numbers, in the order of [`Self::BOUNDS`].
    #[allow(clippy::cast_precision_loss)]
    fn numeric_figures(&self) -> [Option<f64>; 10] {
        let int = |v: Option<i64>| v.map(|v| v as f64);
        [
            self.duration_seconds,
            self.audio_bitrate_kbps,
            int(self.audio_packets_lost),
            int(self.audio_packets_sent),
            self.audio_jitter_ms,
            self.video_bitrate_kbps,
            int(self.video_packets_lost),
            int(self.video_packets_sent),
            self.video_frame_rate,
            self.rtt_ms,
        ]
    }

    /// Checks every figure against [`Self::BOUNDS`] (finite, 0 to the maximum) and
    /// `video_resolution` (at most [`Self::MAX_RESOLUTION_LEN`] characters, no control
    /// characters); returns the message for the first bad field.
    pub fn validate(&self) -> Result<(), String> {
        for (bound, value) in Self::BOUNDS.iter().zip(self.numeric_figures()) {
            if value.is_some_and(|v| !(0.0..=bound.maximum).contains(&v)) {
                return Err(format!(
                    "{} must be between 0 and {}",
                    bound.name, bound.maximum
                ));
            }
        }
        if let Some(resolution) = &self.video_resolution {
            if resolution.chars().count() > Self::MAX_RESOLUTION_LEN {
                return Err(format!(
                    "video_resolution must be at most {} characters",
                    Self::MAX_RESOLUTION_LEN
                ));
            }
            if resolution.chars().any(char::is_control) {
                return Err("video_resolution must not contain control characters".to_owned());
            }
        }
        Ok(())
    }
}

impl FigureBound {
    const fn number(name: &'static str, maximum: f64) -> Self {
        Self {
            name,
            integer: false,
            maximum,
        }
    }

    const fn integer(name: &'static str, maximum: f64) -> Self {
        Self {
            name,
            integer: true,
            maximum,
        }
    }
}

/// A stored call-statistics row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    /// Row id.
    pub id: i64,
    /// Internal call id.
    pub call_id: CallId,
    /// Public call id.
    pub call_code: CallCode,
    /// Reporter.
    pub user_id: UserId,
    /// The figures.
    pub figures: CallStatsInput,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// Aggregate of every stats row of one call.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CallStatsSummary {
    /// Number of distinct people who reported.
    pub participant_count: u64,
    /// Mean of `duration_seconds` over rows that have it.
    pub avg_duration_seconds: Option<f64>,
    /// Mean audio bitrate.
    pub avg_audio_bitrate_kbps: Option<f64>,
    /// Sum of audio packets lost (0 with no rows).
    pub total_audio_packets_lost: i64,
    /// Mean audio jitter.
    pub avg_audio_jitter_ms: Option<f64>,
    /// Mean round-trip time.
    pub avg_rtt_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bare_json_integers() {
        assert_eq!(
            serde_json::to_string(&UserId::new(42)).ok().as_deref(),
            Some("42")
        );
        assert_eq!(
            serde_json::to_string(&CallId::new(-7)).ok().as_deref(),
            Some("-7")
        );
        assert_eq!(
            serde_json::to_string(&[UserId::new(i64::MAX)])
                .ok()
                .as_deref(),
            Some("[9223372036854775807]")
        );
        assert_eq!(
            serde_json::from_str::<UserId>("42").ok(),
            Some(UserId::new(42))
        );
        assert_eq!(
            serde_json::from_str::<CallId>("-7").ok(),
            Some(CallId::new(-7))
        );
        assert!(serde_json::from_str::<UserId>("\"42\"").is_err());
        assert!(serde_json::from_str::<CallId>("{\"0\":1}").is_err());
    }

    #[test]
    fn ids_display_the_bare_number() {
        assert_eq!(UserId::new(42).to_string(), "42");
        assert_eq!(CallId::new(-7).get(), -7);
    }

    #[test]
    fn call_codes_parse_exactly_the_well_formed() {
        for code in ["a", "abc-DEF_123", &"z".repeat(CallCode::MAX_STORED_LEN)] {
            assert_eq!(
                code.parse::<CallCode>().map(|c| c.to_string()).as_deref(),
                Ok(code)
            );
        }
        for bad in [
            "",
            " a",
            "a/b",
            "a\u{0}b",
            &"z".repeat(CallCode::MAX_STORED_LEN + 1),
        ] {
            assert_eq!(bad.parse::<CallCode>(), Err(MalformedCallCode), "{bad:?}");
        }
        assert!(CallCode::generate().as_str().parse::<CallCode>().is_ok());
    }
}
