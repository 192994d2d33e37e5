//! Shared integration-test harness: boots the real app on 127.0.0.1:0 with a fresh SQLite
//! database and a manual clock, and offers typed helpers for signing in and calling the API.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use serde_json::{Value, json};
use telcall_domain::ManualClock;
use telcall_server::config::Source;
use telcall_server::{Application, BuildOptions, Settings, ShutdownHandle};

/// The bot token every test app uses.
pub const BOT_TOKEN: &str = "123456789:TEST-bot-token-for-integration-tests";
/// The JWT key every test app uses.
pub const SECRET_KEY: &str = "integration-test-secret-key-0123456789abcdef";
/// An origin the test apps allow.
pub const ALLOWED_ORIGIN: &str = "https://app.example.com";

/// A running app.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    /// The `METRICS_ADDR` listener, when the test set one.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub clock: Arc<ManualClock>,
    pub state: telcall_server::state::AppState,
    pub shutdown: ShutdownHandle,
    pub client: reqwest::Client,
    pub server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// The internal id, as the API sent it.
    pub id: i64,
    pub telegram_id: i64,
    pub token: String,
    pub body: Value,
}

impl TestUser {
    /// The internal id, as the domain and storage take it.
    pub fn user_id(&self) -> telcall_domain::UserId {
        telcall_domain::UserId::new(self.id)
    }
}

/// Builds a [`TestApp`] with extra environment settings.
pub struct TestAppBuilder {
    vars: HashMap<String, String>,
    database_url: Option<String>,
    clock: Option<(Arc<ManualClock>, Arc<dyn telcall_domain::Clock>)>,
}

impl Default for TestAppBuilder {
    fn default() -> Self {
        let mut vars = HashMap::new();
        for (k, v) in [
            ("BOT_TOKEN", BOT_TOKEN),
            ("BOT_USERNAME", "telcall_test_bot"),
            ("SECRET_KEY", SECRET_KEY),
            ("CORS_ALLOW_ORIGINS", ALLOWED_ORIGIN),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            // Generous limits so tests that sign in many users are not throttled; rate
            // limit tests set their own.
            ("RATE_LIMIT_AUTH_PER_MINUTE", "10000"),
            ("RATE_LIMIT_AUTH_PER_HOUR", "10000"),
            ("RATE_LIMIT_CALLS_PER_MINUTE", "10000"),
            ("RATE_LIMIT_CALLS_PER_HOUR", "10000"),
            ("RATE_LIMIT_DEFAULT_PER_MINUTE", "100000"),
            // Nothing listens here: friend-call notifications fail fast unless a test
            // points TELEGRAM_API_BASE at its own fake Bot API.
            ("TELEGRAM_API_BASE", "http://127.0.0.1:9"),
        ] {
            vars.insert(k.to_owned(), v.to_owned());
        }
        Self {
            vars,
            database_url: None,
            clock: None,
        }
    }
}

impl TestAppBuilder {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.vars.insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn without(mut self, key: &str) -> Self {
        self.vars.remove(key);
        self
    }

    pub fn database_url(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_owned());
        self
    }

    /// The app reads time from `app_clock` (which may wrap `manual`, the clock the test
    /// moves as `TestApp::clock`).
    pub fn clock(
        mut self,
        manual: Arc<ManualClock>,
        app_clock: Arc<dyn telcall_domain::Clock>,
    ) -> Self {
        self.clock = Some((manual, app_clock));
        self
    }

    pub async fn spawn(self) -> TestApp {
        init_test_logs();
        let dir = tempfile::tempdir().unwrap();
        let mut vars = self.vars;
        let url = self
            .database_url
            .unwrap_or_else(|| format!("sqlite://{}/telcall.db?mode=rwc", dir.path().display()));
        vars.insert("DATABASE_URL".to_owned(), url);
        let settings = Settings::from_source(&Source::from_map(vars), false).unwrap();
        let (clock, app_clock) = self.clock.unwrap_or_else(|| {
            let manual = Arc::new(ManualClock::new(Utc::now()));
            (manual.clone(), manual)
        });
        let app = Application::build(
            settings,
            BuildOptions {
                migrate: true,
                clock: app_clock,
            },
        )
        .await
        .unwrap();
        let port = app.port();
        let metrics_addr = app.metrics_addr();
        let state = app.state().clone();
        let shutdown = app.shutdown_handle();
        let server = tokio::spawn(app.run_until_stopped());
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            port,
            metrics_addr,
            clock,
            state,
            shutdown,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            server,
            _dir: dir,
        }
    }
}

/// Installs a log subscriber once when `TEST_LOG` is set.
pub fn init_test_logs() {
    if std::env::var("TEST_LOG").is_ok() {
        telcall_server::telemetry::init(telcall_server::config::LogFormat::Text, std::io::stderr);
    }
}

/// Boots an app with the default test settings.
pub async fn spawn_app() -> TestApp {
    TestAppBuilder::default().spawn().await
}

/// initData for a Telegram user, signed with `bot_token`, dated `auth_date`.
pub fn init_data_for(bot_token: &str, user: &Value, auth_date: i64) -> String {
    let user_json = user.to_string();
    let auth_date = auth_date.to_string();
    telcall_auth::sign_init_data(
        &telcall_auth::SecretString::from(bot_token.to_owned()),
        &[
            ("query_id", "AAHdF6IQAAAAAN0XohDhrOrc"),
            ("user", &user_json),
            ("auth_date", &auth_date),
        ],
    )
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Signs in the Telegram user `telegram_id` and returns its session.
    pub async fn sign_in(&self, telegram_id: i64, first_name: &str) -> TestUser {
        let user = json!({
            "id": telegram_id,
            "first_name": first_name,
            "last_name": "Tester",
            "username": format!("user_{telegram_id}"),
        });
        self.sign_in_as(&user).await
    }

    /// Signs in with an explicit Telegram `user` object.
    pub async fn sign_in_as(&self, user: &Value) -> TestUser {
        let init = init_data_for(BOT_TOKEN, user, Utc::now().timestamp());
        let resp = self
            .client
            .post(self.url("/auth/telegram"))
            .json(&json!({ "initData": init }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "sign-in failed");
        let token = resp
            .cookies()
            .find(|c| c.name() == "access_token")
            .map(|c| c.value().to_owned())
            .expect("session cookie");
        let body: Value = resp.json().await.unwrap();
        TestUser {
            id: body["user"]["id"].as_i64().unwrap(),
            telegram_id: user["id"].as_i64().unwrap(),
            token,
            body,
        }
    }

    pub fn get(&self, path: &str, user: &TestUser) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(&user.token)
    }

    pub fn post(&self, path: &str, user: &TestUser, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .bearer_auth(&user.token)
            .json(body)
    }

    /// Creates a call as `user` and returns its JSON.
    pub async fn create_call(&self, user: &TestUser) -> Value {
        let resp = self
            .post("/api/calls/", user, &json!({ "title": "Standup" }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        resp.json().await.unwrap()
    }

    /// Links two users as friends (what sharing a call does), at the app clock's time.
    pub async fn befriend(&self, a: &TestUser, b: &TestUser) {
        self.state
            .repo
            .link_friends(&[a.user_id(), b.user_id()], self.clock_now())
            .await
            .unwrap();
    }

    /// The app's (manual) clock.
    pub fn clock_now(&self) -> chrono::DateTime<Utc> {
        use telcall_domain::Clock;
        self.clock.now()
    }

    /// A WebSocket ticket for `user`.
    pub async fn ws_ticket(&self, user: &TestUser) -> String {
        let resp = self.get("/auth/ws-token", user).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    /// The WebSocket URL of a call.
    pub fn ws_url(&self, call_id: &str) -> String {
        format!("ws://127.0.0.1:{}/ws/calls/{call_id}", self.port)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(self) {
        self.shutdown.shutdown();
        self.server.await.unwrap().unwrap();
    }
}

/// The `detail` of a JSON error body.
pub async fn detail(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.unwrap();
    body["detail"].as_str().unwrap().to_owned()
}

/// The `Cookie` header value carrying `token` as the session cookie.
pub fn session_cookie(token: &str) -> String {
    format!("access_token={token}")
}

impl TestApp {
    /// A client whose connections leave from `local_ip` (any 127.x.y.z reaches the app on
    /// Linux), for per-IP rate-limit tests.
    pub fn client_from(&self, local_ip: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(local_ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    }

    /// A raw TCP connection to the app leaving from `local_ip`.
    pub async fn connect_from(&self, local_ip: &str) -> tokio::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::new(local_ip.parse().unwrap(), 0))
            .unwrap();
        socket
            .connect(std::net::SocketAddr::from(([127, 0, 0, 1], self.port)))
            .await
            .unwrap()
    }

    /// `POST /auth/telegram` with this raw initData, as the Mini App sends it.
    pub async fn post_init_data(&self, init_data: &str) -> reqwest::Response {
        self.client
            .post(self.url("/auth/telegram"))
            .json(&json!({ "initData": init_data }))
            .send()
            .await
            .unwrap()
    }
}

pub mod cluster;
pub mod pg;
pub mod process;
pub mod ws;
