//! Server processes for a run: a freshly started telcall (release binary, the load-test
//! settings profile, a fresh database) and the reference relay (this binary's `reference`
//! subcommand), plus reading a process's resident memory from `/proc/<pid>/status`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};

use crate::net::{HttpConn, free_port};
use crate::progress;

/// How long a freshly started server may take to answer `/health`.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a server may take to stop after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// The settings profile telcall runs under for load tests, beyond bot token, keys, host,
/// port and database. Sign-in and call creation keep their production per-IP limits (every
/// simulated user has its own source address); the general per-IP request limit and the
/// per-connection signaling rate are raised, because a load test drives thousands of
/// requests per second through each of a few dozen connections; and the server-wide
/// connection cap is raised to what one process may open here (20,000 files).
pub const PROFILE: [(&str, &str); 4] = [
    ("RATE_LIMIT_DEFAULT_PER_MINUTE", "1000000000"),
    ("WS_MESSAGES_PER_SECOND", "1000000"),
    ("WS_MESSAGE_BURST", "1000000"),
    ("MAX_CONNECTIONS", "19800"),
];

/// A server process this run started.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process id.
    pub pid: u32,
    /// Bot token (telcall).
    pub bot_token: String,
    /// Webhook secret (telcall).
    pub webhook_secret: String,
    dir: Option<tempfile::TempDir>,
}

/// What a telcall process is started with.
pub struct TelcallOptions<'a> {
    /// The `telcall` binary.
    pub binary: &'a Path,
    /// `DATABASE_URL`; a fresh SQLite file in a temporary directory when `None`.
    pub database_url: Option<&'a str>,
    /// `TELEGRAM_API_BASE` (the generator's own Bot API stand-in).
    pub bot_api_base: &'a str,
    /// For one of several instances of a deployment: the settings they share.
    pub cluster: Option<&'a ClusterSettings>,
}

/// What the instances of one deployment share: their secrets and their Redis.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `BOT_TOKEN`.
    pub bot_token: String,
    /// `SECRET_KEY`.
    pub secret_key: String,
    /// `BOT_WEBHOOK_SECRET`.
    pub webhook_secret: String,
    /// `REDIS_URL`.
    pub redis_url: String,
    /// `REDIS_KEY_PREFIX`, fresh for the run.
    pub key_prefix: String,
}

impl ClusterSettings {
    /// Fresh secrets and key prefix for a deployment on `redis_url`.
    pub fn new(redis_url: &str) -> Self {
        Self {
            bot_token: format!(
                "{}:{}",
                100_000_000 + rand::random::<u32>() % 800_000_000,
                random_token(35)
            ),
            secret_key: random_token(48),
            webhook_secret: random_token(32),
            redis_url: redis_url.to_owned(),
            key_prefix: format!("telcall-loadgen:{}:", random_token(12)),
        }
    }
}

fn random_token(len: usize) -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

impl Server {
    /// Starts telcall with the load-test profile and waits until `/health` answers.
    pub async fn telcall(opts: &TelcallOptions<'_>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let bot_token = format!(
            "{}:{}",
            100_000_000 + rand::random::<u32>() % 800_000_000,
            random_token(35)
        );
        let mut webhook_secret = random_token(32);
        let mut secret_key = random_token(48);
        let mut bot_token = bot_token;
        if let Some(c) = opts.cluster {
            bot_token = c.bot_token.clone();
            secret_key = c.secret_key.clone();
            webhook_secret = c.webhook_secret.clone();
        }
        let db = match opts.database_url {
            Some(u) => u.to_owned(),
            None => format!("sqlite://{}/telcall.db?mode=rwc", dir.path().display()),
        };
        let log = std::fs::File::create(dir.path().join("telcall.log"))?;
        let mut cmd = Command::new(opts.binary);
        cmd.arg("serve")
            .arg("--migrate")
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", &db)
            .env("BOT_TOKEN", &bot_token)
            .env("BOT_USERNAME", "telcall_loadtest_bot")
            .env("SECRET_KEY", &secret_key)
            .env("CORS_ALLOW_ORIGINS", "https://loadtest.invalid")
            .env("TELEGRAM_API_BASE", opts.bot_api_base)
            .env("BOT_WEBHOOK_SECRET", &webhook_secret)
            .envs(PROFILE)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        if let Some(filter) = std::env::var_os("RUST_LOG") {
            cmd.env("RUST_LOG", filter);
        }
        if let Some(c) = opts.cluster {
            cmd.env("REDIS_URL", &c.redis_url)
                .env("REDIS_KEY_PREFIX", &c.key_prefix);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", opts.binary.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            pid,
            bot_token,
            webhook_secret,
            dir: Some(dir),
        };
        if let Err(e) = server.wait_healthy().await {
            let log = server.log_tail();
            bail!("{e:#}; the server's log ends with:\n{log}");
        }
        progress(&format!("telcall started (pid {pid}, {})", server.addr));
        Ok(server)
    }

    /// Starts the reference relay (this binary's `reference` subcommand).
    pub async fn reference() -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["reference", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the reference relay")?;
        let pid = child.id().context("the reference relay exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(START_DEADLINE, lines.next_line())
            .await
            .context("the reference relay did not start")??
            .context("the reference relay exited")?;
        let addr: SocketAddr = line
            .strip_prefix("listening ")
            .context("unexpected first line from the reference relay")?
            .trim()
            .parse()?;
        let mut server = Self {
            child,
            addr,
            pid,
            bot_token: String::new(),
            webhook_secret: String::new(),
            dir: None,
        };
        server.wait_healthy().await?;
        Ok(server)
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited during start-up ({status})");
            }
            if let Ok(mut c) = HttpConn::open(std::net::Ipv4Addr::LOCALHOST, self.addr).await
                && let Ok(r) = c.send("GET", "/health", &[], None).await
                && r.status.is_success()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the server did not answer /health within {START_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let Some(dir) = &self.dir else {
            return String::new();
        };
        let text = std::fs::read_to_string(dir.path().join("telcall.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the process: SIGTERM (graceful), then a kill after a deadline.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        match tokio::time::timeout(STOP_DEADLINE, self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                progress("the server did not stop in time; killing it");
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

/// Resident memory of process `pid` in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in {}", path.display()))
}

/// This process's open-file limit (soft), from `/proc/self/limits`.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    text.lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
}

/// Lowers the scheduling priority of every thread of this process to `nice` (Linux keeps
/// one per thread; threads started later inherit it from the thread that starts them).
/// Runs `renice`, which needs no privilege to lower a priority.
pub fn lower_own_priority(nice: i32) -> anyhow::Result<()> {
    let tids: Vec<String> = std::fs::read_dir("/proc/self/task")
        .context("cannot list this process's threads")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let status = std::process::Command::new("renice")
        .args(["-n", &nice.to_string(), "-p"])
        .args(&tids)
        .stdout(Stdio::null())
        .status()
        .context("cannot run renice")?;
    anyhow::ensure!(status.success(), "renice failed: {status}");
    crate::progress(&format!(
        "generator now at nice {nice} ({} threads)",
        tids.len()
    ));
    Ok(())
}
