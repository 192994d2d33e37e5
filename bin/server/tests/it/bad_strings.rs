//! Strings a database cannot or should not store — a NUL character above all, which
//! PostgreSQL refuses in text — get the same answers on SQLite and PostgreSQL: an
//! impossible call code is "not found" (404, WebSocket 4404) without a database round
//! trip, a title, search or resolution with a control character is refused (422), and
//! names from Telegram are stored without their control characters. Nothing is logged at
//! ERROR: each case runs the real `telcall` binary and reads everything it printed.

use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::init_data_for;
use crate::common::pg::TestDb;
use crate::common::process::{BOT_TOKEN, Server, base_env, free_port, telcall};

/// How long the WebSocket refusal may take to arrive.
const WS_DEADLINE: Duration = Duration::from_secs(15);

/// A `telcall serve --migrate` on `database_url`, answering.
async fn serve(dir: &std::path::Path, database_url: &str) -> Server {
    let mut env = base_env(database_url);
    for (k, v) in [
        ("AUTH_TOKEN_IN_BODY", "true"),
        ("RATE_LIMIT_AUTH_PER_MINUTE", "1000"),
        ("RATE_LIMIT_AUTH_PER_HOUR", "1000"),
        ("RATE_LIMIT_CALLS_PER_MINUTE", "1000"),
        ("RATE_LIMIT_CALLS_PER_HOUR", "1000"),
    ] {
        env.push((k.to_owned(), v.to_owned()));
    }
    let mut server = Server::spawn(telcall(dir, &env, &["serve", "--migrate"]), free_port());
    server.wait_ready().await;
    server
}

/// Signs in the Telegram `user` and returns (session JWT, the `user` the server answered).
async fn sign_in(server: &Server, user: &Value) -> (String, Value) {
    let init = init_data_for(BOT_TOKEN, user, Utc::now().timestamp());
    let resp = reqwest::Client::new()
        .post(server.url("/auth/telegram"))
        .json(&json!({ "initData": init }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["user"].clone(),
    )
}

/// Sends `req` and checks its status and `detail`.
async fn expect(req: reqwest::RequestBuilder, status: u16, detail: &str, what: &str) {
    let resp = req.send().await.unwrap();
    let got = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    assert_eq!(got, status, "{what}: {body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["detail"], detail, "{what}");
}

/// The WebSocket close code and reason for `/ws/calls/<path>` with `token`.
async fn ws_close(server: &Server, path: &str, token: &str) -> (u16, String) {
    let url = format!("ws://127.0.0.1:{}/ws/calls/{path}", server.port);
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(&format!("token.{token}")).unwrap(),
    );
    let (mut stream, _) =
        tokio::time::timeout(WS_DEADLINE, tokio_tungstenite::connect_async(request))
            .await
            .unwrap()
            .unwrap();
    loop {
        match tokio::time::timeout(WS_DEADLINE, stream.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Some(Ok(Message::Close(None))) | None => {
                return (u16::from(CloseCode::Status), String::new());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("WebSocket error before the close frame: {e}"),
        }
    }
}

/// The whole matrix against one server; the answers are the same whatever its database.
async fn bad_strings_matrix(server: &Server) {
    let client = reqwest::Client::new();
    let (ada, _) = sign_in(server, &json!({"id": 7001, "first_name": "Ada"})).await;
    let api = |method: reqwest::Method, path: &str| {
        client.request(method, server.url(path)).bearer_auth(&ada)
    };
    let created: Value = api(reqwest::Method::POST, "/api/calls/")
        .json(&json!({"title": "Standup"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = created["call_id"].as_str().unwrap().to_owned();

    // Impossible call codes are not found, wherever a code is taken.
    for bad in [
        "a%00b",
        &format!("{code}%00"),
        "%00",
        "a%01b",
        "a%20b",
        &"a".repeat(300),
    ] {
        use reqwest::Method;
        expect(
            api(Method::GET, &format!("/api/calls/{bad}")),
            404,
            "Call not found",
            bad,
        )
        .await;
        expect(
            api(Method::POST, &format!("/api/calls/{bad}/end")),
            404,
            "Call not found",
            bad,
        )
        .await;
        expect(
            api(Method::GET, &format!("/api/call-stats/{bad}")),
            404,
            "Call not found",
            bad,
        )
        .await;
    }
    for bad in ["a\u{0}b", &format!("{code}\u{0}"), "\u{0}", "a\u{7f}b"] {
        expect(
            api(reqwest::Method::POST, "/api/calls/join_by_code").json(&json!({"call_code": bad})),
            404,
            "Call not found",
            "join_by_code",
        )
        .await;
        expect(
            api(reqwest::Method::POST, "/api/call-stats/")
                .json(&json!({"call_id": bad, "rtt_ms": 1.0})),
            404,
            "Call not found",
            "stats for a bad code",
        )
        .await;
    }
    let (closed, reason) = ws_close(server, "a%00b", &ada).await;
    assert_eq!(closed, 4404, "{reason}");
    assert_eq!(reason, "Call not found. Please create a new call.");

    // Text that would be stored or searched: a control character is refused.
    expect(
        api(reqwest::Method::GET, "/api/friends?query=a%00b"),
        422,
        "query must not contain control characters",
        "friends query",
    )
    .await;
    expect(
        api(reqwest::Method::POST, "/api/calls/").json(&json!({"title": "Stand\u{0}up"})),
        422,
        "title must not contain control characters",
        "title",
    )
    .await;
    expect(
        api(reqwest::Method::POST, "/api/call-stats/")
            .json(&json!({"call_id": code, "video_resolution": "1280\u{0}x720"})),
        422,
        "video_resolution must not contain control characters",
        "video_resolution",
    )
    .await;
    // Nothing was stored by the refusals: the call has no report yet.
    let summary: Value = api(reqwest::Method::GET, &format!("/api/call-stats/{code}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["participant_count"], 0);

    // Names from Telegram lose their control characters; a bad username or photo URL is
    // dropped; signing in works.
    let (_, eve) = sign_in(
        server,
        &json!({"id": 7002, "first_name": "E\u{0}ve", "last_name": "Lo\u{1b}ve\n",
                "username": "eve\u{0}_user", "photo_url": "https://t.me/i/\u{0}.jpg"}),
    )
    .await;
    assert_eq!(eve["first_name"], "Eve");
    assert_eq!(eve["last_name"], "Love");
    assert_eq!(eve["username"], Value::Null);
    assert_eq!(eve["photo_url"], Value::Null);
    // A name that is nothing but control characters is no name.
    let (_, nobody) = sign_in(server, &json!({"id": 7003, "first_name": "\u{0}\u{7}"})).await;
    assert_eq!(nobody["first_name"], Value::Null);

    let output = server.all_output();
    assert!(
        !output.lines().any(|l| l.contains("ERROR")),
        "something was logged at ERROR:\n{output}"
    );
}

#[tokio::test]
async fn bad_strings_get_clear_answers_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("bad.db").display());
    let server = serve(dir.path(), &url).await;
    bad_strings_matrix(&server).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL and run with --include-ignored"]
async fn bad_strings_get_clear_answers_on_postgres() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &db.url()).await;
    bad_strings_matrix(&server).await;
}
