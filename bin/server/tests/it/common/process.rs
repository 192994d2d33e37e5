//! Harness for tests of the real `telcall` binary: runs it with an exact environment in a
//! scratch working directory, collects its output line by line, waits (with a bounded
//! deadline) for it to answer, and stops it with a signal.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, missing_docs)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The bot token the processes run with (tests assert it is never printed).
pub const BOT_TOKEN: &str = "123456789:OPS-bot-token-never-printed";
/// The JWT key the processes run with (tests assert it is never printed).
pub const SECRET_KEY: &str = "ops-test-secret-key-never-printed-0123456789";
/// How long a process may take to start answering, or to exit once told to.
pub const PROCESS_DEADLINE: Duration = Duration::from_secs(60);
/// Interval between readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The production settings every process needs, plus `DATABASE_URL`.
pub fn base_env(database_url: &str) -> Vec<(String, String)> {
    [
        ("BOT_TOKEN", BOT_TOKEN),
        ("BOT_USERNAME", "telcall_ops_bot"),
        ("SECRET_KEY", SECRET_KEY),
        ("CORS_ALLOW_ORIGINS", "https://app.example.com"),
        ("DATABASE_URL", database_url),
        ("HOST", "127.0.0.1"),
        // Nothing listens here; no test calls the Bot API.
        ("TELEGRAM_API_BASE", "http://127.0.0.1:9"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// A `telcall` command with exactly `env` (nothing inherited but `PATH`) run in `dir`.
pub fn telcall(dir: &Path, env: &[(String, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_telcall"));
    cmd.args(args).current_dir(dir).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs a short-lived command to completion and returns its output.
pub fn run(mut cmd: Command) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.output().unwrap()
}

/// stdout and stderr of `output`, as text.
pub fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A port that was free a moment ago (bind to 0, read, drop).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `telcall serve`. Killed (SIGKILL) on drop if still running.
pub struct Server {
    child: Child,
    pub port: u16,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    stream: impl Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    })
}

impl Server {
    /// Spawns `cmd` (whose `PORT` must be `port`) with its output collected.
    pub fn spawn(mut cmd: Command, port: u16) -> Self {
        cmd.env("PORT", port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Self {
            child,
            port,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines printed so far on stdout.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Lines printed so far on stderr.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Everything printed so far, stdout then stderr.
    pub fn all_output(&self) -> String {
        let mut all = self.stdout();
        all.extend(self.stderr());
        all.join("\n")
    }

    /// Waits until `GET /health` answers 200, or panics with the output when the process
    /// exits or the deadline passes.
    pub async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("telcall exited early ({status}):\n{}", self.all_output());
            }
            if let Ok(resp) = client.get(self.url("/health")).send().await
                && resp.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "telcall did not answer within {PROCESS_DEADLINE:?}:\n{}",
                self.all_output()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Kills the process at once (SIGKILL: nothing of its shutdown runs) and waits for it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM (through `kill`, as an operator or a supervisor would).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits (bounded) for the process to exit and for its output to be read to the end.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "telcall did not exit within {within:?}:\n{}",
                self.all_output()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `(state, name)` of each line `telcall migrate status` prints.
pub fn migration_states(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some(state @ ("applied" | "pending")), Some(name), None) => {
                    Some((state.to_owned(), name.to_owned()))
                }
                _ => None,
            }
        })
        .collect()
}

/// Every known migration, each in `state`, as [`migration_states`] reports them.
pub fn all(state: &str) -> Vec<(String, String)> {
    telcall_migration::migration_names()
        .into_iter()
        .map(|name| (state.to_owned(), name))
        .collect()
}
