//! No secret reaches a log, at any level: captures everything the process logs at TRACE
//! during a full sign-in → API → ws-token → logout flow (and its failure paths) and looks
//! for the bot token, the JWT key, the session JWT, the WebSocket ticket and the initData.
//!
//! This binary installs its own global subscriber (filter `trace`, independent of
//! `RUST_LOG`) before any app starts, so `telemetry::init`'s `try_init` is a no-op here.
//! `log` records (actix-http, sqlx, …) are captured too through the `tracing-log` bridge
//! that `try_init` installs.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::common::{BOT_TOKEN, SECRET_KEY, TestAppBuilder, init_data_for, session_cookie};
use chrono::Utc;
use serde_json::{Value, json};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Everything logged so far, shared by every thread's writer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn capture_all_logs() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("trace"))
        .with_span_events(FmtSpan::FULL)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("this test binary installs the only subscriber");
    captured
}

fn hash_of(init_data: &str) -> String {
    init_data
        .split('&')
        .find_map(|kv| kv.strip_prefix("hash="))
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_is_logged_at_any_level() {
    let logs = capture_all_logs();
    let app = TestAppBuilder::default().spawn().await;
    let client = &app.client;

    // Sign in (cookie session).
    let user = json!({"id": 31337, "first_name": "Eve", "username": "eve_secret"});
    let init_data = init_data_for(BOT_TOKEN, &user, Utc::now().timestamp());
    let resp = app.post_init_data(&init_data).await;
    assert_eq!(resp.status(), 200);
    let jwt = resp
        .cookies()
        .find(|c| c.name() == "access_token")
        .unwrap()
        .value()
        .to_owned();
    let cookie = session_cookie(&jwt);

    // A forged initData (valid shape, wrong hash) and a stale one.
    let forged = init_data.replace(&hash_of(&init_data), &"ab".repeat(32));
    assert_eq!(app.post_init_data(&forged).await.status(), 401);
    let stale = init_data_for(BOT_TOKEN, &user, Utc::now().timestamp() - 2 * 86_400);
    assert_eq!(app.post_init_data(&stale).await.status(), 401);

    // API calls with the cookie and with Bearer.
    let resp = client
        .post(app.url("/api/calls/"))
        .header("cookie", &cookie)
        .json(&json!({"title": "secret meeting"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let call: Value = resp.json().await.unwrap();
    let code = call["call_id"].as_str().unwrap();
    let resp = client
        .get(app.url(&format!("/api/calls/{code}")))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A forged X-Forwarded-For from an untrusted peer and a query string carrying a
    // secret-looking value: neither is written to the request span.
    let resp = client
        .get(app.url(&format!("/api/calls/{code}?token=query-string-secret")))
        .bearer_auth(&jwt)
        .header("x-forwarded-for", "203.0.113.66")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // A WebSocket ticket, then misuse of it (refused as a session).
    let resp = client
        .get(app.url("/auth/ws-token"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let ticket = body["token"].as_str().unwrap().to_owned();
    let resp = client
        .get(app.url("/api/friends"))
        .bearer_auth(&ticket)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // A CSRF refusal and a tampered token.
    let resp = client
        .post(app.url("/api/calls/"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example.com")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let tampered = format!("{jwt}x");
    let resp = client
        .get(app.url("/api/friends"))
        .header("cookie", session_cookie(&tampered))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Logout.
    let resp = client
        .post(app.url("/auth/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    // Every request span has closed once the server has stopped.
    app.stop().await;
    let text = logs.text();
    // `LOG_SECRETS_DUMP=/some/file` keeps the captured logs for inspection.
    if let Ok(path) = std::env::var("LOG_SECRETS_DUMP") {
        std::fs::write(path, &text).unwrap();
    }

    // The capture works: requests and the sign-in were logged.
    assert!(text.contains("/auth/telegram"), "no request spans captured");
    assert!(text.contains("signed in"), "no sign-in event captured");
    assert!(
        text.contains("http.client_ip=127.0.0.1"),
        "client ip not logged"
    );
    assert!(
        !text.contains("203.0.113.66"),
        "a forged X-Forwarded-For was logged"
    );
    assert!(
        !text.contains("query-string-secret"),
        "a query string was logged"
    );

    let signature = |token: &str| token.rsplit('.').next().unwrap().to_owned();
    let init_hash = hash_of(&init_data);
    let secrets = [
        ("BOT_TOKEN", BOT_TOKEN.to_owned()),
        ("SECRET_KEY", SECRET_KEY.to_owned()),
        ("session JWT", jwt.clone()),
        ("session JWT signature", signature(&jwt)),
        ("tampered JWT", tampered),
        ("ws ticket", ticket.clone()),
        ("ws ticket signature", signature(&ticket)),
        ("initData", init_data.clone()),
        ("initData hash", init_hash),
        ("forged initData hash", hash_of(&forged)),
        ("stale initData hash", hash_of(&stale)),
    ];
    let mut leaks = Vec::new();
    for (name, secret) in &secrets {
        if let Some(pos) = text.find(secret.as_str()) {
            let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
            let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
            leaks.push(format!("{name}: {}", &text[start..end]));
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets in the logs:\n{}",
        leaks.join("\n")
    );
}
