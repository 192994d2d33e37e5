//! `/auth/*` and session authentication against the real app: every CONTRACT row and error
//! of sign-in, the session cookie's attributes, Bearer fallback, the 401 texts, WebSocket
//! tickets and logout.

use crate::common::detail;

use std::time::Duration;

use crate::common::{
    BOT_TOKEN, SECRET_KEY, TestAppBuilder, init_data_for, session_cookie, spawn_app,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use telcall_auth::{SecretString, SessionConfig, Sessions};

/// The attributes of the `access_token` `Set-Cookie` header, lower-cased names, and its value.
fn session_set_cookie(resp: &reqwest::Response) -> (String, Vec<String>) {
    let header = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("access_token="))
        .expect("access_token Set-Cookie");
    let mut parts = header.split(';').map(|p| p.trim().to_owned());
    let value = parts.next().unwrap()["access_token=".len()..].to_owned();
    (value, parts.collect())
}

fn has_attr(attrs: &[String], want: &str) -> bool {
    attrs.iter().any(|a| a.eq_ignore_ascii_case(want))
}

fn tg_user(id: i64) -> Value {
    json!({
        "id": id,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "username": "ada_lovelace",
        "photo_url": "https://t.me/i/userpic/320/ada.jpg",
    })
}

fn now() -> i64 {
    Utc::now().timestamp()
}

/// initData with a valid hash over exactly `pairs`.
fn signed(pairs: &[(&str, &str)]) -> String {
    telcall_auth::sign_init_data(&SecretString::from(BOT_TOKEN.to_owned()), pairs)
}

fn test_sessions(config: SessionConfig) -> Sessions {
    Sessions::with_config(&SecretString::from(SECRET_KEY.to_owned()), config).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn claims(user_id: i64) -> Value {
    json!({
        "sub": user_id.to_string(),
        "iat": now(),
        "exp": now() + 3600,
        "iss": telcall_auth::DEFAULT_ISSUER,
        "aud": telcall_auth::DEFAULT_AUDIENCE,
        "jti": "handmade",
        "typ": "session",
    })
}

#[tokio::test]
async fn sign_in_returns_user_and_sets_the_session_cookie() {
    let app = spawn_app().await;
    let resp = app
        .post_init_data(&init_data_for(BOT_TOKEN, &tg_user(777_000_111), now()))
        .await;
    assert_eq!(resp.status(), 200);
    let (token, attrs) = session_set_cookie(&resp);
    assert!(!token.is_empty());
    for want in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=14400",
    ] {
        assert!(has_attr(&attrs, want), "{want} missing from {attrs:?}");
    }
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["expires_in"], 14_400);
    let user = &body["user"];
    assert!(user["id"].as_i64().unwrap() > 0);
    assert_eq!(user["telegram_user_id"], 777_000_111);
    assert_eq!(user["username"], "ada_lovelace");
    assert_eq!(user["first_name"], "Ada");
    assert_eq!(user["last_name"], "Lovelace");
    assert_eq!(user["photo_url"], "https://t.me/i/userpic/320/ada.jpg");
    // The token is not in the body unless AUTH_TOKEN_IN_BODY is on.
    assert!(body.get("access_token").is_none());
    assert!(body.get("token_type").is_none());

    // The cookie is a session: `sub` is the internal id.
    let claims = app.state.sessions.verify_session(&token).unwrap();
    assert_eq!(claims.user_id, user["id"].as_i64().unwrap());
    let resp = app
        .client
        .get(app.url("/api/friends"))
        .header("cookie", session_cookie(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn cookie_follows_samesite_and_lifetime_settings() {
    for (samesite, expected) in [("strict", "SameSite=Strict"), ("none", "SameSite=None")] {
        let app = TestAppBuilder::default()
            .env("COOKIE_SAMESITE", samesite)
            .env("ACCESS_TOKEN_EXPIRE_MINUTES", "30")
            .spawn()
            .await;
        let resp = app
            .post_init_data(&init_data_for(BOT_TOKEN, &tg_user(5), now()))
            .await;
        assert_eq!(resp.status(), 200);
        let (_, attrs) = session_set_cookie(&resp);
        for want in [expected, "HttpOnly", "Secure", "Path=/", "Max-Age=1800"] {
            assert!(
                has_attr(&attrs, want),
                "{samesite}: {want} missing from {attrs:?}"
            );
        }
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["expires_in"], 1800);
    }
}

#[tokio::test]
async fn debug_mode_may_drop_the_secure_flag() {
    let app = TestAppBuilder::default()
        .env("DEBUG", "true")
        .env("COOKIE_SECURE", "false")
        .spawn()
        .await;
    let resp = app
        .post_init_data(&init_data_for(BOT_TOKEN, &tg_user(6), now()))
        .await;
    assert_eq!(resp.status(), 200);
    let (_, attrs) = session_set_cookie(&resp);
    assert!(!has_attr(&attrs, "Secure"), "{attrs:?}");
    for want in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=14400"] {
        assert!(has_attr(&attrs, want), "{want} missing from {attrs:?}");
    }
}

#[tokio::test]
async fn signing_in_again_keeps_the_id_and_refreshes_the_profile() {
    let app = spawn_app().await;
    let first = app.sign_in_as(&tg_user(4242)).await;
    let renamed = json!({
        "id": 4242,
        "first_name": "Augusta",
        "last_name": "King",
        "username": "countess_ada",
        "photo_url": "https://t.me/i/userpic/320/new.jpg",
    });
    let second = app.sign_in_as(&renamed).await;
    assert_eq!(first.id, second.id);
    let user = &second.body["user"];
    assert_eq!(user["first_name"], "Augusta");
    assert_eq!(user["last_name"], "King");
    assert_eq!(user["username"], "countess_ada");
    assert_eq!(user["photo_url"], "https://t.me/i/userpic/320/new.jpg");
    let stored = app
        .state
        .repo
        .find_user(first.user_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.first_name.as_deref(), Some("Augusta"));
    assert_eq!(stored.username.as_deref(), Some("countess_ada"));

    // Another Telegram id is another user.
    let other = app.sign_in(4243, "Bob").await;
    assert_ne!(other.id, first.id);
}

#[tokio::test]
async fn invalid_usernames_are_stored_as_null() {
    let app = spawn_app().await;
    for (id, username) in [(11, "abc"), (12, "bad-name!"), (13, &*"x".repeat(33))] {
        let user = app
            .sign_in_as(&json!({"id": id, "first_name": "N", "username": username}))
            .await;
        assert_eq!(user.body["user"]["username"], Value::Null, "{username}");
        let stored = app
            .state
            .repo
            .find_user(user.user_id())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.username, None);
    }
}

#[tokio::test]
async fn init_data_errors_have_contract_statuses_and_texts() {
    let app = spawn_app().await;
    let user = tg_user(900).to_string();
    let fresh = now().to_string();
    let valid = signed(&[("user", &user), ("auth_date", &fresh)]);

    // No hash at all.
    let without_hash: String = valid
        .split('&')
        .filter(|kv| !kv.starts_with("hash="))
        .collect::<Vec<_>>()
        .join("&");
    // The hash of other data.
    let other = signed(&[("user", &user), ("auth_date", "1")]);
    let other_hash = other.split('&').find(|kv| kv.starts_with("hash=")).unwrap();
    let bad_hash = format!("{without_hash}&{other_hash}");
    // Signed for another bot.
    let other_bot = init_data_for("999:another-bot-token", &tg_user(900), now());
    let stale = (now() - 25 * 3600).to_string();
    let too_old = signed(&[("user", &user), ("auth_date", &stale)]);
    let no_user = signed(&[("query_id", "AAH"), ("auth_date", &fresh)]);
    let not_json = signed(&[("user", "{not json"), ("auth_date", &fresh)]);
    let no_id = signed(&[("user", r#"{"first_name":"Ada"}"#), ("auth_date", &fresh)]);

    for (init, status, text) in [
        (without_hash.as_str(), 400, "Missing hash in initData"),
        ("", 400, "Missing hash in initData"),
        (&bad_hash, 401, "Invalid initData hash"),
        (&other_bot, 401, "Invalid initData hash"),
        (&too_old, 401, "initData is too old"),
        (&no_user, 400, "Missing user payload in initData"),
        (&not_json, 400, "Invalid user payload"),
        (&no_id, 400, "Invalid user payload"),
    ] {
        let resp = app.post_init_data(init).await;
        assert_eq!(resp.status(), status, "{text}");
        assert!(resp.headers().get("set-cookie").is_none(), "{text}");
        assert_eq!(detail(resp).await, text);
    }
    // The valid one still works, and nothing above created a user.
    let resp = app.post_init_data(&valid).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["user"]["telegram_user_id"], 900);
}

#[tokio::test]
async fn malformed_bodies_are_refused() {
    let app = spawn_app().await;
    let send = |body: &'static str, content_type: Option<&'static str>| {
        let mut req = app.client.post(app.url("/auth/telegram")).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    for body in [
        "{not json",
        r#"{"init_data": "x"}"#,
        r#"{"initData": 5}"#,
        "[]",
    ] {
        let resp = send(body, Some("application/json")).await.unwrap();
        assert_eq!(resp.status(), 422, "{body}");
        assert!(!detail(resp).await.is_empty());
    }
    // JSON is only read from application/json bodies.
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let resp = send(r#"{"initData": "x"}"#, ct).await.unwrap();
        assert_eq!(resp.status(), 415, "{ct:?}");
        assert_eq!(detail(resp).await, "Content-Type must be application/json");
    }
}

#[tokio::test]
async fn oversize_bodies_get_413() {
    let app = spawn_app().await;
    let ada = app.sign_in(31, "Ada").await;
    let big = json!({ "initData": "a".repeat(70 * 1024) });
    let resp = app
        .client
        .post(app.url("/auth/telegram"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(detail(resp).await, "Request body is too large");

    let resp = app
        .post(
            "/api/calls/",
            &ada,
            &json!({ "title": "t".repeat(70 * 1024) }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(!detail(resp).await.is_empty());
    let calls = app
        .state
        .repo
        .list_active_calls_by_creator(ada.user_id())
        .await
        .unwrap();
    assert!(calls.is_empty());
}

#[tokio::test]
async fn token_in_body_when_configured() {
    let app = TestAppBuilder::default()
        .env("AUTH_TOKEN_IN_BODY", "true")
        .spawn()
        .await;
    let resp = app
        .post_init_data(&init_data_for(BOT_TOKEN, &tg_user(51), now()))
        .await;
    assert_eq!(resp.status(), 200);
    let (cookie, _) = session_set_cookie(&resp);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token, cookie);
    let resp = app
        .client
        .get(app.url("/api/friends"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn bearer_is_the_fallback_and_the_cookie_wins() {
    let app = spawn_app().await;
    let ada = app.sign_in(61, "Ada").await;
    let bob = app.sign_in(62, "Bob").await;
    // Bearer alone.
    let resp = app.get("/api/friends", &ada).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // Lower-case scheme is accepted too.
    let resp = app
        .client
        .get(app.url("/api/friends"))
        .header("authorization", format!("bearer {}", ada.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Cookie of Ada and Bearer of Bob: the call is Ada's.
    let resp = app
        .post("/api/calls/", &bob, &json!({}))
        .header("cookie", session_cookie(&ada.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let repo = &app.state.repo;
    assert_eq!(
        repo.list_active_calls_by_creator(ada.user_id())
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        repo.list_active_calls_by_creator(bob.user_id())
            .await
            .unwrap()
            .is_empty()
    );
}

/// A request that sends the session cookie is judged by it alone: a bad cookie is a 401
/// even beside a valid Bearer token, also when the `Cookie` header is malformed elsewhere
/// (a parser that gave up on the whole header would fall back to the Bearer token).
#[tokio::test]
async fn a_sent_cookie_decides_even_beside_a_valid_bearer() {
    let app = spawn_app().await;
    let ada = app.sign_in(63, "Ada").await;
    let with_cookie = |cookie: &str| {
        app.get("/api/friends", &ada)
            .header("cookie", cookie.to_owned())
            .send()
    };
    for cookie in [
        "access_token=garbage",
        "access_token=SCHEMATHESIS-INVALID-VALUE",
        // Malformed neighbours: no name, no `=`, a stray quote, bytes beyond ASCII.
        "=x; access_token=garbage",
        "theme; access_token=garbage",
        "a=\"b; access_token=garbage",
        "access_token=garbage; z=%ZZ",
    ] {
        let resp = with_cookie(cookie).await.unwrap();
        assert_eq!(resp.status(), 401, "{cookie}");
        assert_eq!(detail(resp).await, "Invalid token", "{cookie}");
    }
    let resp = app
        .get("/api/friends", &ada)
        .header(
            "cookie",
            reqwest::header::HeaderValue::from_bytes(b"access_token=\xff\xfe").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // No session cookie among the cookies (malformed or not), or an empty one: the Bearer
    // token decides.
    for cookie in [
        "=x; theme",
        "theme=dark",
        "access_token=",
        "access_token= ; a=b",
    ] {
        let resp = with_cookie(cookie).await.unwrap();
        assert_eq!(resp.status(), 200, "{cookie}");
    }
    // A valid cookie beside a malformed neighbour and a garbage Bearer token: the cookie
    // decides.
    let resp = app
        .client
        .get(app.url("/api/friends"))
        .header("authorization", "Bearer garbage")
        .header("cookie", format!("=x; {}", session_cookie(&ada.token)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn unauthenticated_expired_and_invalid_tokens_get_contract_texts() {
    let app = spawn_app().await;
    let ada = app.sign_in(71, "Ada").await;
    let get = |auth: Option<String>, cookie: Option<String>| {
        let mut req = app.client.get(app.url("/api/friends"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send()
    };

    for (auth, cookie) in [
        (None, None),
        (Some("Bearer".to_owned()), None),
        (Some("Bearer   ".to_owned()), None),
        (Some(format!("Basic {}", ada.token)), None),
        (None, Some("access_token=".to_owned())),
        (None, Some("other=1".to_owned())),
    ] {
        let resp = get(auth.clone(), cookie.clone()).await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?} {cookie:?}");
        assert_eq!(detail(resp).await, "Not authenticated");
    }

    // Expired: issued with the server's key, long enough ago.
    let sessions = test_sessions(SessionConfig::default());
    let expired = sessions
        .issue_session_at(ada.id, None, now() - 240 * 60 - 3600)
        .unwrap()
        .token;
    for (auth, cookie) in [
        (Some(format!("Bearer {expired}")), None),
        (None, Some(session_cookie(&expired))),
    ] {
        let resp = get(auth, cookie).await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(detail(resp).await, "Token has expired");
    }

    // Invalid: forged key, wrong audience, wrong issuer, alg none, HS512, garbage, a
    // tampered payload.
    let forged = Sessions::new(
        &SecretString::from("another-secret-key-0123456789abcdef-xyz".to_owned()),
        Duration::from_secs(3600),
    )
    .unwrap()
    .issue_session(ada.id, None)
    .unwrap()
    .token;
    let wrong_aud = test_sessions(SessionConfig::default().audience("someone-else"))
        .issue_session(ada.id, None)
        .unwrap()
        .token;
    let wrong_iss = test_sessions(SessionConfig::default().issuer("someone-else"))
        .issue_session(ada.id, None)
        .unwrap()
        .token;
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(ada.id))
    );
    let hs512 = {
        let signing_input = format!(
            "{}.{}",
            b64(&json!({"alg": "HS512", "typ": "JWT"})),
            b64(&claims(ada.id))
        );
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(SECRET_KEY.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    };
    let tampered = {
        let mut parts: Vec<String> = ada.token.split('.').map(str::to_owned).collect();
        parts[1] = b64(&claims(ada.id + 1));
        parts.join(".")
    };
    for (name, token) in [
        ("forged", forged),
        ("wrong audience", wrong_aud),
        ("wrong issuer", wrong_iss),
        ("alg none", alg_none),
        ("HS512", hs512),
        ("garbage", "not.a.jwt".to_owned()),
        ("tampered", tampered),
    ] {
        for (auth, cookie) in [
            (Some(format!("Bearer {token}")), None),
            (None, Some(session_cookie(&token))),
        ] {
            let resp = get(auth, cookie).await.unwrap();
            assert_eq!(resp.status(), 401, "{name}");
            assert_eq!(detail(resp).await, "Invalid token", "{name}");
        }
    }

    // Authentic, but for a user that does not exist.
    let ghost = sessions.issue_session(987_654_321, None).unwrap().token;
    let resp = get(Some(format!("Bearer {ghost}")), None).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(detail(resp).await, "User not found");
}

#[tokio::test]
async fn ws_token_with_cookie_or_bearer_and_never_a_session() {
    let app = spawn_app().await;
    let ada = app.sign_in(81, "Ada").await;
    let by_bearer = app.get("/auth/ws-token", &ada).send().await.unwrap();
    let by_cookie = app
        .client
        .get(app.url("/auth/ws-token"))
        .header("cookie", session_cookie(&ada.token))
        .send()
        .await
        .unwrap();
    let mut tickets = Vec::new();
    for resp in [by_bearer, by_cookie] {
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let body: Value = resp.json().await.unwrap();
        let token = body["token"].as_str().unwrap().to_owned();
        assert_ne!(token, ada.token);
        let expires_in = body["expires_in"].as_u64().unwrap();
        assert!((1..=60).contains(&expires_in), "{expires_in}");
        tickets.push(token);
    }
    assert_ne!(tickets[0], tickets[1]);

    // A ticket is not a session.
    for ticket in &tickets {
        let resp = app
            .client
            .get(app.url("/api/friends"))
            .bearer_auth(ticket)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(detail(resp).await, "Invalid token");
        let resp = app
            .client
            .get(app.url("/auth/ws-token"))
            .header("cookie", session_cookie(ticket))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(detail(resp).await, "Invalid token");
    }

    let resp = app
        .client
        .get(app.url("/auth/ws-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(detail(resp).await, "Not authenticated");
}

#[tokio::test]
async fn logout_clears_the_cookie() {
    let app = spawn_app().await;
    let ada = app.sign_in(91, "Ada").await;
    let resp = app
        .client
        .post(app.url("/auth/logout"))
        .header("cookie", session_cookie(&ada.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let (value, attrs) = session_set_cookie(&resp);
    assert_eq!(value, "");
    for want in ["Max-Age=0", "Path=/", "HttpOnly", "Secure", "SameSite=Lax"] {
        assert!(has_attr(&attrs, want), "{want} missing from {attrs:?}");
    }
    assert!(resp.bytes().await.unwrap().is_empty());

    // Without a session it is still 204 (idempotent).
    let resp = app
        .client
        .post(app.url("/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
}

/// The session's user is read from storage at most once per `USER_CACHE_SECONDS`: a user
/// deleted from the database is still found within that time, and refused after it.
#[tokio::test]
async fn a_deleted_user_is_refused_once_the_user_cache_time_has_passed() {
    use sea_orm::ConnectionTrait as _;
    use secrecy::ExposeSecret as _;

    for (cache_secs, found_right_after) in [("5", true), ("0", false)] {
        let app = TestAppBuilder::default()
            .env("USER_CACHE_SECONDS", cache_secs)
            .spawn()
            .await;
        let ada = app.sign_in(8801, "Ada").await;
        let read = || async { app.get("/api/friends", &ada).send().await.unwrap() };
        assert_eq!(read().await.status(), 200);

        let db = sea_orm::Database::connect(app.state.settings.database_url.expose_secret())
            .await
            .unwrap();
        db.execute_unprepared(&format!("DELETE FROM users WHERE id = {}", ada.id))
            .await
            .unwrap();

        let resp = read().await;
        if found_right_after {
            assert_eq!(resp.status(), 200, "cache {cache_secs}s");
            app.clock.advance(chrono::Duration::seconds(6));
            let resp = read().await;
            assert_eq!(resp.status(), 401);
            assert_eq!(detail(resp).await, "User not found");
        } else {
            assert_eq!(resp.status(), 401, "cache {cache_secs}s");
            assert_eq!(detail(resp).await, "User not found");
        }
    }
}
