//! Telegram Mini App `initData` verification: the bot-token HMAC scheme and the Ed25519 third-party scheme.
//!
//! Both schemes share one parser ([`MAX_INIT_DATA_LEN`] and duplicate keys are checked before any
//! cryptography), one freshness rule ([`DEFAULT_MAX_AGE`], [`MAX_FUTURE_SKEW_SECS`]) and one result
//! type ([`VerifiedInitData`]). The string that is checked is always the raw string the client sent;
//! nothing is re-serialised.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::unix_now;

type HmacSha256 = Hmac<Sha256>;

/// Largest raw initData accepted, in bytes. Longer input is refused before it is parsed.
///
/// Real initData is well under 2 KiB (a user object, a few ids, a 64-character hash).
pub const MAX_INIT_DATA_LEN: usize = 8 * 1024;

/// Default maximum age of `auth_date`: 24 hours.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// How far in the future `auth_date` may lie (clock skew between Telegram and this host), in
/// seconds. Anything later is rejected as [`InitDataError::Expired`].
pub const MAX_FUTURE_SKEW_SECS: i64 = 5 * 60;

/// Key of the first HMAC step (`secret = HMAC_SHA256(key = "WebAppData", msg = bot_token)`).
const WEB_APP_DATA: &[u8] = b"WebAppData";

/// Telegram's production Ed25519 public key for third-party initData validation (hex).
pub const TELEGRAM_PRODUCTION_PUBLIC_KEY_HEX: &str =
    "e7bf03a2fa4602af4580703d88dda5bb59f32ed8b02a56c187fe7d34caed242d";

/// Telegram's test-environment Ed25519 public key for third-party initData validation (hex).
pub const TELEGRAM_TEST_PUBLIC_KEY_HEX: &str =
    "40055058a4ee38156a06562e52eece92a771bcd8346a8c4615cb7376eddf72ec";

/// Why an initData string was refused.
///
/// Every variant has the CONTRACT's `detail` text of its `POST /auth/telegram` answer
/// ([`detail`](Self::detail)); which HTTP status goes with it is the server's business.
/// Input that is not even well-formed ([`TooLarge`](Self::TooLarge),
/// [`DuplicateKey`](Self::DuplicateKey), [`InvalidAuthDate`](Self::InvalidAuthDate)) cannot be
/// authenticated and is answered like a forged hash ("Invalid initData hash"). The `Display`
/// text of those variants is more precise and meant for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InitDataError {
    /// The raw string is longer than [`MAX_INIT_DATA_LEN`].
    #[error("initData is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Length of the refused input in bytes.
        len: usize,
        /// The limit, [`MAX_INIT_DATA_LEN`].
        max: usize,
    },
    /// A key occurs more than once.
    #[error("duplicate key {key:?} in initData")]
    DuplicateKey {
        /// The repeated key (percent-decoded, at most 64 characters kept).
        key: String,
    },
    /// No `hash` field, or an empty one.
    #[error("Missing hash in initData")]
    MissingHash,
    /// The HMAC does not match (forged, tampered, signed for another bot).
    #[error("Invalid initData hash")]
    InvalidHash,
    /// Third-party scheme: no `signature` field, or an empty one.
    #[error("Missing signature in initData")]
    MissingSignature,
    /// Third-party scheme: the Ed25519 signature is malformed or does not verify.
    #[error("Invalid initData signature")]
    InvalidSignature,
    /// The data is authentic but `auth_date` is missing or not a unix timestamp.
    #[error("auth_date is missing or not a unix timestamp")]
    InvalidAuthDate,
    /// `auth_date` is older than the maximum age, or too far in the future.
    #[error("initData is too old")]
    Expired,
    /// The data is authentic but carries no `user` field.
    #[error("Missing user payload in initData")]
    MissingUser,
    /// The `user` field is not a JSON object with an integer `id`.
    #[error("Invalid user payload")]
    InvalidUser,
}

impl InitDataError {
    /// The exact CONTRACT `detail` text for this error.
    pub fn detail(&self) -> &'static str {
        match self {
            Self::MissingHash => "Missing hash in initData",
            Self::TooLarge { .. }
            | Self::DuplicateKey { .. }
            | Self::InvalidHash
            | Self::InvalidAuthDate => "Invalid initData hash",
            Self::MissingSignature => "Missing signature in initData",
            Self::InvalidSignature => "Invalid initData signature",
            Self::Expired => "initData is too old",
            Self::MissingUser => "Missing user payload in initData",
            Self::InvalidUser => "Invalid user payload",
        }
    }

    /// A stable snake_case name (`missing_hash`, `invalid_hash`, `expired`, …), for metrics and
    /// test vectors.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::DuplicateKey { .. } => "duplicate_key",
            Self::MissingHash => "missing_hash",
            Self::InvalidHash => "invalid_hash",
            Self::MissingSignature => "missing_signature",
            Self::InvalidSignature => "invalid_signature",
            Self::InvalidAuthDate => "invalid_auth_date",
            Self::Expired => "expired",
            Self::MissingUser => "missing_user",
            Self::InvalidUser => "invalid_user",
        }
    }
}

/// The Telegram user from the `user` field of initData. Unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelegramUser {
    /// Telegram user id (may exceed 32 bits).
    pub id: i64,
    /// First name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default)]
    pub last_name: Option<String>,
    /// Username, without `@`. Not validated here.
    #[serde(default)]
    pub username: Option<String>,
    /// IETF language tag of the user's client.
    #[serde(default)]
    pub language_code: Option<String>,
    /// Whether the user has Telegram Premium.
    #[serde(default)]
    pub is_premium: Option<bool>,
    /// URL of the profile photo (`.jpeg` or `.svg`), when the privacy settings allow it.
    #[serde(default)]
    pub photo_url: Option<String>,
    /// Whether the user allowed the bot to message them.
    #[serde(default)]
    pub allows_write_to_pm: Option<bool>,
}

/// initData that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedInitData {
    /// The signed-in user.
    pub user: TelegramUser,
    /// `auth_date`, unix seconds.
    pub auth_date: i64,
    /// `query_id`, when present.
    pub query_id: Option<String>,
    /// `start_param` (the `startapp` link parameter, e.g. a call id), when present.
    pub start_param: Option<String>,
    /// `chat_type`, when present.
    pub chat_type: Option<String>,
    /// `chat_instance`, when present.
    pub chat_instance: Option<String>,
    /// Stable, non-secret fingerprint of this initData: the first 16 hex characters of
    /// SHA-256 of its `hash` (HMAC scheme) or `signature` (Ed25519 scheme). Fits the JWT `fp`
    /// claim and lets logs correlate sign-ins without storing the initData.
    pub fingerprint: String,
}

/// Verifies initData signed with the bot token (the HMAC scheme Mini Apps use by default).
///
/// Holds the derived HMAC key, never the bot token; `Debug` prints neither.
#[derive(Clone)]
pub struct InitDataVerifier {
    /// `HMAC_SHA256` keyed with `HMAC_SHA256("WebAppData", bot_token)`, cloned per check.
    mac: HmacSha256,
    max_age: Duration,
}

impl fmt::Debug for InitDataVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitDataVerifier")
            .field("bot_token", &"[REDACTED]")
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl InitDataVerifier {
    /// A verifier for `bot_token` with the default maximum age ([`DEFAULT_MAX_AGE`]).
    pub fn new(bot_token: &SecretString) -> Self {
        Self {
            mac: keyed_mac(bot_token),
            max_age: DEFAULT_MAX_AGE,
        }
    }

    /// Sets the maximum age of `auth_date`.
    #[must_use]
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The maximum age of `auth_date`.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// Verifies `raw` against the system clock. See [`verify_at`](Self::verify_at).
    pub fn verify(&self, raw: &str) -> Result<VerifiedInitData, InitDataError> {
        self.verify_at(raw, unix_now())
    }

    /// Verifies `raw` (the query string exactly as the Mini App sent it) at unix time `now`.
    ///
    /// Order of checks: size and duplicate keys, then `hash` present, then the HMAC
    /// (constant-time), then `auth_date` freshness, then the `user` payload.
    pub fn verify_at(&self, raw: &str, now: i64) -> Result<VerifiedInitData, InitDataError> {
        let fields = Fields::parse(raw)?;
        let hash = fields.non_empty("hash").ok_or(InitDataError::MissingHash)?;

        let mut mac = self.mac.clone();
        fields.feed_data_check_string(&["hash"], |chunk| mac.update(chunk));
        let expected = hex::encode(mac.finalize().into_bytes());
        // Lower-case hex only, as Telegram sends it; lengths are public.
        if !bool::from(expected.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(InitDataError::InvalidHash);
        }

        let fingerprint = fingerprint(hash);
        fields.into_verified(fingerprint, now, self.max_age)
    }
}

/// Verifies initData with Telegram's Ed25519 signature (the "third-party" scheme), which needs
/// only the bot id and Telegram's public key, not the bot token.
#[derive(Clone, Debug)]
pub struct ThirdPartyVerifier {
    bot_id: i64,
    public_key: VerifyingKey,
    max_age: Duration,
}

/// The Ed25519 public key given to [`ThirdPartyVerifier::new`] is not a valid key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Ed25519 public key")]
pub struct InvalidPublicKey;

impl ThirdPartyVerifier {
    /// A verifier for `bot_id` with a caller-supplied 32-byte Ed25519 public key.
    pub fn new(bot_id: i64, public_key: &[u8; 32]) -> Result<Self, InvalidPublicKey> {
        let public_key = VerifyingKey::from_bytes(public_key).map_err(|_| InvalidPublicKey)?;
        Ok(Self {
            bot_id,
            public_key,
            max_age: DEFAULT_MAX_AGE,
        })
    }

    /// A verifier for `bot_id` with a public key given as 64 hex characters.
    pub fn from_hex_key(bot_id: i64, public_key_hex: &str) -> Result<Self, InvalidPublicKey> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(public_key_hex, &mut key).map_err(|_| InvalidPublicKey)?;
        Self::new(bot_id, &key)
    }

    /// A verifier for `bot_id` with Telegram's production key
    /// ([`TELEGRAM_PRODUCTION_PUBLIC_KEY_HEX`]).
    pub fn production(bot_id: i64) -> Result<Self, InvalidPublicKey> {
        Self::from_hex_key(bot_id, TELEGRAM_PRODUCTION_PUBLIC_KEY_HEX)
    }

    /// A verifier for `bot_id` with Telegram's test-environment key
    /// ([`TELEGRAM_TEST_PUBLIC_KEY_HEX`]).
    pub fn test_environment(bot_id: i64) -> Result<Self, InvalidPublicKey> {
        Self::from_hex_key(bot_id, TELEGRAM_TEST_PUBLIC_KEY_HEX)
    }

    /// Sets the maximum age of `auth_date` (default [`DEFAULT_MAX_AGE`]).
    #[must_use]
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Verifies `raw` against the system clock. See [`verify_at`](Self::verify_at).
    pub fn verify(&self, raw: &str) -> Result<VerifiedInitData, InitDataError> {
        self.verify_at(raw, unix_now())
    }

    /// Verifies `raw` at unix time `now`: the base64url `signature` must be an Ed25519 signature
    /// over `"<bot_id>:WebAppData\n"` followed by the sorted pairs without `hash` and
    /// `signature`, joined by `\n`. `hash`, if present, is ignored.
    pub fn verify_at(&self, raw: &str, now: i64) -> Result<VerifiedInitData, InitDataError> {
        let fields = Fields::parse(raw)?;
        let signature = fields
            .non_empty("signature")
            .ok_or(InitDataError::MissingSignature)?;
        let mut bytes = [0u8; 64];
        match URL_SAFE_NO_PAD.decode_slice(signature, &mut bytes) {
            Ok(64) => {}
            _ => return Err(InitDataError::InvalidSignature),
        }
        let mut message = format!("{}:WebAppData\n", self.bot_id).into_bytes();
        fields.feed_data_check_string(&["hash", "signature"], |chunk| {
            message.extend_from_slice(chunk)
        });
        self.public_key
            .verify_strict(&message, &Signature::from_bytes(&bytes))
            .map_err(|_| InitDataError::InvalidSignature)?;

        let fingerprint = fingerprint(signature);
        fields.into_verified(fingerprint, now, self.max_age)
    }
}

/// Builds a correctly signed initData query string for `bot_token` from `pairs` (without
/// `hash`), the way Telegram does. For tests and local tools; production initData always
/// comes from Telegram.
pub fn sign_init_data(bot_token: &SecretString, pairs: &[(&str, &str)]) -> String {
    let mut sorted: Vec<_> = pairs.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut mac = keyed_mac(bot_token);
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            mac.update(b"\n");
        }
        mac.update(k.as_bytes());
        mac.update(b"=");
        mac.update(v.as_bytes());
    }
    let hash = hex::encode(mac.finalize().into_bytes());
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.append_pair("hash", &hash);
    out.finish()
}

fn keyed_mac(bot_token: &SecretString) -> HmacSha256 {
    let mut outer = HmacSha256::new_from_slice(WEB_APP_DATA)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    outer.update(bot_token.expose_secret().as_bytes());
    let secret = outer.finalize().into_bytes();
    HmacSha256::new_from_slice(&secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
}

/// The decoded key/value pairs of one initData string, sorted by key, keys unique.
struct Fields(BTreeMap<String, String>);

impl Fields {
    /// Size check, then percent-decoding (`form_urlencoded`, lenient like Telegram's own
    /// examples), refusing duplicate keys.
    fn parse(raw: &str) -> Result<Self, InitDataError> {
        if raw.len() > MAX_INIT_DATA_LEN {
            return Err(InitDataError::TooLarge {
                len: raw.len(),
                max: MAX_INIT_DATA_LEN,
            });
        }
        let mut map = BTreeMap::new();
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            let key = key.into_owned();
            if map.contains_key(&key) {
                return Err(InitDataError::DuplicateKey {
                    key: key.chars().take(64).collect(),
                });
            }
            map.insert(key, value.into_owned());
        }
        Ok(Self(map))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// Feeds the data-check-string (`key=value` of every pair not in `exclude`, sorted by key,
    /// joined by `\n`) to `sink` without allocating it.
    fn feed_data_check_string(&self, exclude: &[&str], mut sink: impl FnMut(&[u8])) {
        let mut first = true;
        for (key, value) in self
            .0
            .iter()
            .filter(|(k, _)| !exclude.contains(&k.as_str()))
        {
            if !first {
                sink(b"\n");
            }
            first = false;
            sink(key.as_bytes());
            sink(b"=");
            sink(value.as_bytes());
        }
    }

    /// Checks freshness and the user payload of authenticated fields.
    fn into_verified(
        mut self,
        fingerprint: String,
        now: i64,
        max_age: Duration,
    ) -> Result<VerifiedInitData, InitDataError> {
        let auth_date = self
            .get("auth_date")
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or(InitDataError::InvalidAuthDate)?;
        let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        let age = now.saturating_sub(auth_date);
        if age > max_age || age < -MAX_FUTURE_SKEW_SECS {
            return Err(InitDataError::Expired);
        }
        let user_json = self.0.remove("user").ok_or(InitDataError::MissingUser)?;
        let user: TelegramUser =
            serde_json::from_str(&user_json).map_err(|_| InitDataError::InvalidUser)?;
        Ok(VerifiedInitData {
            user,
            auth_date,
            query_id: self.0.remove("query_id"),
            start_param: self.0.remove("start_param"),
            chat_type: self.0.remove("chat_type"),
            chat_instance: self.0.remove("chat_instance"),
            fingerprint,
        })
    }
}

fn fingerprint(source: &str) -> String {
    let digest = Sha256::digest(source.as_bytes());
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "7342181092:AAFq-test-only-vectors-not-a-real-token";
    const NOW: i64 = 1_795_000_000;

    fn token() -> SecretString {
        SecretString::from(TOKEN)
    }

    fn user_json() -> &'static str {
        r#"{"id":7,"first_name":"Ann","is_premium":true,"unknown_field":[1,2]}"#
    }

    #[test]
    fn signed_data_round_trips() {
        let raw = sign_init_data(
            &token(),
            &[
                ("user", user_json()),
                ("auth_date", "1794999999"),
                ("query_id", "Q"),
                ("start_param", "call123"),
            ],
        );
        let v = InitDataVerifier::new(&token())
            .verify_at(&raw, NOW)
            .unwrap();
        assert_eq!(v.user.id, 7);
        assert_eq!(v.user.first_name.as_deref(), Some("Ann"));
        assert_eq!(v.user.is_premium, Some(true));
        assert_eq!(v.auth_date, 1_794_999_999);
        assert_eq!(v.query_id.as_deref(), Some("Q"));
        assert_eq!(v.start_param.as_deref(), Some("call123"));
        assert_eq!(v.fingerprint.len(), 16);
    }

    #[test]
    fn signature_field_is_part_of_the_hmac_data_check_string() {
        // Per CONTRACT, only `hash` is excluded from the HMAC data-check-string.
        let pairs = [
            ("user", user_json()),
            ("auth_date", "1794999999"),
            ("signature", "c2ln"),
        ];
        let raw = sign_init_data(&token(), &pairs);
        let verifier = InitDataVerifier::new(&token());
        assert!(verifier.verify_at(&raw, NOW).is_ok());
        // Changing or dropping the signature field breaks the HMAC.
        let changed = raw.replace("signature=c2ln", "signature=c2lo");
        assert_eq!(
            verifier.verify_at(&changed, NOW),
            Err(InitDataError::InvalidHash)
        );
        let dropped = raw.replace("signature=c2ln&", "");
        assert_ne!(dropped, raw);
        assert_eq!(
            verifier.verify_at(&dropped, NOW),
            Err(InitDataError::InvalidHash)
        );
    }

    #[test]
    fn future_skew_boundary() {
        let v = InitDataVerifier::new(&token());
        let at = |t: i64| {
            sign_init_data(
                &token(),
                &[("user", user_json()), ("auth_date", &t.to_string())],
            )
        };
        assert!(v.verify_at(&at(NOW + MAX_FUTURE_SKEW_SECS), NOW).is_ok());
        assert_eq!(
            v.verify_at(&at(NOW + MAX_FUTURE_SKEW_SECS + 1), NOW),
            Err(InitDataError::Expired)
        );
    }

    #[test]
    fn custom_max_age() {
        let v = InitDataVerifier::new(&token()).with_max_age(Duration::from_secs(60));
        let raw = sign_init_data(
            &token(),
            &[("user", user_json()), ("auth_date", "1794999900")],
        );
        assert_eq!(v.verify_at(&raw, NOW), Err(InitDataError::Expired));
        assert!(v.verify_at(&raw, 1_794_999_960).is_ok());
    }

    #[test]
    fn authentic_but_bad_auth_date() {
        let v = InitDataVerifier::new(&token());
        let missing = sign_init_data(&token(), &[("user", user_json())]);
        assert_eq!(
            v.verify_at(&missing, NOW),
            Err(InitDataError::InvalidAuthDate)
        );
        let garbage = sign_init_data(&token(), &[("user", user_json()), ("auth_date", "soon")]);
        assert_eq!(
            v.verify_at(&garbage, NOW),
            Err(InitDataError::InvalidAuthDate)
        );
    }

    #[test]
    fn user_id_must_be_an_integer() {
        let v = InitDataVerifier::new(&token());
        for user in [
            r#"{"id":"7"}"#,
            r#"{"id":7.5}"#,
            "[]",
            "null",
            r#"{"id":null}"#,
        ] {
            let raw = sign_init_data(&token(), &[("user", user), ("auth_date", "1794999999")]);
            assert_eq!(
                v.verify_at(&raw, NOW),
                Err(InitDataError::InvalidUser),
                "{user}"
            );
        }
    }

    #[test]
    fn error_details_match_contract() {
        use InitDataError::*;
        let cases = [
            (MissingHash, "Missing hash in initData"),
            (InvalidHash, "Invalid initData hash"),
            (Expired, "initData is too old"),
            (MissingUser, "Missing user payload in initData"),
            (InvalidUser, "Invalid user payload"),
            (
                TooLarge {
                    len: 9000,
                    max: 8192,
                },
                "Invalid initData hash",
            ),
            (DuplicateKey { key: "a".into() }, "Invalid initData hash"),
            (InvalidAuthDate, "Invalid initData hash"),
        ];
        for (err, detail) in cases {
            assert_eq!(err.detail(), detail, "{err:?}");
        }
    }

    #[test]
    fn debug_redacts_the_bot_token() {
        let v = InitDataVerifier::new(&token());
        let dbg = format!("{v:?}");
        assert!(!dbg.contains("AAFq"), "{dbg}");
        assert!(dbg.contains("REDACTED"));
    }

    #[test]
    fn production_and_test_keys_are_valid() {
        assert!(ThirdPartyVerifier::production(1).is_ok());
        assert!(ThirdPartyVerifier::test_environment(1).is_ok());
        assert!(matches!(
            ThirdPartyVerifier::from_hex_key(1, "zz"),
            Err(InvalidPublicKey)
        ));
    }
}
