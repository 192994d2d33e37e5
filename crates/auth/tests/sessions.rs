//! Session tokens and WebSocket tickets: expiry, forgery, issuer/audience, algorithm pinning, token-type confusion, replay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Sha256, Sha512};
use telcall_auth::{
    ConfigError, CredentialKind, InvalidReason, LEEWAY_SECS, MemoryRevocationStore,
    MemoryTicketStore, SecretString, SessionConfig, Sessions, TicketStore, TokenError,
};

const SECRET: &str = "test-secret-key-that-is-32-bytes";
const NOW: i64 = 1_800_000_000;

fn sessions() -> Sessions {
    Sessions::new(&SecretString::from(SECRET), Duration::from_secs(3600)).unwrap()
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// Valid claims for a session of user 1 at `NOW`, to be signed by hand.
fn session_claims() -> serde_json::Value {
    json!({
        "sub": "1", "iat": NOW, "exp": NOW + 3600, "iss": "telcall", "aud": "telcall",
        "jti": "abc", "typ": "session"
    })
}

fn hs256(header: &serde_json::Value, claims: &serde_json::Value, key: &[u8]) -> String {
    let signing_input = format!("{}.{}", b64(header), b64(claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn is_invalid(r: Result<impl std::fmt::Debug, TokenError>, reason: InvalidReason) {
    match r {
        Err(TokenError::Invalid(got)) => assert_eq!(got, reason),
        other => panic!("expected Invalid({reason:?}), got {other:?}"),
    }
}

#[test]
fn hand_signed_hs256_token_is_accepted() {
    // Sanity check for the hand-crafting helpers used below.
    let token = hs256(
        &json!({"alg":"HS256","typ":"JWT"}),
        &session_claims(),
        SECRET.as_bytes(),
    );
    assert_eq!(
        sessions().verify_session_at(&token, NOW).unwrap().user_id,
        1
    );
}

#[test]
fn expired_session() {
    let s = sessions();
    let t = s.issue_session_at(1, None, NOW).unwrap().token;
    let err = s
        .verify_session_at(&t, NOW + 3600 + LEEWAY_SECS + 1)
        .unwrap_err();
    assert!(matches!(err, TokenError::Expired));
    assert_eq!(err.detail(), "Token has expired");
    assert!(!err.is_server_error());
}

#[test]
fn forged_signature() {
    let s = sessions();
    let t = s.issue_session_at(1, None, NOW).unwrap().token;
    // Signed with another key.
    let other = Sessions::new(
        &SecretString::from("another-secret-key-of-32-bytes!!"),
        Duration::from_secs(3600),
    )
    .unwrap();
    let forged = other.issue_session_at(1, None, NOW).unwrap().token;
    is_invalid(s.verify_session_at(&forged, NOW), InvalidReason::Signature);
    // Payload swapped under the original signature.
    let parts: Vec<&str> = t.split('.').collect();
    let mut claims = session_claims();
    claims["sub"] = json!("2");
    let tampered = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    let err = s.verify_session_at(&tampered, NOW).unwrap_err();
    assert!(
        matches!(err, TokenError::Invalid(InvalidReason::Signature)),
        "{err:?}"
    );
    assert_eq!(err.detail(), "Invalid token");
    // Garbage.
    is_invalid(
        s.verify_session_at("not.a.jwt", NOW),
        InvalidReason::Malformed,
    );
    is_invalid(s.verify_session_at("", NOW), InvalidReason::Malformed);
}

#[test]
fn wrong_audience_and_issuer() {
    let s = sessions();
    let mut claims = session_claims();
    claims["aud"] = json!("someone-else");
    let header = json!({"alg":"HS256","typ":"JWT"});
    is_invalid(
        s.verify_session_at(&hs256(&header, &claims, SECRET.as_bytes()), NOW),
        InvalidReason::Audience,
    );

    let mut claims = session_claims();
    claims["iss"] = json!("evil");
    is_invalid(
        s.verify_session_at(&hs256(&header, &claims, SECRET.as_bytes()), NOW),
        InvalidReason::Issuer,
    );

    // Same key, different configured issuer/audience.
    let other = Sessions::with_config(
        &SecretString::from(SECRET),
        SessionConfig::default().issuer("other").audience("other"),
    )
    .unwrap();
    let t = other.issue_session_at(1, None, NOW).unwrap().token;
    assert!(matches!(
        s.verify_session_at(&t, NOW),
        Err(TokenError::Invalid(
            InvalidReason::Issuer | InvalidReason::Audience
        ))
    ));

    // Missing aud / iss / exp / sub.
    for claim in ["aud", "iss", "exp", "sub"] {
        let mut claims = session_claims();
        claims.as_object_mut().unwrap().remove(claim);
        let r = s.verify_session_at(&hs256(&header, &claims, SECRET.as_bytes()), NOW);
        assert!(matches!(r, Err(TokenError::Invalid(_))), "{claim}: {r:?}");
    }
}

#[test]
fn alg_none_is_rejected() {
    let s = sessions();
    for alg in ["none", "None", "NONE"] {
        let header = b64(&json!({"alg": alg, "typ": "JWT"}));
        let claims = b64(&session_claims());
        for token in [format!("{header}.{claims}."), format!("{header}.{claims}")] {
            let r = s.verify_session_at(&token, NOW);
            assert!(matches!(r, Err(TokenError::Invalid(_))), "{token}: {r:?}");
        }
    }
}

#[test]
fn other_algorithms_with_the_same_key_are_rejected() {
    let s = sessions();
    let signing_input = format!(
        "{}.{}",
        b64(&json!({"alg":"HS512","typ":"JWT"})),
        b64(&session_claims())
    );
    let mut mac = Hmac::<Sha512>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let hs512 = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    is_invalid(s.verify_session_at(&hs512, NOW), InvalidReason::Algorithm);

    // HS384/RS256/ES256/EdDSA headers over an HS256 signature (key-confusion attempts).
    for alg in ["HS384", "RS256", "ES256", "PS256", "EdDSA"] {
        let token = hs256(
            &json!({"alg": alg, "typ":"JWT"}),
            &session_claims(),
            SECRET.as_bytes(),
        );
        is_invalid(s.verify_session_at(&token, NOW), InvalidReason::Algorithm);
    }
}

#[test]
fn weak_secret_refused() {
    let err = Sessions::new(&SecretString::from("too-short"), Duration::from_secs(60)).unwrap_err();
    assert_eq!(err, ConfigError::WeakSecret { len: 9, min: 32 });
    assert!(err.to_string().contains("SECRET_KEY"));
    // Allowed explicitly (development mode).
    let dev = Sessions::with_config(
        &SecretString::from("too-short"),
        SessionConfig::default().allow_weak_secret(true),
    )
    .unwrap();
    let t = dev.issue_session(3, None).unwrap();
    assert_eq!(dev.verify_session(&t.token).unwrap().user_id, 3);
}

#[tokio::test]
async fn ticket_used_twice() {
    let s = sessions();
    let store = MemoryTicketStore::new();
    let ticket = s.issue_ws_ticket(9).unwrap();
    assert!(ticket.expires_in_secs <= 60);
    let claims = s.verify_ws_ticket(&ticket.token, &store).await.unwrap();
    assert_eq!(claims.user_id, 9);
    is_invalid(
        s.verify_ws_ticket(&ticket.token, &store).await,
        InvalidReason::AlreadyUsed,
    );
    // Through the handshake helper too.
    is_invalid(
        s.verify_ws_credential(&ticket.token, &store).await,
        InvalidReason::AlreadyUsed,
    );
}

#[tokio::test]
async fn tickets_shared_through_a_trait_object_across_tasks() {
    let s = Arc::new(sessions());
    let store: Arc<dyn TicketStore> = Arc::new(MemoryTicketStore::new());
    let token = s.issue_ws_ticket(9).unwrap().token;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (s, store, token) = (s.clone(), store.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            s.verify_ws_ticket(&token, store.as_ref()).await.is_ok()
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += usize::from(t.await.unwrap());
    }
    assert_eq!(accepted, 1);
}

#[tokio::test]
async fn ticket_and_session_are_not_interchangeable() {
    let s = sessions();
    let store = MemoryTicketStore::new();
    let ticket = s.issue_ws_ticket(5).unwrap().token;
    let session = s.issue_session(5, None).unwrap().token;

    is_invalid(s.verify_session(&ticket), InvalidReason::WrongType);
    is_invalid(
        s.verify_ws_ticket(&session, &store).await,
        InvalidReason::WrongType,
    );
    // The failed attempts did not burn the ticket.
    assert!(s.verify_ws_ticket(&ticket, &store).await.is_ok());

    // A token without `typ`, or with an unknown one, is neither.
    let mut claims = session_claims();
    claims.as_object_mut().unwrap().remove("typ");
    let untyped = hs256(&json!({"alg":"HS256"}), &claims, SECRET.as_bytes());
    assert!(matches!(
        s.verify_session_at(&untyped, NOW),
        Err(TokenError::Invalid(_))
    ));
    claims["typ"] = json!("refresh");
    let unknown = hs256(&json!({"alg":"HS256"}), &claims, SECRET.as_bytes());
    is_invalid(s.verify_session_at(&unknown, NOW), InvalidReason::WrongType);
    is_invalid(
        s.verify_ws_credential_at(&unknown, &store, NOW).await,
        InvalidReason::WrongType,
    );
}

#[tokio::test]
async fn handshake_accepts_either_credential() {
    let s = sessions();
    let store = MemoryTicketStore::new();
    let session = s.issue_session(5, Some("fp")).unwrap();
    let id = s
        .verify_ws_credential(&session.token, &store)
        .await
        .unwrap();
    assert_eq!((id.user_id, id.kind), (5, CredentialKind::Session));
    assert_eq!(id.expires_at, session.expires_at);
    // A session may open several sockets; it is not consumed.
    assert!(s.verify_ws_credential(&session.token, &store).await.is_ok());
    assert!(store.is_empty());

    let ticket = s.issue_ws_ticket(6).unwrap();
    let id = s.verify_ws_credential(&ticket.token, &store).await.unwrap();
    assert_eq!((id.user_id, id.kind), (6, CredentialKind::WsTicket));
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn expired_ticket() {
    let s = sessions();
    let store = MemoryTicketStore::new();
    let t = s.issue_ws_ticket_at(1, NOW).unwrap();
    assert_eq!(t.expires_in_secs, 30);
    let r = s
        .verify_ws_ticket_at(&t.token, &store, NOW + 30 + LEEWAY_SECS + 1)
        .await;
    assert!(matches!(r, Err(TokenError::Expired)), "{r:?}");
    assert!(store.is_empty(), "an expired ticket is not recorded");
}

#[tokio::test]
async fn long_lived_ws_typed_token_is_refused() {
    // A `ws` token claiming a lifetime above 60 s is not one this service issues.
    let s = sessions();
    let store = MemoryTicketStore::new();
    let mut claims = session_claims();
    claims["typ"] = json!("ws");
    let token = hs256(&json!({"alg":"HS256"}), &claims, SECRET.as_bytes());
    is_invalid(
        s.verify_ws_ticket_at(&token, &store, NOW).await,
        InvalidReason::Claims,
    );
}

#[tokio::test]
async fn ticket_store_failure_fails_closed() {
    let s = sessions();
    let store = MemoryTicketStore::with_capacity(1);
    let first = s.issue_ws_ticket(1).unwrap().token;
    let second = s.issue_ws_ticket(1).unwrap().token;
    assert!(s.verify_ws_ticket(&first, &store).await.is_ok());
    let err = s.verify_ws_ticket(&second, &store).await.unwrap_err();
    assert!(matches!(err, TokenError::Store(_)), "{err:?}");
    assert!(err.is_server_error());
}

#[tokio::test]
async fn a_revoked_session_and_its_tickets_are_refused() {
    let s = sessions();
    let tickets = MemoryTicketStore::new();
    let revocations = MemoryRevocationStore::new();
    let session = s.issue_session(8, None).unwrap();
    let other = s.issue_session(8, None).unwrap();
    let claims = s
        .verify_live_session(&session.token, &revocations)
        .await
        .unwrap();
    let ticket = s.issue_ws_ticket_for(&claims).unwrap();
    let spare_ticket = s.issue_ws_ticket_for(&claims).unwrap();
    let id = s
        .verify_live_ws_credential(&ticket.token, &tickets, &revocations)
        .await
        .unwrap();
    assert_eq!(id.session_id.as_deref(), Some(claims.token_id.as_str()));

    s.revoke_session(&claims, &revocations).await.unwrap();
    for err in [
        s.verify_live_session(&session.token, &revocations)
            .await
            .unwrap_err(),
        s.verify_live_ws_credential(&session.token, &tickets, &revocations)
            .await
            .unwrap_err(),
        s.verify_live_ws_credential(&spare_ticket.token, &tickets, &revocations)
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(err, TokenError::Invalid(InvalidReason::Revoked)),
            "{err}"
        );
        assert_eq!(err.detail(), "Invalid token");
    }
    // The refused ticket was not consumed; the other session is untouched.
    assert_eq!(tickets.len(), 1);
    assert!(
        s.verify_live_session(&other.token, &revocations)
            .await
            .is_ok()
    );
    // Remembered as long as the token could be accepted, no longer.
    assert_eq!(revocations.len(), 1);
    assert!(revocations.is_revoked_at(&claims.token_id, session.expires_at + LEEWAY_SECS));
    assert!(!revocations.is_revoked_at(&claims.token_id, session.expires_at + LEEWAY_SECS + 1));
}
