//! `churn`: lanes that join a call and leave it again as fast as the server lets them
//! (handshake, `call_metadata`, close handshake), a few lanes per call so every join and
//! leave is announced to the others. Joins+leaves per second.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{close, join, wait_server_closed};
use crate::fixture::{Target, populate};
use crate::report::{Better, ServerRun, histogram};

/// Parameters of the `churn` mode.
#[derive(Debug, Clone)]
pub struct Params {
    /// Concurrent lanes (one user each).
    pub lanes: usize,
    /// Lanes per call.
    pub room_size: usize,
    /// Measurement time.
    pub duration: Duration,
}

impl Params {
    /// The parameters as JSON.
    pub fn json(&self) -> serde_json::Value {
        json!({ "lanes": self.lanes, "room_size": self.room_size, "duration_s": self.duration.as_secs_f64() })
    }
}

/// Runs the lanes against `t`.
pub async fn run(t: &Target, p: &Params) -> anyhow::Result<ServerRun> {
    let mut out = ServerRun::new(t.kind.name());
    let rooms = populate(t, p.lanes.div_ceil(p.room_size.max(1)), p.room_size.max(1)).await?;
    let deadline = Instant::now() + p.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for room in rooms {
        for user in room.users.clone() {
            let t = t.clone();
            let room = room.clone();
            tasks.spawn(async move {
                let mut join_h = histogram()?;
                let mut cycles = 0u64;
                let mut errors = 0u64;
                let mut sample = None;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    match join(&t, &room, &user).await {
                        Ok(mut ws) => {
                            join_h.saturating_record(t0.elapsed().as_micros() as u64);
                            if close(&mut ws).await {
                                cycles += 1;
                            } else {
                                errors += 1;
                                sample.get_or_insert_with(|| "a close handshake failed".to_owned());
                            }
                        }
                        Err(e) => {
                            errors += 1;
                            sample.get_or_insert_with(|| format!("join failed: {e:#}"));
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                anyhow::Ok((join_h, cycles, errors, sample))
            });
        }
    }
    let started = Instant::now();
    let mut h = histogram()?;
    let mut cycles = 0u64;
    while let Some(res) = tasks.join_next().await {
        let (jh, c, errors, sample) = res??;
        h.add(&jh)?;
        cycles += c;
        if errors > 0 {
            out.error(errors, sample.unwrap_or_default());
        }
    }
    let secs = started
        .elapsed()
        .as_secs_f64()
        .max(p.duration.as_secs_f64());
    let left = wait_server_closed(t).await?;
    if left > 0 {
        out.error(left, format!("{left} sockets still open on the server"));
    }
    out.metric(
        "cycles_per_s",
        cycles as f64 / secs,
        "joins+leaves/s",
        Better::Higher,
    );
    out.latency("join", &h);
    out.metric("cycles", cycles as f64, "count", Better::Higher);
    crate::progress(&format!(
        "{}: {:.0} join+leave cycles/s",
        t.kind.name(),
        cycles as f64 / secs
    ));
    Ok(out)
}
