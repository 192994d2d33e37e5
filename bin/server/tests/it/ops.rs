//! Operating the real `telcall` binary on SQLite: migrations from the command line, the
//! refusal to serve a database with pending migrations, configuration errors, JSON logs,
//! graceful shutdown on SIGTERM and the zero-configuration development mode.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::process::{
    BOT_TOKEN, SECRET_KEY, Server, all, base_env, free_port, migration_states, run, telcall, texts,
};
use serde_json::{Value, json};

/// How long a stopping or failing process may take to exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}/ops.db?mode=rwc", dir.display())
}

fn with(mut env: Vec<(String, String)>, key: &str, value: &str) -> Vec<(String, String)> {
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value.to_owned()));
    env
}

fn status(dir: &Path, env: &[(String, String)]) -> Vec<(String, String)> {
    let out = run(telcall(dir, env, &["migrate", "status"]));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "status failed: {stdout}\n{stderr}");
    migration_states(&stdout)
}

#[test]
fn migrate_up_status_down_and_fresh_on_a_fresh_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&sqlite_url(dir.path()));
    assert!(!telcall_migration::migration_names().is_empty());

    assert_eq!(status(dir.path(), &env), all("pending"));

    let out = run(telcall(dir.path(), &env, &["migrate", "up"]));
    assert!(out.status.success(), "{:?}", texts(&out));
    assert!(dir.path().join("ops.db").exists());
    assert_eq!(status(dir.path(), &env), all("applied"));

    // Applying again is a no-op.
    let out = run(telcall(dir.path(), &env, &["migrate", "up"]));
    assert!(out.status.success(), "{:?}", texts(&out));
    assert_eq!(status(dir.path(), &env), all("applied"));

    // `down` reverts the last migration.
    let out = run(telcall(dir.path(), &env, &["migrate", "down"]));
    assert!(out.status.success(), "{:?}", texts(&out));
    let mut expected = all("applied");
    expected.last_mut().unwrap().0 = "pending".to_owned();
    assert_eq!(status(dir.path(), &env), expected);

    let out = run(telcall(dir.path(), &env, &["migrate", "fresh"]));
    assert!(out.status.success(), "{:?}", texts(&out));
    assert_eq!(status(dir.path(), &env), all("applied"));
}

#[tokio::test]
async fn serve_refuses_pending_migrations_and_starts_with_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let env = with(base_env(&url), "LOG_FORMAT", "json");

    let mut refused = Server::spawn(telcall(dir.path(), &env, &["serve"]), free_port());
    let code = refused.wait_exit(EXIT_DEADLINE).await;
    let output = refused.all_output();
    assert!(!code.success(), "served with pending migrations:\n{output}");
    assert!(output.contains("just migrate"), "{output}");
    assert!(output.contains("--migrate"), "{output}");
    assert!(output.contains("pending migration"), "{output}");
    // Nothing was applied: the status still lists every migration as pending.
    assert_eq!(status(dir.path(), &env), all("pending"));

    let mut server = Server::spawn(
        telcall(dir.path(), &env, &["serve", "--migrate"]),
        free_port(),
    );
    server.wait_ready().await;
    let client = reqwest::Client::new();
    let resp = client.get(server.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let resp = client
        .get(server.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "ok");
    assert_eq!(status(dir.path(), &env), all("applied"));

    server.terminate();
    let code = server.wait_exit(EXIT_DEADLINE).await;
    assert!(code.success(), "{code}\n{}", server.all_output());

    // LOG_FORMAT=json: every stdout line is one JSON object.
    let lines = server.stdout();
    assert!(!lines.is_empty());
    let logs: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(logs.iter().all(Value::is_object));
    let connecting = logs
        .iter()
        .find(|l| l["message"] == "connecting to the database")
        .expect("database log line");
    assert_eq!(connecting["database"], url);
    assert!(logs.iter().any(|l| l["message"] == "telcall listening"));
    assert!(logs.iter().any(|l| l["message"] == "telcall stopped"));
}

#[tokio::test]
async fn a_missing_or_invalid_setting_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let base = base_env(&sqlite_url(dir.path()));
    let mut cases: Vec<(&str, Vec<(String, String)>)> = Vec::new();
    for var in [
        "BOT_TOKEN",
        "BOT_USERNAME",
        "SECRET_KEY",
        "CORS_ALLOW_ORIGINS",
    ] {
        let mut env = base.clone();
        env.retain(|(k, _)| k != var);
        cases.push((var, env));
    }
    cases.push((
        "SECRET_KEY",
        with(base.clone(), "SECRET_KEY", "short-but-secret-value"),
    ));
    cases.push(("PORT", with(base.clone(), "PORT", "eighty")));
    cases.push((
        "COOKIE_SECURE",
        with(base.clone(), "COOKIE_SECURE", "false"),
    ));

    for (var, env) in cases {
        // `telcall` reads PORT from the environment: the invalid-PORT case keeps its own.
        let port_override = env.iter().any(|(k, _)| k == "PORT");
        let mut cmd = telcall(dir.path(), &env, &["serve"]);
        let out = if port_override {
            run(cmd)
        } else {
            cmd.env("PORT", free_port().to_string());
            run(cmd)
        };
        let (stdout, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{var}: {stdout}\n{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{var}: {stderr}");
        assert!(lines[0].contains(var), "{var}: {}", lines[0]);
        assert!(stdout.trim().is_empty(), "{var}: {stdout}");
        for secret in [BOT_TOKEN, SECRET_KEY, "short-but-secret-value"] {
            assert!(!stderr.contains(secret), "{var}: secret printed: {stderr}");
        }
    }
    // Nothing was created.
    assert!(!dir.path().join("ops.db").exists());
}

#[tokio::test]
async fn sigterm_stops_gracefully_with_exit_code_zero_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&sqlite_url(dir.path()));
    let mut server = Server::spawn(
        telcall(dir.path(), &env, &["serve", "--migrate"]),
        free_port(),
    );
    server.wait_ready().await;

    // A request loop keeps requests in flight while the signal arrives.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for path in ["/health", "/api/calls/no-such-call-000000", "/health/ready"] {
        let url = server.url(path);
        let (stop, answered) = (stop.clone(), answered.clone());
        loops.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(resp) => {
                        let _ = resp.bytes().await;
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    // Refused once the listener is closed: stop asking.
                    Err(_) => break,
                }
            }
        }));
    }
    // Let the loop get going: wait until a few requests were answered.
    let deadline = std::time::Instant::now() + EXIT_DEADLINE;
    while answered.load(Ordering::Relaxed) < 10 {
        assert!(std::time::Instant::now() < deadline, "request loop stuck");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    server.terminate();
    let code = server.wait_exit(EXIT_DEADLINE).await;
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    assert_eq!(code.code(), Some(0), "{}", server.all_output());
    let output = server.all_output();
    assert!(output.contains("SIGTERM received"), "{output}");
    assert!(output.contains("telcall stopped"), "{output}");
    // The port is released.
    assert!(
        reqwest::get(server.url("/health")).await.is_err(),
        "still answering after exit"
    );
}

#[tokio::test]
async fn dev_mode_starts_with_zero_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(telcall(dir.path(), &[], &["serve", "--dev"]), free_port());
    server.wait_ready().await;
    assert!(
        dir.path().join("telcall.db").exists(),
        "telcall.db not created in the working directory"
    );
    let resp = reqwest::get(server.url("/health/ready")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = reqwest::get(server.url("/")).await.unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "ok");

    server.terminate();
    let code = server.wait_exit(EXIT_DEADLINE).await;
    assert!(code.success(), "{code}");
    let output = server.all_output();
    assert!(output.contains("NOT FOR PRODUCTION"), "{output}");
    assert!(
        !output.contains(telcall_server::config::DEV_BOT_TOKEN),
        "{output}"
    );
}

#[tokio::test]
async fn a_database_password_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 9: connecting fails, and both the log line and the error must
    // show the URL without its password.
    let url = "postgres://telcall:secretpw@127.0.0.1:9/telcall";
    let env = with(
        with(base_env(url), "DB_CONNECT_TIMEOUT_SECONDS", "1"),
        "LOG_FORMAT",
        "json",
    );
    let mut server = Server::spawn(telcall(dir.path(), &env, &["serve"]), free_port());
    let code = server.wait_exit(EXIT_DEADLINE).await;
    let output = server.all_output();
    assert!(!code.success(), "{output}");
    assert!(
        output.contains("cannot connect to the database"),
        "{output}"
    );
    assert!(
        output.contains("postgres://telcall:***@127.0.0.1:9/telcall"),
        "{output}"
    );
    assert!(!output.contains("secretpw"), "{output}");
    for line in server.stdout() {
        serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }

    for action in ["status", "up"] {
        let out = run(telcall(dir.path(), &env, &["migrate", action]));
        let (stdout, stderr) = texts(&out);
        assert!(!out.status.success(), "{action}");
        assert!(!stdout.contains("secretpw"), "{action}: {stdout}");
        assert!(!stderr.contains("secretpw"), "{action}: {stderr}");
    }
}

/// Without DATABASE_URL, `telcall migrate` refuses (naming the variable) and touches no
/// file; `--dev` opts into the development database in the working directory.
#[test]
fn migrate_without_database_url_refuses_unless_dev() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env("unused");
    env.retain(|(k, _)| k != "DATABASE_URL");
    for action in ["fresh", "up", "down", "status"] {
        let out = run(telcall(dir.path(), &env, &["migrate", action]));
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{action}: {stderr}");
        assert!(stderr.contains("DATABASE_URL"), "{action}: {stderr}");
        assert!(stderr.contains("--dev"), "{action}: {stderr}");
        assert!(!dir.path().join("telcall.db").exists(), "{action}");
    }
    let out = run(telcall(dir.path(), &env, &["migrate", "up", "--dev"]));
    assert!(out.status.success(), "{:?}", texts(&out));
    assert!(dir.path().join("telcall.db").exists());
}

/// Without DATABASE_URL, `telcall import-legacy` refuses (naming the variable) before it
/// opens the source or creates a development database in the working directory.
#[test]
fn import_legacy_without_database_url_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env("unused");
    env.retain(|(k, _)| k != "DATABASE_URL");
    let source = format!("sqlite://{}/legacy.db", dir.path().display());
    for extra in [&[][..], &["--dry-run"][..]] {
        let mut args = vec!["import-legacy", "--from", source.as_str()];
        args.extend_from_slice(extra);
        let out = run(telcall(dir.path(), &env, &args));
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("DATABASE_URL"), "{args:?}: {stderr}");
        assert!(!dir.path().join("telcall.db").exists(), "{args:?}");
    }
}

/// A storage error that is not an outage (here a table gone from under the server) is a
/// bug: 500 "Internal server error" with nothing of the cause in the body, logged exactly
/// once, at ERROR, with its cause. (An unreachable database stays 503: see
/// `ops_postgres::database_outage_answers_503_and_the_pool_recovers`.)
#[tokio::test]
async fn an_unexpected_storage_error_is_a_500_logged_once_with_its_cause() {
    use sea_orm::ConnectionTrait as _;
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let env = with(
        with(base_env(&url), "LOG_FORMAT", "json"),
        "AUTH_TOKEN_IN_BODY",
        "true",
    );
    let mut server = Server::spawn(
        telcall(dir.path(), &env, &["serve", "--migrate"]),
        free_port(),
    );
    server.wait_ready().await;
    let client = reqwest::Client::new();
    let init_data = crate::common::init_data_for(
        BOT_TOKEN,
        &json!({"id": 5150, "first_name": "Ada"}),
        chrono::Utc::now().timestamp(),
    );
    let signed_in: Value = client
        .post(server.url("/auth/telegram"))
        .json(&json!({ "initData": init_data }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = signed_in["access_token"].as_str().unwrap().to_owned();

    let store = telcall_persistence::SeaStore::connect(&url, &Default::default())
        .await
        .unwrap();
    store
        .connection()
        .execute_unprepared("DROP TABLE call_stats")
        .await
        .unwrap();
    store.close().await.unwrap();

    let resp = client
        .get(server.url("/api/call-stats/"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let body = resp.text().await.unwrap();
    assert_eq!(body, r#"{"detail":"Internal server error"}"#);

    server.terminate();
    let code = server.wait_exit(EXIT_DEADLINE).await;
    assert!(code.success(), "{}", server.all_output());
    let errors: Vec<Value> = server
        .stdout()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["level"] == "ERROR")
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["message"], "internal error");
    let cause = errors[0]["error"].as_str().unwrap();
    assert!(cause.contains("no such table"), "{cause}");
}

/// `telcall bot info|set-webhook|delete-webhook` call the Bot API (here a local stand-in),
/// print what it answered, send the webhook secret with `setWebhook`, and never print the
/// token or the secret, not even when Telegram refuses.
#[tokio::test]
async fn the_bot_commands_print_what_telegram_answered_and_never_the_token() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const WEBHOOK_SECRET: &str = "ops-webhook-secret-never-printed";
    let api = MockServer::start().await;
    let answer = |result: Value| {
        ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": result}))
    };
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/getMe")))
        .respond_with(answer(
            json!({"id": 123_456_789, "is_bot": true, "username": "telcall_ops_bot"}),
        ))
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/getWebhookInfo")))
        .respond_with(answer(json!({"url": "https://calls.example.com/api/telegram/webhook", "pending_update_count": 3})))
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/setWebhook")))
        .respond_with(answer(json!(true)))
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/deleteWebhook")))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(
                json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
            ),
        )
        .mount(&api)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let env = with(
        with(
            base_env(&sqlite_url(dir.path())),
            "TELEGRAM_API_BASE",
            &api.uri(),
        ),
        "BOT_WEBHOOK_SECRET",
        WEBHOOK_SECRET,
    );
    let bot = |args: &'static [&'static str]| {
        let (dir, env) = (dir.path().to_owned(), env.clone());
        tokio::task::spawn_blocking(move || {
            let mut full = vec!["bot"];
            full.extend_from_slice(args);
            let out = run(telcall(&dir, &env, &full));
            let (stdout, stderr) = texts(&out);
            for secret in [BOT_TOKEN, WEBHOOK_SECRET] {
                assert!(
                    !stdout.contains(secret) && !stderr.contains(secret),
                    "{args:?} printed a secret: {stdout}{stderr}"
                );
            }
            (out.status.code(), stdout, stderr)
        })
    };

    let (code, stdout, stderr) = bot(&["info"]).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["me"]["username"], "telcall_ops_bot");
    assert_eq!(printed["webhook"]["pending_update_count"], 3);

    let (code, stdout, stderr) = bot(&[
        "set-webhook",
        "https://calls.example.com/api/telegram/webhook",
    ])
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["setWebhook"], true);
    let requests = api.received_requests().await.unwrap();
    let registration: Value = requests
        .iter()
        .find(|r| r.url.path().ends_with("/setWebhook"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .expect("setWebhook was called");
    assert_eq!(
        registration["url"],
        "https://calls.example.com/api/telegram/webhook"
    );
    assert_eq!(registration["secret_token"], WEBHOOK_SECRET);
    assert_eq!(
        registration["allowed_updates"],
        json!(["message", "inline_query"])
    );

    // A URL that is not HTTPS is refused before Telegram is asked.
    let before = api.received_requests().await.unwrap().len();
    let (code, _, stderr) = bot(&["set-webhook", "http://calls.example.com/hook"])
        .await
        .unwrap();
    assert_ne!(code, Some(0));
    assert!(stderr.contains("https://"), "{stderr}");
    assert_eq!(api.received_requests().await.unwrap().len(), before);

    // Telegram refusing is a failure that says what Telegram said.
    let (code, _, stderr) = bot(&["delete-webhook"]).await.unwrap();
    assert_ne!(code, Some(0));
    assert!(stderr.contains("Unauthorized"), "{stderr}");
}
