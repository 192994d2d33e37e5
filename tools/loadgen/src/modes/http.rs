//! `http`: closed-loop request loops over keep-alive connections, each from its own source
//! address: `GET /health`, and authenticated `GET /api/calls/{id}` (Bearer session of a
//! signed-in user). Requests/s and latency percentiles.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::fixture::{Kind, Target, populate};
use crate::net::HttpConn;
use crate::report::{Better, ServerRun, histogram};

/// What to request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Path {
    /// `GET /health`.
    Health,
    /// Authenticated `GET /api/calls/{id}`.
    Call,
}

impl Path {
    /// The prefix of this path's figures.
    pub fn key(self) -> &'static str {
        match self {
            Path::Health => "health",
            Path::Call => "call_read",
        }
    }
}

/// Parameters of the `http` mode.
#[derive(Debug, Clone)]
pub struct Params {
    /// Concurrent keep-alive connections, one request in flight on each.
    pub connections: usize,
    /// Measurement time per path.
    pub duration: Duration,
    /// Paths to measure, one after the other.
    pub paths: Vec<Path>,
}

impl Params {
    /// The parameters as JSON.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "connections": self.connections,
            "duration_s": self.duration.as_secs_f64(),
            "paths": self.paths.iter().map(|p| p.key()).collect::<Vec<_>>(),
        })
    }
}

/// Calls the readers spread over (one user per connection reads one of them).
const CALLS: usize = 10;

/// Runs the request loops against `t`.
pub async fn run(t: &Target, p: &Params) -> anyhow::Result<ServerRun> {
    let mut out = ServerRun::new(t.kind.name());
    // Users to read calls as: one per connection, `CALLS` calls among them.
    let needs_users = p.paths.contains(&Path::Call);
    let rooms = if needs_users {
        let per_room = p.connections.div_ceil(CALLS).max(1);
        populate(t, p.connections.div_ceil(per_room), per_room).await?
    } else {
        Vec::new()
    };
    for path in &p.paths {
        let mut tasks = tokio::task::JoinSet::new();
        let deadline = Instant::now() + p.duration;
        for c in 0..p.connections {
            let (uri, auth, ip) = match path {
                Path::Health => ("/health".to_owned(), None, t.ips.ip(100_000 + c)),
                Path::Call => {
                    let room = &rooms[c % rooms.len()];
                    let user = &room.users[(c / rooms.len()) % room.users.len()];
                    let auth = match t.kind {
                        Kind::Telcall => Some(format!("Bearer {}", user.token)),
                        Kind::Reference => None,
                    };
                    (format!("/api/calls/{}", room.call_id), auth, user.ip)
                }
            };
            let addr = t.addr;
            tasks.spawn(async move {
                let mut h = histogram()?;
                let mut errors = 0u64;
                let mut sample = None;
                let mut conn = HttpConn::open(ip, addr).await?;
                let headers: Vec<(&str, &str)> = auth
                    .as_deref()
                    .map(|a| vec![("authorization", a)])
                    .unwrap_or_default();
                while Instant::now() < deadline {
                    let started = Instant::now();
                    match conn.send("GET", &uri, &headers, None).await {
                        Ok(r) if r.status.as_u16() == 200 => {
                            h.saturating_record(started.elapsed().as_micros() as u64);
                        }
                        Ok(r) if r.status.as_u16() == 429 => bail!(
                            "{uri}: rate limited ({}): start telcall with the load-test \
                             profile (see docs/performance.md)",
                            r.describe()
                        ),
                        Ok(r) => {
                            errors += 1;
                            sample.get_or_insert_with(|| format!("{uri}: {}", r.describe()));
                        }
                        Err(e) => {
                            errors += 1;
                            sample.get_or_insert_with(|| format!("{uri}: {e:#}"));
                            conn = HttpConn::open(ip, addr).await?;
                        }
                    }
                }
                anyhow::Ok((h, errors, sample))
            });
        }
        let started = Instant::now();
        let mut h = histogram()?;
        while let Some(res) = tasks.join_next().await {
            match res? {
                Ok((ch, errors, sample)) => {
                    h.add(&ch)?;
                    if errors > 0 {
                        out.error(errors, sample.unwrap_or_default());
                    }
                }
                Err(e) => {
                    tasks.abort_all();
                    return Err(e);
                }
            }
        }
        let secs = started
            .elapsed()
            .as_secs_f64()
            .max(p.duration.as_secs_f64());
        let key = path.key();
        out.metric(
            &format!("{key}_req_per_s"),
            h.len() as f64 / secs,
            "req/s",
            Better::Higher,
        );
        out.latency(key, &h);
        out.metric(
            &format!("{key}_requests"),
            h.len() as f64,
            "count",
            Better::Higher,
        );
        crate::progress(&format!(
            "{}: {key}: {:.0} req/s, p99 {:.2} ms",
            t.kind.name(),
            h.len() as f64 / secs,
            h.value_at_quantile(0.99) as f64 / 1000.0
        ));
    }
    Ok(out)
}
