//! `telcall-loadgen`: drives a telcall server over loopback (sign-ins, calls, HTTP reads,
//! signaling relay, idle sockets, join/leave churn, bot webhook updates) and the same load
//! against a minimal reference relay, and reports each figure as a ratio to the reference.

mod fixture;
mod modes;
mod net;
mod plot;
mod procs;
mod reference;
mod report;
mod suite;
mod ws;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use crate::fixture::{Kind, Target};
use crate::net::SourceIps;
use crate::procs::{Server, TelcallOptions};
use crate::report::{Report, ServerRun};

/// Upper bound on any measurement time.
const MAX_DURATION_S: f64 = 300.0;
/// Upper bound on sockets held by one run (the machine allows 20,000 open files a process).
const MAX_SOCKETS: usize = 19_500;
/// Upper bound on concurrent HTTP connections or lanes.
const MAX_CONNECTIONS: usize = 2_000;
/// The generator's nice value with `--yield-cpu`.
const YIELD_NICE: i32 = 19;
/// A whole run (setup, every server, teardown) is stopped after this long.
const RUN_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// Prints a progress line on stderr.
pub fn progress(line: &str) {
    eprintln!("[loadgen] {line}");
}

#[derive(Parser)]
#[command(
    name = "telcall-loadgen",
    version,
    about = "Load generator for telcall (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// GET /health and authenticated GET /api/calls/{id} over keep-alive connections.
    Http {
        #[command(flatten)]
        common: Common,
        /// Concurrent connections.
        #[arg(long, default_value_t = 50)]
        connections: usize,
        /// Paths to measure.
        #[arg(long, value_delimiter = ',', default_value = "health,call")]
        paths: Vec<modes::http::Path>,
        /// Also run `pgbench -S` with as many clients against this PostgreSQL server.
        #[arg(long)]
        pgbench: Option<String>,
    },
    /// Signaling relay: rooms × peers exchanging offers and answers.
    Relay {
        #[command(flatten)]
        common: Common,
        /// Rooms.
        #[arg(long, default_value_t = 50)]
        rooms: usize,
        /// Peers per room.
        #[arg(long, default_value_t = 2)]
        peers: usize,
        /// Offers in flight per peer (closed loop).
        #[arg(long, default_value_t = 1)]
        window: usize,
        /// Open loop: total offers per second instead of a closed loop.
        #[arg(long)]
        rate: Option<f64>,
        /// Filler bytes in each offer's payload.
        #[arg(long, default_value_t = 256)]
        payload: usize,
    },
    /// Hold N idle sockets; join rate while filling and server RSS per socket.
    Idle {
        #[command(flatten)]
        common: Common,
        /// Sockets to hold.
        #[arg(long, default_value_t = 5000)]
        sockets: usize,
        /// Sockets per call.
        #[arg(long, default_value_t = 25)]
        room_size: usize,
        /// Handshakes in flight while filling.
        #[arg(long, default_value_t = 128)]
        concurrency: usize,
        /// Seconds to hold the full set before reading memory.
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
    },
    /// Join and leave calls as fast as possible.
    Churn {
        #[command(flatten)]
        common: Common,
        /// Concurrent lanes.
        #[arg(long, default_value_t = 50)]
        lanes: usize,
        /// Lanes per call.
        #[arg(long, default_value_t = 5)]
        room_size: usize,
    },
    /// Telegram updates posted to POST /api/telegram/webhook.
    Webhook {
        #[command(flatten)]
        common: Common,
        /// Concurrent connections.
        #[arg(long, default_value_t = 50)]
        connections: usize,
    },
    /// The standard set against freshly started servers; writes tables, JSON and plots.
    Suite(suite::SuiteArgs),
    /// Run the minimal reference relay (prints `listening <addr>` first).
    Reference {
        /// Port on 127.0.0.1 (0 picks one).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

/// Which servers a mode runs against.
#[derive(Args, Clone)]
pub struct Common {
    /// A running telcall (loopback only), e.g. http://127.0.0.1:8000.
    #[arg(long, conflicts_with = "server")]
    target: Option<String>,
    /// A telcall binary to start fresh for this run (e.g. target/release/telcall).
    #[arg(long)]
    server: Option<PathBuf>,
    /// DATABASE_URL for the started server (default: a fresh SQLite file).
    #[arg(long, requires = "server")]
    database_url: Option<String>,
    /// Start this many instances of one deployment (sharing --database-url, which must
    /// then be PostgreSQL, and --redis-url); the relay mode spreads each room's peers over
    /// them, so that with 2 instances and 2 peers per room every signal crosses instances.
    #[arg(long, default_value_t = 1, requires = "server")]
    instances: usize,
    /// REDIS_URL of the started instances (needed with --instances above 1; a fresh key
    /// prefix per run).
    #[arg(long, requires = "server")]
    redis_url: Option<String>,
    /// The running server's BOT_TOKEN (with --target), to sign initData.
    #[arg(long, env = "BOT_TOKEN", hide_env_values = true)]
    bot_token: Option<String>,
    /// The running server's BOT_WEBHOOK_SECRET (with --target, webhook mode).
    #[arg(long, env = "BOT_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// The running server's process id (with --target), to read its memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Skip the reference relay.
    #[arg(long)]
    no_reference: bool,
    /// Measurement time in seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Once the servers are started, lower this generator's scheduling priority (nice 19,
    /// every thread), so that on a shared machine the servers under test get the cores
    /// first, as they would with the generator on a machine of its own. It cannot be
    /// raised again: the rest of this process runs at that priority.
    #[arg(long)]
    yield_cpu: bool,
}

impl Common {
    fn duration(&self) -> anyhow::Result<Duration> {
        if !(self.duration > 0.0 && self.duration <= MAX_DURATION_S) {
            bail!("--duration must be in (0, {MAX_DURATION_S}] seconds");
        }
        Ok(Duration::from_secs_f64(self.duration))
    }
}

/// A mode and its parameters.
#[derive(Debug, Clone)]
pub enum Mode {
    /// `http`.
    Http(modes::http::Params),
    /// `relay`.
    Relay(modes::relay::Params),
    /// `idle`.
    Idle(modes::idle::Params),
    /// `churn`.
    Churn(modes::churn::Params),
    /// `webhook`.
    Webhook(modes::webhook::Params),
}

impl Mode {
    fn name(&self) -> &'static str {
        match self {
            Mode::Http(_) => "http",
            Mode::Relay(_) => "relay",
            Mode::Idle(_) => "idle",
            Mode::Churn(_) => "churn",
            Mode::Webhook(_) => "webhook",
        }
    }

    fn params(&self) -> serde_json::Value {
        match self {
            Mode::Http(p) => p.json(),
            Mode::Relay(p) => p.json(),
            Mode::Idle(p) => p.json(),
            Mode::Churn(p) => p.json(),
            Mode::Webhook(p) => p.json(),
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        let (sockets, conns) = match self {
            Mode::Http(p) => (0, p.connections),
            Mode::Relay(p) => (p.rooms * p.peers, 0),
            Mode::Idle(p) => (p.sockets, p.concurrency),
            Mode::Churn(p) => (p.lanes, p.lanes),
            Mode::Webhook(p) => (0, p.connections),
        };
        if sockets > MAX_SOCKETS {
            bail!(
                "at most {MAX_SOCKETS} sockets per run (this machine allows 20,000 open files per process)"
            );
        }
        if conns > MAX_CONNECTIONS {
            bail!("at most {MAX_CONNECTIONS} concurrent connections or lanes");
        }
        if let Some(limit) = procs::open_files_limit()
            && sockets as u64 + 200 > limit
        {
            bail!("{sockets} sockets need a higher open-files limit than {limit} (ulimit -n)");
        }
        Ok(())
    }

    async fn run(&self, t: &Target) -> anyhow::Result<ServerRun> {
        match self {
            Mode::Http(p) => modes::http::run(t, p).await,
            Mode::Relay(p) => modes::relay::run(t, p).await,
            Mode::Idle(p) => modes::idle::run(t, p).await,
            Mode::Churn(p) => modes::churn::run(t, p).await,
            Mode::Webhook(p) => modes::webhook::run(t, p).await,
        }
    }
}

/// Starts the generator's Bot API stand-in (the reference relay's `/bot…` routes) in this
/// process; returns its base URL.
pub async fn bot_api_stand_in() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(reference::serve(listener));
    Ok(format!("http://{addr}"))
}

/// Runs `mode` against telcall (started fresh or given) and then the reference relay.
pub async fn measure(common: &Common, mode: &Mode) -> anyhow::Result<Report> {
    mode.check()?;
    let mut runs = Vec::new();
    let mut notes = Vec::new();
    // Started before the generator yields, so that it keeps the normal priority too.
    let mut reference = if common.yield_cpu && !common.no_reference {
        Some(Server::reference().await?)
    } else {
        None
    };
    if common.yield_cpu {
        notes.push(format!(
            "the generator ran at nice {YIELD_NICE} (--yield-cpu), the servers at their own priority"
        ));
    }
    if let Some(binary) = &common.server {
        let bot_api = bot_api_stand_in().await?;
        if !(1..=4).contains(&common.instances) {
            bail!("--instances must be between 1 and 4");
        }
        let cluster = match (&common.redis_url, common.instances) {
            (Some(url), _) => Some(procs::ClusterSettings::new(url)),
            (None, 1) => None,
            (None, _) => {
                bail!("--instances above 1 needs --redis-url (and a PostgreSQL --database-url)")
            }
        };
        if common.instances > 1 && common.database_url.is_none() {
            bail!("--instances above 1 needs a shared PostgreSQL --database-url");
        }
        let mut servers = Vec::new();
        for _ in 0..common.instances {
            servers.push(
                Server::telcall(&TelcallOptions {
                    binary,
                    database_url: common.database_url.as_deref(),
                    bot_api_base: &bot_api,
                    cluster: cluster.as_ref(),
                })
                .await?,
            );
        }
        let first = &servers[0];
        let t = Target {
            kind: Kind::Telcall,
            addr: first.addr,
            pid: Some(first.pid),
            bot_token: first.bot_token.clone(),
            webhook_secret: Some(first.webhook_secret.clone()),
            ips: SourceIps::random(),
            instances: if servers.len() > 1 {
                servers.iter().map(|s| s.addr).collect()
            } else {
                Vec::new()
            },
        };
        if common.yield_cpu {
            procs::lower_own_priority(YIELD_NICE)?;
        }
        let result = mode.run(&t).await;
        for server in servers {
            server.stop().await?;
        }
        runs.push(result?);
        notes.push(format!(
            "telcall {} started fresh with the load-test profile ({}{}{})",
            binary.display(),
            if common.database_url.is_some() {
                "PostgreSQL or given database"
            } else {
                "fresh SQLite file"
            },
            if cluster.is_some() { ", Redis" } else { "" },
            if common.instances > 1 {
                format!(
                    ", {} instances: each room's peers spread over them, RSS of the first",
                    common.instances
                )
            } else {
                String::new()
            }
        ));
    } else if let Some(url) = &common.target {
        let t = Target {
            kind: Kind::Telcall,
            addr: net::parse_target(url)?,
            pid: common.server_pid,
            bot_token: common
                .bot_token
                .clone()
                .context("--target needs --bot-token (or BOT_TOKEN) to sign users in")?,
            webhook_secret: common.webhook_secret.clone(),
            ips: SourceIps::random(),
            instances: Vec::new(),
        };
        if common.yield_cpu {
            procs::lower_own_priority(YIELD_NICE)?;
        }
        runs.push(mode.run(&t).await?);
    } else {
        bail!(
            "say which telcall to load: --server <telcall binary> or --target <http://127.0.0.1:port>"
        );
    }
    if !common.no_reference {
        let server = match reference.take() {
            Some(server) => server,
            None => Server::reference().await?,
        };
        let t = Target {
            kind: Kind::Reference,
            addr: server.addr,
            pid: Some(server.pid),
            bot_token: String::new(),
            webhook_secret: None,
            ips: SourceIps::random(),
            instances: Vec::new(),
        };
        let result = mode.run(&t).await;
        server.stop().await?;
        runs.push(result?);
    }
    notes.push(machine_note());
    Ok(Report {
        mode: mode.name().to_owned(),
        params: mode.params(),
        runs,
        notes,
    })
}

/// Cores, load average and kernel, for the record.
pub fn machine_note() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!("{cores} cores, load average {load} at the end of the run")
}

fn print(report: &Report) {
    println!("{}", report.table());
    println!("{}", report.json_line());
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let report = match cli.command {
        Cmd::Reference { port } => {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            println!("listening {}", listener.local_addr()?);
            reference::serve(listener).await?;
            return Ok(true);
        }
        Cmd::Suite(args) => return suite::run(args).await,
        Cmd::Http {
            common,
            connections,
            paths,
            pgbench,
        } => {
            let mode = Mode::Http(modes::http::Params {
                connections,
                duration: common.duration()?,
                paths,
            });
            let mut report = measure(&common, &mode).await?;
            if let Some(url) = pgbench {
                let tps = suite::pgbench(&url, connections, common.duration()?).await?;
                let mut run = ServerRun::new("pgbench");
                run.metric("call_read_req_per_s", tps, "tps", report::Better::Higher);
                report.runs.push(run);
            }
            report
        }
        Cmd::Relay {
            common,
            rooms,
            peers,
            window,
            rate,
            payload,
        } => {
            let mode = Mode::Relay(modes::relay::Params {
                rooms,
                peers,
                duration: common.duration()?,
                window,
                rate,
                payload,
            });
            measure(&common, &mode).await?
        }
        Cmd::Idle {
            common,
            sockets,
            room_size,
            concurrency,
            hold,
        } => {
            let mode = Mode::Idle(modes::idle::Params {
                sockets,
                room_size,
                concurrency,
                hold: Duration::from_secs_f64(hold.clamp(0.0, MAX_DURATION_S)),
                steps: 10,
            });
            measure(&common, &mode).await?
        }
        Cmd::Churn {
            common,
            lanes,
            room_size,
        } => {
            let mode = Mode::Churn(modes::churn::Params {
                lanes,
                room_size,
                duration: common.duration()?,
            });
            measure(&common, &mode).await?
        }
        Cmd::Webhook {
            common,
            connections,
        } => {
            let mode = Mode::Webhook(modes::webhook::Params {
                connections,
                duration: common.duration()?,
            });
            measure(&common, &mode).await?
        }
    };
    print(&report);
    Ok(report.errors() == 0)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ok = rt.block_on(async {
        match tokio::time::timeout(RUN_DEADLINE, run(cli)).await {
            Ok(r) => r,
            Err(_) => bail!("the run did not finish within {RUN_DEADLINE:?}; stopped"),
        }
    })?;
    rt.shutdown_timeout(Duration::from_secs(1));
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
