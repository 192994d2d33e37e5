//! The server on a real PostgreSQL: the REST API's repository paths, 503 while the database
//! is unreachable and recovery afterwards, and `telcall migrate` / `telcall serve` through
//! the binary with a password in the URL that must never be printed.
//!
//! Every test needs a PostgreSQL server whose admin URL is in `TEST_DATABASE_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`) and creates, then drops, its own database:
//! `TEST_DATABASE_URL=… cargo test -p telcall-server --test ops_postgres -- --include-ignored`.

use crate::common::detail;
use telcall_domain::CallCode;

use std::time::Duration;

use crate::common::pg::TestDb;
use crate::common::process::{
    Server, all, base_env, free_port, migration_states, run, telcall, texts,
};
use crate::common::{TestApp, TestAppBuilder, TestUser};
use serde_json::{Value, json};

/// How long a stopping or failing process may take to exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

async fn ok_json(req: reqwest::RequestBuilder, status: u16) -> Value {
    let resp = req.send().await.unwrap();
    let got = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(got, status, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn friends(app: &TestApp, user: &TestUser, query: &str) -> Vec<i64> {
    let list = ok_json(app.get(&format!("/api/friends{query}"), user), 200).await;
    list.as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_i64().unwrap())
        .collect()
}

fn assert_utc(ts: &Value) {
    let ts = ts.as_str().unwrap();
    let parsed = chrono::DateTime::parse_from_rfc3339(ts).unwrap();
    assert_eq!(parsed.offset().local_minus_utc(), 0, "{ts}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL and run with --include-ignored"]
async fn rest_api_core_flow_on_postgres() {
    let db = TestDb::create().await;
    let app = TestAppBuilder::default()
        .database_url(&db.url())
        .spawn()
        .await;

    // Users: signing in again keeps the id and refreshes the profile.
    let ada = app.sign_in(5001, "Ada").await;
    let bob = app.sign_in(5002, "Bob").await;
    let again = app
        .sign_in_as(&json!({"id": 5001, "first_name": "Ada2", "username": "ada_lovelace"}))
        .await;
    assert_eq!(again.id, ada.id);
    assert_eq!(again.body["user"]["first_name"], "Ada2");
    assert_eq!(again.body["user"]["username"], "ada_lovelace");
    assert_ne!(ada.id, bob.id);

    // Create, read, join by code.
    let call = app.create_call(&ada).await;
    let code = call["call_id"].as_str().unwrap().to_owned();
    assert_eq!(call["status"], "active");
    assert_utc(&call["created_at"]);
    assert_utc(&call["expires_at"]);
    let got = ok_json(app.get(&format!("/api/calls/{code}"), &bob), 200).await;
    assert_eq!(got["call_id"], code.as_str());
    assert_eq!(got["created_at"], call["created_at"]);
    let joined = ok_json(
        app.post(
            "/api/calls/join_by_code",
            &bob,
            &json!({"call_code": format!("  {code} ")}),
        ),
        200,
    )
    .await;
    assert_eq!(joined["call_id"], code.as_str());

    // Stats: both report (Bob is recorded as a participant, as joining the room does), the
    // summary aggregates, each lists their own.
    let stored_call = app
        .state
        .repo
        .find_call_by_code(&CallCode::from_raw(&code))
        .await
        .unwrap()
        .unwrap();
    app.state
        .repo
        .record_join(stored_call.id, bob.user_id(), app.clock_now())
        .await
        .unwrap();
    for (user, duration, lost) in [(&ada, 60.0, 3), (&bob, 120.0, 5)] {
        let row = ok_json(
            app.post(
                "/api/call-stats/",
                user,
                &json!({"call_id": code, "duration_seconds": duration,
                        "audio_packets_lost": lost, "rtt_ms": 40.0,
                        "video_resolution": "1280x720"}),
            ),
            201,
        )
        .await;
        assert_eq!(row["call_id"], code.as_str());
        assert_utc(&row["created_at"]);
    }
    let summary = ok_json(app.get(&format!("/api/call-stats/{code}"), &ada), 200).await;
    assert_eq!(summary["participant_count"], 2);
    assert_eq!(summary["avg_duration_seconds"], 90.0);
    assert_eq!(summary["total_audio_packets_lost"], 8);
    assert_eq!(summary["avg_rtt_ms"], 40.0);
    let own = ok_json(app.get("/api/call-stats/?limit=10", &bob), 200).await;
    assert_eq!(own.as_array().unwrap().len(), 1);
    assert_eq!(own[0]["user_id"], bob.id);
    let resp = app
        .post(
            "/api/call-stats/",
            &ada,
            &json!({"call_id": "nosuchcall0000000"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // End: organizer only, once.
    let resp = app
        .post(&format!("/api/calls/{code}/end"), &bob, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let ended = ok_json(
        app.post(&format!("/api/calls/{code}/end"), &ada, &json!({})),
        200,
    )
    .await;
    assert_eq!(ended["status"], "ended");
    let resp = app
        .get(&format!("/api/calls/{code}"), &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(detail(resp).await, "Call is not available");

    // Call a friend (someone one shared a call with); search and delete.
    let carol = app.sign_in(5003, "Carol").await;
    app.befriend(&ada, &bob).await;
    let friend_call = ok_json(
        app.post("/api/calls/friend", &ada, &json!({"friend_id": bob.id})),
        201,
    )
    .await;
    assert_eq!(friend_call["status"], "active");
    app.clock.advance(chrono::Duration::seconds(5));
    app.befriend(&ada, &carol).await;
    ok_json(
        app.post("/api/calls/friend", &ada, &json!({"friend_id": carol.id})),
        201,
    )
    .await;
    assert_eq!(friends(&app, &ada, "").await, vec![carol.id, bob.id]);
    assert_eq!(friends(&app, &bob, "").await, vec![ada.id]);
    assert_eq!(friends(&app, &ada, "?query=BOB").await, vec![bob.id]);
    assert_eq!(
        friends(&app, &ada, "?query=user_5003").await,
        vec![carol.id]
    );
    assert_eq!(friends(&app, &ada, "?query=%25").await, Vec::<i64>::new());
    assert_eq!(friends(&app, &ada, "?limit=1&offset=1").await, vec![bob.id]);
    let list = ok_json(app.get("/api/friends", &ada), 200).await;
    assert_utc(&list[0]["last_call_at"]);
    let deleted = ok_json(
        app.post(
            "/api/friends/delete",
            &ada,
            &json!({"friend_ids": [bob.id, 999_999]}),
        ),
        200,
    )
    .await;
    assert_eq!(
        deleted,
        json!({"deleted_ids": [bob.id], "not_found_ids": [999_999]})
    );
    assert_eq!(friends(&app, &ada, "").await, vec![carol.id]);
    assert!(friends(&app, &bob, "").await.is_empty());

    // The sixth active call of one organizer ends the oldest.
    let mut codes = Vec::new();
    for _ in 0..4 {
        app.clock.advance(chrono::Duration::seconds(1));
        codes.push(app.create_call(&ada).await["call_id"].clone());
    }
    // Ada now organizes 6 active calls' worth: 2 friend calls + 4 created; the oldest went.
    let active = app
        .state
        .repo
        .list_active_calls_by_creator(ada.user_id())
        .await
        .unwrap();
    assert_eq!(active.len(), 5);
    let resp = app
        .get(
            &format!("/api/calls/{}", friend_call["call_id"].as_str().unwrap()),
            &ada,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    app.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL and run with --include-ignored"]
async fn database_outage_answers_503_and_the_pool_recovers() {
    let db = TestDb::create().await;
    let app = TestAppBuilder::default()
        .database_url(&db.url())
        .env("DB_CONNECT_TIMEOUT_SECONDS", "1")
        .env("DB_MAX_CONNECTIONS", "3")
        .spawn()
        .await;
    let ada = app.sign_in(6001, "Ada").await;
    let call = app.create_call(&ada).await;
    let code = call["call_id"].as_str().unwrap().to_owned();
    let unavailable = json!({"detail": "Database unavailable"});

    db.cut_off().await;

    let resp = app
        .get(&format!("/api/calls/{code}"), &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.json::<Value>().await.unwrap(), unavailable);
    let resp = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.json::<Value>().await.unwrap(), unavailable);
    let resp = app
        .post("/api/calls/", &ada, &json!({"title": "during the outage"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.json::<Value>().await.unwrap(), unavailable);
    // Liveness does not depend on the database.
    let resp = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    db.restore().await;

    let resp = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = ok_json(app.get(&format!("/api/calls/{code}"), &ada), 200).await;
    assert_eq!(got["call_id"], code.as_str());
    let bob = app.sign_in(6002, "Bob").await;
    let joined = ok_json(
        app.post("/api/calls/join_by_code", &bob, &json!({"call_code": code})),
        200,
    )
    .await;
    assert_eq!(joined["status"], "active");

    app.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set TEST_DATABASE_URL and run with --include-ignored"]
async fn migrate_and_serve_on_postgres_never_print_the_password() {
    let db = TestDb::create().await;
    let url = db.url_with(Some("secretpw"));
    assert!(url.contains(":secretpw@"));
    let redacted = telcall_persistence::redacted_url(&url);
    assert!(!redacted.contains("secretpw"));
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&url);
    let mut printed = String::new();
    let mut migrate = |action: &str| -> String {
        let out = run(telcall(dir.path(), &env, &["migrate", action]));
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{action}: {stdout}\n{stderr}");
        assert!(stdout.contains(&redacted), "{action}: {stdout}");
        printed.push_str(&stdout);
        printed.push_str(&stderr);
        stdout
    };

    assert_eq!(migration_states(&migrate("status")), all("pending"));
    migrate("up");
    assert_eq!(migration_states(&migrate("status")), all("applied"));
    migrate("down");
    let mut expected = all("applied");
    expected.last_mut().unwrap().0 = "pending".to_owned();
    assert_eq!(migration_states(&migrate("status")), expected);
    migrate("fresh");
    assert_eq!(migration_states(&migrate("status")), all("applied"));
    migrate("down");
    assert!(!printed.contains("secretpw"), "{printed}");

    // `serve` refuses the pending migration without printing the password …
    let json_env: Vec<(String, String)> = env
        .iter()
        .cloned()
        .chain([("LOG_FORMAT".to_owned(), "json".to_owned())])
        .collect();
    let mut refused = Server::spawn(telcall(dir.path(), &json_env, &["serve"]), free_port());
    let code = refused.wait_exit(EXIT_DEADLINE).await;
    let output = refused.all_output();
    assert!(!code.success(), "{output}");
    assert!(output.contains("just migrate"), "{output}");
    assert!(!output.contains("secretpw"), "{output}");

    // … and with --migrate serves, logging the URL redacted.
    let mut server = Server::spawn(
        telcall(dir.path(), &json_env, &["serve", "--migrate"]),
        free_port(),
    );
    server.wait_ready().await;
    let resp = reqwest::get(server.url("/health/ready")).await.unwrap();
    assert_eq!(resp.status(), 200);
    server.terminate();
    let code = server.wait_exit(EXIT_DEADLINE).await;
    assert_eq!(code.code(), Some(0), "{}", server.all_output());
    let output = server.all_output();
    assert!(!output.contains("secretpw"), "{output}");
    let logs: Vec<Value> = server
        .stdout()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let connecting = logs
        .iter()
        .find(|l| l["message"] == "connecting to the database")
        .expect("database log line");
    assert_eq!(connecting["database"], redacted.as_str());
}
