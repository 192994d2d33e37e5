//! Smoke runs of every load mode against the real telcall app (SQLite, random port) and
//! the reference relay: small counts, about a second of load each, asserting correctness
//! only (every offer answered, no errors, every socket closed), never speed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::Command;

use serde_json::Value;
use telcall_server::config::Source;
use telcall_server::{Application, BuildOptions, Settings, ShutdownHandle};

const BOT_TOKEN: &str = "123456789:SMOKE-bot-token-for-the-load-generator";
const WEBHOOK_SECRET: &str = "smoke-webhook-secret";

struct App {
    port: u16,
    state: telcall_server::state::AppState,
    shutdown: ShutdownHandle,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn spawn_app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut vars: HashMap<String, String> = [
        ("BOT_TOKEN", BOT_TOKEN),
        ("BOT_USERNAME", "telcall_smoke_bot"),
        ("SECRET_KEY", "smoke-test-secret-key-0123456789abcdefghijkl"),
        ("CORS_ALLOW_ORIGINS", "https://app.example.com"),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("TELEGRAM_API_BASE", "http://127.0.0.1:9"),
        ("BOT_WEBHOOK_SECRET", WEBHOOK_SECRET),
        // The load-test profile: sign-in and call creation keep their per-IP limits.
        ("RATE_LIMIT_DEFAULT_PER_MINUTE", "1000000000"),
        ("WS_MESSAGES_PER_SECOND", "1000000"),
        ("WS_MESSAGE_BURST", "1000000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.insert(
        "DATABASE_URL".to_owned(),
        format!("sqlite://{}/telcall.db?mode=rwc", dir.path().display()),
    );
    let settings = Settings::from_source(&Source::from_map(vars), false).unwrap();
    let app = Application::build(
        settings,
        BuildOptions {
            migrate: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    App {
        port: app.port(),
        state: app.state().clone(),
        shutdown: app.shutdown_handle(),
        server: tokio::spawn(app.run_until_stopped()),
        _dir: dir,
    }
}

/// Runs the generator against `app` and returns its JSON result line.
async fn loadgen(app: &App, args: &[&str]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_telcall-loadgen"));
    cmd.args(args)
        .args(["--target", &format!("http://127.0.0.1:{}", app.port)])
        .args(["--server-pid", &std::process::id().to_string()])
        .env("BOT_TOKEN", BOT_TOKEN)
        .env("BOT_WEBHOOK_SECRET", WEBHOOK_SECRET);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON result line; stdout:\n{stdout}\nstderr:\n{stderr}"));
    let result: Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        result["errors"], 0,
        "errors reported:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert_eq!(result["ok"], true);
    let servers: Vec<&str> = result["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["server"].as_str().unwrap())
        .collect();
    assert_eq!(servers, ["telcall", "reference"], "{line}");
    result
}

/// This process's nice value (`/proc/self/stat`, field 19).
fn own_nice() -> i64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = stat.rsplit(')').next().unwrap();
    after_name
        .split_whitespace()
        .nth(16)
        .unwrap()
        .parse()
        .unwrap()
}

fn metric(result: &Value, server: usize, key: &str) -> f64 {
    result["runs"][server]["metrics"][key]
        .as_f64()
        .unwrap_or_else(|| panic!("no {key} in {result}"))
}

async fn stop(app: App) {
    let stats = app.state.hub.stats();
    assert_eq!(stats.connections, 0, "sockets left open: {stats:?}");
    app.shutdown.shutdown();
    app.server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mode_reads_health_and_calls_without_errors() {
    let app = spawn_app().await;
    let r = loadgen(&app, &["http", "--connections", "4", "--duration", "1"]).await;
    for server in 0..2 {
        assert!(metric(&r, server, "health_requests") > 0.0);
        assert!(metric(&r, server, "call_read_requests") > 0.0);
    }
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mode_can_run_the_generator_at_a_lower_priority() {
    let app = spawn_app().await;
    let before = own_nice();
    let r = loadgen(
        &app,
        &[
            "http",
            "--connections",
            "4",
            "--duration",
            "1",
            "--paths",
            "health",
            "--yield-cpu",
        ],
    )
    .await;
    for server in 0..2 {
        assert!(metric(&r, server, "health_requests") > 0.0);
    }
    assert!(
        r["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.contains("nice 19"))),
        "{r}"
    );
    // This process (the server under test) keeps its own priority.
    assert_eq!(own_nice(), before);
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_mode_gets_every_offer_answered() {
    let app = spawn_app().await;
    let r = loadgen(
        &app,
        &["relay", "--rooms", "3", "--peers", "3", "--duration", "1"],
    )
    .await;
    for server in 0..2 {
        let sent = metric(&r, server, "offers_sent");
        assert!(sent > 0.0, "{r}");
        assert_eq!(sent, metric(&r, server, "offers_answered"), "{r}");
    }
    assert!(app.state.hub.stats().messages_relayed > 0);
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_mode_open_loop_gets_every_offer_answered() {
    let app = spawn_app().await;
    let r = loadgen(
        &app,
        &[
            "relay",
            "--rooms",
            "2",
            "--peers",
            "2",
            "--rate",
            "200",
            "--duration",
            "1",
        ],
    )
    .await;
    for server in 0..2 {
        let sent = metric(&r, server, "offers_sent");
        assert!(sent > 0.0, "{r}");
        assert_eq!(sent, metric(&r, server, "offers_answered"), "{r}");
    }
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_mode_holds_and_closes_every_socket() {
    let app = spawn_app().await;
    let r = loadgen(
        &app,
        &[
            "idle",
            "--sockets",
            "60",
            "--room-size",
            "6",
            "--hold",
            "0.5",
        ],
    )
    .await;
    for server in 0..2 {
        assert_eq!(metric(&r, server, "sockets"), 60.0, "{r}");
        assert!(metric(&r, server, "rss_full_mib") > 0.0, "{r}");
    }
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_mode_joins_and_leaves_without_errors() {
    let app = spawn_app().await;
    let r = loadgen(
        &app,
        &[
            "churn",
            "--lanes",
            "6",
            "--room-size",
            "3",
            "--duration",
            "1",
        ],
    )
    .await;
    for server in 0..2 {
        assert!(metric(&r, server, "cycles") > 0.0, "{r}");
    }
    stop(app).await;
}

#[test]
fn non_loopback_targets_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_telcall-loadgen"))
        .args([
            "http",
            "--target",
            "http://10.0.0.1:8000",
            "--bot-token",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
}
