//! Property tests of the initData parser and both signature schemes (HMAC with the bot
//! token, Ed25519 third-party): arbitrary input never panics and is refused, and whatever
//! Telegram could sign verifies and reads back as signed.
//!
//! CI runs proptest's default case count; `PROPTEST_CASES=100000 cargo test -p telcall-auth
//! --test initdata_properties` runs longer.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, SigningKey};
use proptest::prelude::*;
use secrecy::SecretString;
use telcall_auth::{
    InitDataError, InitDataVerifier, MAX_INIT_DATA_LEN, TelegramUser, ThirdPartyVerifier,
    sign_init_data,
};

const NOW: i64 = 1_800_000_000;
const BOT_ID: i64 = 7_342_037_359;

fn token() -> SecretString {
    SecretString::from("7342037359:AAHqE-property-test-token")
}

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn third_party() -> ThirdPartyVerifier {
    ThirdPartyVerifier::new(BOT_ID, signing_key().verifying_key().as_bytes())
        .unwrap_or_else(|_| unreachable!("a key made from a seed is valid"))
}

/// Signs `pairs` the Ed25519 way: `"<bot_id>:WebAppData\n"` + sorted `key=value` lines.
fn sign_third_party(pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<_> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let lines: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let message = format!("{BOT_ID}:WebAppData\n{}", lines.join("\n"));
    let signature = URL_SAFE_NO_PAD.encode(signing_key().sign(message.as_bytes()).to_bytes());
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.append_pair("signature", &signature);
    out.finish()
}

/// A Telegram user as a client would send it.
fn telegram_user() -> impl Strategy<Value = TelegramUser> {
    (
        any::<i64>(),
        proptest::option::of("\\PC{0,20}"),
        proptest::option::of("\\PC{0,20}"),
        proptest::option::of("[A-Za-z0-9_]{0,40}"),
        proptest::option::of("[a-z]{2}"),
        proptest::option::of(any::<bool>()),
        proptest::option::of("https://t\\.me/i/[a-z0-9/]{1,20}\\.jpg"),
    )
        .prop_map(
            |(id, first_name, last_name, username, language_code, is_premium, photo_url)| {
                TelegramUser {
                    id,
                    first_name,
                    last_name,
                    username,
                    language_code,
                    is_premium,
                    photo_url,
                    allows_write_to_pm: None,
                }
            },
        )
}

/// Extra pairs Telegram may add (any key but the ones with a meaning here).
fn extra_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::btree_map("[a-z_]{1,12}", "\\PC{0,30}", 0..4).prop_map(|m| {
        m.into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "hash" | "signature" | "user" | "auth_date"))
            .collect()
    })
}

/// The pairs of one sign-in: user, auth_date within the accepted age, extras.
fn signed_pairs() -> impl Strategy<Value = (TelegramUser, i64, Vec<(String, String)>)> {
    (telegram_user(), 0i64..86_400, extra_pairs()).prop_map(|(user, age, extras)| {
        let mut pairs = extras;
        pairs.push((
            "user".to_owned(),
            serde_json::to_string(&user).unwrap_or_default(),
        ));
        pairs.push(("auth_date".to_owned(), (NOW - age).to_string()));
        (user, NOW - age, pairs)
    })
}

fn as_refs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Cases for the properties that sign and verify (Ed25519 is slow in a debug build): 64,
/// unless `PROPTEST_CASES` says otherwise.
fn signing_config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        ..ProptestConfig::default()
    }
}

proptest! {
    /// Any string at all: both verifiers answer (never panic) and refuse it.
    #[test]
    fn arbitrary_text_is_refused(raw in "\\PC{0,300}") {
        prop_assert!(InitDataVerifier::new(&token()).verify_at(&raw, NOW).is_err());
        prop_assert!(third_party().verify_at(&raw, NOW).is_err());
    }

    /// Query-string-shaped noise, percent escapes and separators included.
    #[test]
    fn query_shaped_noise_is_refused(raw in "([a-z_]{0,6}=?[%0-9A-Fa-f&=+;a-z]{0,12}&?){0,12}") {
        let hmac = InitDataVerifier::new(&token()).verify_at(&raw, NOW);
        prop_assert!(hmac.is_err());
        prop_assert!(third_party().verify_at(&raw, NOW).is_err());
    }

    /// Arbitrary bytes made into text lossily (invalid UTF-8 becomes U+FFFD).
    #[test]
    fn arbitrary_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let raw = String::from_utf8_lossy(&bytes);
        prop_assert!(InitDataVerifier::new(&token()).verify_at(&raw, NOW).is_err());
        prop_assert!(third_party().verify_at(&raw, NOW).is_err());
    }

}

proptest! {
    #![proptest_config(signing_config())]

    /// HMAC scheme: whatever is signed with the bot token verifies, and the user and
    /// auth_date read back exactly as signed.
    #[test]
    fn hmac_signed_data_reads_back((user, auth_date, pairs) in signed_pairs()) {
        let raw = sign_init_data(&token(), &as_refs(&pairs));
        prop_assume!(raw.len() <= MAX_INIT_DATA_LEN);
        let verified = InitDataVerifier::new(&token()).verify_at(&raw, NOW);
        prop_assert!(verified.is_ok(), "refused {raw}: {verified:?}");
        let verified = verified.unwrap_or_else(|_| unreachable!());
        prop_assert_eq!(verified.user, user);
        prop_assert_eq!(verified.auth_date, auth_date);
        // Another bot's token never accepts it; the Ed25519 verifier needs a signature.
        let other = SecretString::from("1:other-token");
        prop_assert_eq!(
            InitDataVerifier::new(&other).verify_at(&raw, NOW).err(),
            Some(InitDataError::InvalidHash)
        );
        prop_assert_eq!(third_party().verify_at(&raw, NOW).err(), Some(InitDataError::MissingSignature));
    }

    /// Ed25519 scheme: whatever Telegram signs for this bot verifies and reads back; the
    /// same data for another bot id is refused.
    #[test]
    fn ed25519_signed_data_reads_back((user, auth_date, pairs) in signed_pairs()) {
        let raw = sign_third_party(&pairs);
        prop_assume!(raw.len() <= MAX_INIT_DATA_LEN);
        let verified = third_party().verify_at(&raw, NOW);
        prop_assert!(verified.is_ok(), "refused {raw}: {verified:?}");
        let verified = verified.unwrap_or_else(|_| unreachable!());
        prop_assert_eq!(verified.user, user);
        prop_assert_eq!(verified.auth_date, auth_date);
        let other_bot = ThirdPartyVerifier::new(BOT_ID + 1, signing_key().verifying_key().as_bytes())
            .unwrap_or_else(|_| unreachable!());
        prop_assert_eq!(other_bot.verify_at(&raw, NOW).err(), Some(InitDataError::InvalidSignature));
    }

    /// A signed initData with one pair dropped is refused by both schemes.
    #[test]
    fn dropping_a_signed_pair_is_refused((_, _, pairs) in signed_pairs(), pick in any::<prop::sample::Index>()) {
        let mut fewer = pairs.clone();
        fewer.remove(pick.index(pairs.len()));
        let hmac_hash = sign_init_data(&token(), &as_refs(&pairs));
        let hash = hmac_hash.rsplit_once("hash=").map(|(_, h)| h.to_owned()).unwrap_or_default();
        let mut forged = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &fewer {
            forged.append_pair(k, v);
        }
        forged.append_pair("hash", &hash);
        prop_assert!(InitDataVerifier::new(&token()).verify_at(&forged.finish(), NOW).is_err());

        let ed = sign_third_party(&pairs);
        let signature = ed.rsplit_once("signature=").map(|(_, s)| s.to_owned()).unwrap_or_default();
        let mut forged = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &fewer {
            forged.append_pair(k, v);
        }
        forged.append_pair("signature", &signature);
        prop_assert!(third_party().verify_at(&forged.finish(), NOW).is_err());
    }
}
