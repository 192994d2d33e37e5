//! initData verification against the shared test vectors, plus tamper, duplicate-key and size tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proptest::prelude::*;
use serde::Deserialize;
use telcall_auth::{
    InitDataError, InitDataVerifier, MAX_INIT_DATA_LEN, SecretString, ThirdPartyVerifier,
    sign_init_data,
};

const VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/initdata-vectors.json"
));

#[derive(Deserialize)]
struct Vectors {
    cases: Vec<HmacCase>,
    third_party_cases: Vec<Ed25519Case>,
}

#[derive(Deserialize)]
struct HmacCase {
    name: String,
    bot_token: String,
    init_data: String,
    now: i64,
    max_age_seconds: u64,
    expect: String,
    user_id: Option<i64>,
}

#[derive(Deserialize)]
struct Ed25519Case {
    name: String,
    bot_id: i64,
    public_key_hex: String,
    init_data: String,
    now: i64,
    max_age_seconds: u64,
    expect: String,
    user_id: Option<i64>,
}

fn vectors() -> Vectors {
    serde_json::from_str(VECTORS).unwrap()
}

fn outcome(result: &Result<telcall_auth::VerifiedInitData, InitDataError>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.kind().to_owned(),
    }
}

#[test]
fn hmac_vectors() {
    let v = vectors();
    assert!(v.cases.len() >= 20, "expected the full vector set");
    for case in &v.cases {
        let verifier = InitDataVerifier::new(&SecretString::from(case.bot_token.as_str()))
            .with_max_age(Duration::from_secs(case.max_age_seconds));
        let result = verifier.verify_at(&case.init_data, case.now);
        assert_eq!(outcome(&result), case.expect, "case {}", case.name);
        if let Ok(data) = result {
            assert_eq!(Some(data.user.id), case.user_id, "case {}", case.name);
            assert_eq!(data.fingerprint.len(), 16);
        }
    }
}

#[test]
fn hmac_vector_details() {
    let v = vectors();
    let case = v
        .cases
        .iter()
        .find(|c| c.name == "valid_with_chat_fields")
        .unwrap();
    let data = InitDataVerifier::new(&SecretString::from(case.bot_token.as_str()))
        .verify_at(&case.init_data, case.now)
        .unwrap();
    assert_eq!(data.start_param.as_deref(), Some("AbCdEfGh12345678"));
    assert_eq!(data.query_id.as_deref(), Some("AAHdF6IQAAAAAN0XohDhrOrc"));
    assert_eq!(data.chat_type.as_deref(), Some("sender"));
    assert_eq!(data.auth_date, 1_794_999_940);
    assert_eq!(data.user.username.as_deref(), Some("ada"));
    assert_eq!(data.user.allows_write_to_pm, Some(true));

    let case = v
        .cases
        .iter()
        .find(|c| c.name == "valid_unicode_names")
        .unwrap();
    let data = InitDataVerifier::new(&SecretString::from(case.bot_token.as_str()))
        .verify_at(&case.init_data, case.now)
        .unwrap();
    assert_eq!(data.user.last_name.as_deref(), Some("Петров 🚀"));
}

#[test]
fn third_party_vectors() {
    let v = vectors();
    assert!(!v.third_party_cases.is_empty());
    for case in &v.third_party_cases {
        let verifier = ThirdPartyVerifier::from_hex_key(case.bot_id, &case.public_key_hex)
            .unwrap()
            .with_max_age(Duration::from_secs(case.max_age_seconds));
        let result = verifier.verify_at(&case.init_data, case.now);
        assert_eq!(outcome(&result), case.expect, "case {}", case.name);
        if let Ok(data) = result {
            assert_eq!(Some(data.user.id), case.user_id, "case {}", case.name);
        }
    }
}

#[test]
fn third_party_wrong_bot_id_or_key() {
    let v = vectors();
    let case = v
        .third_party_cases
        .iter()
        .find(|c| c.expect == "ok")
        .unwrap();
    let other_bot =
        ThirdPartyVerifier::from_hex_key(case.bot_id + 1, &case.public_key_hex).unwrap();
    assert_eq!(
        other_bot.verify_at(&case.init_data, case.now),
        Err(InitDataError::InvalidSignature)
    );
    let production = ThirdPartyVerifier::production(case.bot_id).unwrap();
    assert_eq!(
        production.verify_at(&case.init_data, case.now),
        Err(InitDataError::InvalidSignature)
    );
}

fn valid_case() -> (InitDataVerifier, String, i64) {
    let v = vectors();
    let case = v.cases.into_iter().find(|c| c.name == "valid").unwrap();
    let verifier = InitDataVerifier::new(&SecretString::from(case.bot_token.as_str()));
    (verifier, case.init_data, case.now)
}

#[test]
fn duplicate_keys_are_refused() {
    let (verifier, raw, now) = valid_case();
    // Appending a second copy of a signed field, of `hash`, or of `user` with other content.
    for extra in [
        "&auth_date=1794999940",
        "&hash=bff4be1c2f560d4f41aad32bb49632781d077e0703c0211c478846a7b05e3201",
        "&user=%7B%22id%22%3A1%7D",
    ] {
        let err = verifier
            .verify_at(&format!("{raw}{extra}"), now)
            .unwrap_err();
        assert!(
            matches!(err, InitDataError::DuplicateKey { .. }),
            "{extra}: {err:?}"
        );
        assert_eq!(err.detail(), "Invalid initData hash");
    }
    // The same key spelled with percent-encoding is the same key.
    let err = verifier
        .verify_at(&format!("{raw}&auth%5Fdate=1"), now)
        .unwrap_err();
    assert!(matches!(err, InitDataError::DuplicateKey { .. }), "{err:?}");
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let (verifier, raw, now) = valid_case();
    let padded = format!("{raw}&pad={}", "a".repeat(MAX_INIT_DATA_LEN));
    let err = verifier.verify_at(&padded, now).unwrap_err();
    assert_eq!(
        err,
        InitDataError::TooLarge {
            len: padded.len(),
            max: MAX_INIT_DATA_LEN
        }
    );
    // Even input without a hash is refused for its size first.
    let err = verifier
        .verify_at(&"x".repeat(MAX_INIT_DATA_LEN + 1), now)
        .unwrap_err();
    assert!(matches!(err, InitDataError::TooLarge { .. }));

    // Exactly at the limit is parsed (and here properly signed, so accepted).
    let token = SecretString::from("1:limit");
    let user = r#"{"id":5}"#;
    let base = sign_init_data(&token, &[("user", user), ("auth_date", "100"), ("pad", "")]);
    let fill = "b".repeat(MAX_INIT_DATA_LEN - base.len());
    let at_limit = sign_init_data(
        &token,
        &[("user", user), ("auth_date", "100"), ("pad", &fill)],
    );
    assert_eq!(at_limit.len(), MAX_INIT_DATA_LEN);
    assert!(
        InitDataVerifier::new(&token)
            .verify_at(&at_limit, 100)
            .is_ok()
    );
}

/// Decoded pairs, to tell a real change from an equivalent spelling (`%7B` vs `%7b`).
fn decoded(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

proptest! {
    // 2048 cases unless PROPTEST_CASES says otherwise.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2048),
        ..ProptestConfig::default()
    })]

    /// Changing any single byte of a valid initData makes it invalid. The one exception is a
    /// change that decodes to the very same signed data (the case of a hex digit in a percent
    /// escape, `%7B` → `%7b`); then the result is the same verified data, so nothing was forged.
    #[test]
    fn any_single_byte_change_is_rejected(index in any::<prop::sample::Index>(), byte in 0u8..0x80) {
        let (verifier, raw, now) = valid_case();
        let original = verifier.verify_at(&raw, now).unwrap();
        let mut bytes = raw.clone().into_bytes();
        let i = index.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let mutated = String::from_utf8(bytes).unwrap();
        match verifier.verify_at(&mutated, now) {
            Err(_) => {}
            Ok(data) => {
                prop_assert_eq!(decoded(&mutated), decoded(&raw), "accepted a real change: {}", mutated);
                prop_assert_eq!(data, original);
            }
        }
    }
}

#[test]
fn every_single_byte_change_outside_percent_escapes_is_rejected() {
    // Exhaustive companion of the proptest: every position, every other ASCII byte.
    let (verifier, raw, now) = valid_case();
    let bytes = raw.as_bytes();
    let mut accepted_equivalents = 0;
    for i in 0..bytes.len() {
        let in_escape = (i >= 1 && bytes[i - 1] == b'%') || (i >= 2 && bytes[i - 2] == b'%');
        for b in 0u8..0x80 {
            if b == bytes[i] {
                continue;
            }
            let mut m = bytes.to_vec();
            m[i] = b;
            let m = String::from_utf8(m).unwrap();
            if verifier.verify_at(&m, now).is_ok() {
                assert!(in_escape, "accepted change at {i} to {b:#x}: {m}");
                assert_eq!(decoded(&m), decoded(&raw));
                accepted_equivalents += 1;
            }
        }
    }
    // Only the case flips of hex letters inside escapes (`%7B` → `%7b`) survive.
    assert!(accepted_equivalents > 0);
}
