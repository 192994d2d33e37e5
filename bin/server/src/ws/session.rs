//! One joined WebSocket connection: the loop between the socket and the signaling hub.
//!
//! A single task per connection `select!`s over
//! - the hub's [`Outbox`] (frames for this client; a close the hub decided: 1000 after
//!   `call_ended`, 1013 too slow, 4409 replaced, 1001 shutdown),
//! - the client's frames ([`FrameReader`], bounded whatever the client announces),
//! - the keepalive ping interval and the idle deadline.
//!
//! The maximum call duration is not a connection's business: it belongs to the call and is
//! enforced by the sweeper (`crate::sweeper`) and the handshake, from the call's creation.
//!
//! It is the socket's only writer. A write that cannot be handed to the connection within
//! the idle timeout (the client stopped reading and every buffer is full) ends the session:
//! by then the hub has usually cut the connection off (1013) because its queue filled.

use std::time::Duration;

use telcall_domain::{Call, CallCode, CallService, DomainError};
use telcall_signaling::{
    ConnectionHandle, Hub, Joined, Outbound, Outbox, ProtocolError, ServerMessage, close,
};
use tokio::time::{Instant, MissedTickBehavior};

use super::frames::{FrameReader, Incoming, ReadError};
use super::outgoing::{self, Outgoing};
use super::presence::Presence;
use crate::config::WsSettings;

// Close codes and reasons of a session's end (flooding, broken framing, silence).
use close::{
    IDLE_TIMEOUT as IDLE_CLOSE_CODE, POLICY_VIOLATION, PROTOCOL_ERROR, REASON_IDLE,
    REASON_PROTOCOL_ERROR, REASON_RATE_LIMITED,
};
/// Over-rate messages answered with an `error` frame before the connection is closed with
/// [`close::POLICY_VIOLATION`]. The count restarts once the client has been quiet long enough for
/// its bucket to refill completely.
pub const RATE_LIMIT_WARNINGS: u32 = 3;
/// How long a closing session waits for a client to take its last frames before the
/// connection is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Everything a session needs, handed over by the handshake.
pub struct Session {
    /// The room hub.
    pub hub: std::sync::Arc<Hub>,
    /// Where joins and leaves are recorded.
    pub presence: Presence,
    /// Calls, to check once more, after the join, that the call is still active.
    pub calls: CallService,
    /// Limits and timings.
    pub settings: WsSettings,
    /// The call being joined.
    pub call: Call,
    /// The hub's side of the connection.
    pub joined: Joined,
    /// The socket's write half (the response body's hand-off).
    pub socket: Outgoing,
    /// The socket's read half.
    pub reader: FrameReader,
}

/// How a session ended.
#[derive(Debug)]
enum End {
    /// The server closes with this code and reason.
    Close {
        code: u16,
        reason: String,
        /// Decided by the hub (from the outbox) rather than by this loop.
        by_hub: bool,
    },
    /// The client sent a close frame (answered with a close frame).
    ClientClose(Option<(u16, String)>),
    /// The connection is gone or stuck: nothing more can be sent.
    Lost(&'static str),
}

impl End {
    fn server(code: u16, reason: &str) -> Self {
        Self::Close {
            code,
            reason: reason.to_owned(),
            by_hub: false,
        }
    }
}

/// Why a write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteError {
    /// The connection is closed.
    Closed,
    /// Nothing could be written for the stall timeout: the client does not read.
    Stalled,
    /// The hub closed the connection while a write waited (its close comes next).
    Preempted,
}

impl WriteError {
    fn end(self) -> End {
        match self {
            Self::Closed => End::Lost("connection closed"),
            Self::Stalled => End::Lost("client stopped reading"),
            // Not an end: the loop goes on and takes the hub's close from the outbox.
            Self::Preempted => End::Lost("closed by the hub while writing"),
        }
    }
}

/// The socket's write half with a bound on how long one write may wait.
struct Writer {
    out: Outgoing,
    stall: Duration,
}

impl Writer {
    async fn bounded(
        stall: Duration,
        write: impl Future<Output = Result<(), outgoing::Closed>>,
    ) -> Result<(), WriteError> {
        match tokio::time::timeout(stall, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(outgoing::Closed)) => Err(WriteError::Closed),
            Err(_) => Err(WriteError::Stalled),
        }
    }

    /// Writes a text frame; gives up at once when the hub force-closes the connection
    /// meanwhile (its close is then the outbox's next item).
    async fn text(&mut self, text: &str, outbox: &Outbox) -> Result<(), WriteError> {
        tokio::select! {
            biased;
            written = Self::bounded(self.stall, self.out.text(text)) => written,
            () = outbox.forced_close() => Err(WriteError::Preempted),
        }
    }

    async fn ping(&mut self, outbox: &Outbox) -> Result<(), WriteError> {
        tokio::select! {
            biased;
            written = Self::bounded(self.stall, self.out.ping(b"")) => written,
            () = outbox.forced_close() => Err(WriteError::Preempted),
        }
    }

    async fn pong(&mut self, payload: &[u8]) -> Result<(), WriteError> {
        Self::bounded(self.stall, self.out.pong(payload)).await
    }

    /// Queues the close frame and waits (at most [`CLOSE_GRACE`]) for the client to take
    /// what is left; a client that does not has its connection dropped.
    async fn close(self, code: u16, reason: &str) -> Result<(), WriteError> {
        self.out
            .close(code, reason)
            .map_err(|outgoing::Closed| WriteError::Closed)?;
        if tokio::time::timeout(CLOSE_GRACE, self.out.drained())
            .await
            .is_err()
        {
            self.out.abort();
            return Err(WriteError::Stalled);
        }
        Ok(())
    }
}

/// A token bucket: `rate` messages per second on average, bursts of `capacity`.
#[derive(Debug)]
struct RateLimiter {
    tokens: f64,
    capacity: f64,
    rate: f64,
    last: Instant,
    strikes: u32,
}

/// What to do with one client message.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Accept,
    /// Drop it and answer with an `error` frame.
    Warn,
    /// Drop it and close the connection (1008).
    Close,
}

impl RateLimiter {
    fn new(rate: u32, capacity: u32, now: Instant) -> Self {
        let capacity = f64::from(capacity.max(1));
        Self {
            tokens: capacity,
            capacity,
            rate: f64::from(rate.max(1)),
            last: now,
            strikes: 0,
        }
    }

    fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        if self.tokens >= self.capacity {
            self.strikes = 0;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Accept;
        }
        self.strikes += 1;
        if self.strikes > RATE_LIMIT_WARNINGS {
            Verdict::Close
        } else {
            Verdict::Warn
        }
    }
}

/// The `error` frame sent for a message dropped by the rate limit.
fn rate_limit_frame(settings: &WsSettings) -> String {
    ServerMessage::Error {
        detail: format!(
            "Rate limit exceeded: at most {} messages per second (bursts of {})",
            settings.messages_per_second, settings.message_burst
        ),
    }
    .to_frame()
    .to_string()
}

/// The close code to answer a client's close frame with: its own, when it may be sent.
fn echo_code(received: Option<u16>) -> u16 {
    match received {
        Some(code @ (1000..=1003 | 1007..=1014 | 3000..=4999)) => code,
        _ => close::NORMAL,
    }
}

impl Session {
    /// Drives the connection until it closes, then leaves the room and records the leave.
    ///
    /// The returned future lives as long as the connection, so it keeps only what the loop
    /// needs: the handshake's leftovers are dropped before it starts, and the loop, the last
    /// flush, the close and the rare storage check each sit in a box of their own (an
    /// awaited future is otherwise part of this one, for as long as the call lasts).
    pub fn run(self) -> impl Future<Output = ()> {
        let Self {
            hub,
            presence,
            calls,
            settings,
            call,
            joined,
            socket,
            reader,
        } = self;
        let Joined {
            handle,
            outbox,
            replaced,
            ..
        } = joined;
        let user_id = handle.user().id;

        // A replacing connection is the same stay in the call: nothing new to record.
        // Otherwise the stay is recorded even if the call turns out to have ended (below):
        // the others in the room were already told this user joined, and the leave that
        // follows closes the stay.
        if !replaced {
            let others = hub.room_user_ids_except(call.code.as_str(), user_id);
            presence.joined(&call, user_id, others);
        }

        // The handshake checked the call before the join. An end stored in between (by a
        // person, the sweeper or the active-call limit, here or on another instance) ended
        // the room, and the hub refused or closed this join. Expiry and the duration cap
        // come with time, not with an end: checked again on the clock now that the
        // connection is in the room, and stored (ending the room) when due.
        let overdue = calls.is_overdue(&call).then(|| {
            let (hub, code) = (hub.clone(), call.code.clone());
            Box::pin(async move { end_room_if_over(&calls, &hub, &code).await })
        });

        async move {
            if let Some(check) = overdue {
                check.await;
            }

            let started = Instant::now();

            let mut writer = Writer {
                out: socket,
                stall: settings.idle_timeout,
            };
            let mut driver = Driver {
                hub: &hub,
                settings: &settings,
                handle: &handle,
                outbox,
                reader,
                limiter: RateLimiter::new(
                    settings.messages_per_second,
                    settings.message_burst,
                    started,
                ),
                received: 0,
            };
            let end = Box::pin(driver.drive(&mut writer)).await;
            if matches!(end, End::Close { by_hub: false, .. }) {
                // This loop decided to close (rate limit, idle, protocol error): what the hub had
                // already queued (answers to earlier messages) goes out first.
                Box::pin(driver.flush(&mut writer)).await;
            }
            let received = driver.received;

            let (code_sent, reason_sent, by_hub) = match &end {
                End::Close {
                    code,
                    reason,
                    by_hub,
                } => (Some(*code), reason.clone(), *by_hub),
                End::ClientClose(c) => (
                    Some(echo_code(c.as_ref().map(|(code, _)| *code))),
                    String::new(),
                    false,
                ),
                End::Lost(_) => (None, String::new(), false),
            };
            // Leave first: once the client sees the close, the room no longer counts it.
            let left = hub.leave(&handle);
            // A stale `leave` means replaced (the stay goes on, on the newer connection) or
            // removed by the hub (call ended, shutdown: the stay is over, closed here). How this
            // loop ended does not tell them apart: a client may close just as its room ends, and
            // a connection cut off (1013) and then replaced never sees its 4409. Recorded now,
            // before the close is written (which may wait for a slow client): a newer connection
            // of the same user joining meanwhile is recorded after this leave.
            if left || !handle.is_replaced() {
                presence.left(&call, user_id);
            }
            let delivered = match code_sent {
                Some(c) => Box::pin(writer.close(c, &reason_sent)).await.is_ok(),
                None => false,
            };

            let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            match &end {
                End::Close { code, reason, .. } => tracing::info!(
                    close_code = code,
                    close_reason = %reason,
                    by_hub,
                    delivered,
                    duration_ms,
                    received,
                    "WebSocket disconnected"
                ),
                End::ClientClose(c) => tracing::info!(
                    close_code = c.as_ref().map(|(code, _)| *code),
                    close_reason = c.as_ref().map(|(_, r)| r.as_str()).unwrap_or(""),
                    by_client = true,
                    duration_ms,
                    received,
                    "WebSocket disconnected"
                ),
                End::Lost(why) => tracing::info!(
                    close_code = 1006,
                    close_reason = *why,
                    duration_ms,
                    received,
                    "WebSocket disconnected"
                ),
            }
        }
    }
}

/// Ends the room of `code` if its call can no longer be joined (everyone in it gets
/// `call_ended`, then a close). A storage error is logged and leaves the room as it is.
async fn end_room_if_over(calls: &CallService, hub: &Hub, code: &CallCode) {
    let reason = match calls.joinable_call(code).await {
        Ok(_) => return,
        Err(DomainError::Storage(error)) => {
            tracing::warn!(%error, "could not check the call again after the join");
            return;
        }
        Err(DomainError::CallExpired) => telcall_domain::EndReason::Expired,
        Err(_) => telcall_domain::EndReason::Ended,
    };
    let reason = crate::events::wire_reason(reason);
    tracing::info!(%reason, "the call ended during the handshake; ending its room");
    hub.end_room(code.as_str(), reason);
}

/// What woke the loop.
enum Event {
    /// The hub's next item for this client (`None`: nothing more).
    Outbound(Option<Outbound>),
    /// The client's next message, a read error, or the end of the stream.
    Incoming(Option<Result<Incoming, ReadError>>),
    /// Time to ping.
    Ping,
    /// Nothing was heard for the idle timeout.
    Idle,
}

/// The loop's state.
struct Driver<'a> {
    hub: &'a Hub,
    settings: &'a WsSettings,
    handle: &'a ConnectionHandle,
    outbox: Outbox,
    reader: FrameReader,
    limiter: RateLimiter,
    /// Client data messages received.
    received: u64,
}

impl Driver<'_> {
    async fn drive(&mut self, writer: &mut Writer) -> End {
        let ws = self.settings;
        let mut ping =
            tokio::time::interval_at(Instant::now() + ws.ping_interval, ws.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let idle = tokio::time::sleep(ws.idle_timeout);
        tokio::pin!(idle);

        loop {
            // Only which source is ready is decided inside the select; the work (a write that
            // may wait) happens after it, once the other sources' futures are gone, so they
            // and the writes never take room in this future at the same time.
            let event = tokio::select! {
                item = self.outbox.recv() => Event::Outbound(item),
                incoming = self.reader.next() => Event::Incoming(incoming),
                _ = ping.tick() => Event::Ping,
                () = &mut idle => Event::Idle,
            };
            match event {
                Event::Outbound(Some(Outbound::Text(frame))) => {
                    match writer.text(&frame, &self.outbox).await {
                        Ok(()) | Err(WriteError::Preempted) => {}
                        Err(e) => return e.end(),
                    }
                }
                Event::Outbound(Some(Outbound::Close { code, reason })) => {
                    return End::Close {
                        code,
                        reason,
                        by_hub: true,
                    };
                }
                Event::Outbound(None) => {
                    return End::Close {
                        code: close::NORMAL,
                        reason: String::new(),
                        by_hub: true,
                    };
                }
                Event::Incoming(incoming) => {
                    idle.as_mut().reset(Instant::now() + ws.idle_timeout);
                    match incoming {
                        Some(Ok(message)) => {
                            if let Some(end) = self.incoming(message, writer).await {
                                return end;
                            }
                        }
                        Some(Err(ReadError::Frame(error))) => {
                            tracing::debug!(%error, "client broke the framing rules");
                            return End::server(PROTOCOL_ERROR, REASON_PROTOCOL_ERROR);
                        }
                        Some(Err(ReadError::Io(error))) => {
                            tracing::debug!(%error, "read failed");
                            return End::Lost("read failed");
                        }
                        None => return End::Lost("client disconnected without a close frame"),
                    }
                }
                Event::Ping => match writer.ping(&self.outbox).await {
                    Ok(()) | Err(WriteError::Preempted) => {}
                    Err(e) => return e.end(),
                },
                Event::Idle => return End::server(IDLE_CLOSE_CODE, REASON_IDLE),
            }
        }
    }

    /// Writes the frames already queued for this client, stopping at the first failure.
    async fn flush(&mut self, writer: &mut Writer) {
        while let Some(Outbound::Text(frame)) = self.outbox.try_recv() {
            if writer.text(&frame, &self.outbox).await.is_err() {
                return;
            }
        }
    }

    /// Handles one client message; `Some` ends the session.
    async fn incoming(&mut self, message: Incoming, writer: &mut Writer) -> Option<End> {
        let error = match message {
            Incoming::Ping(payload) => {
                return writer.pong(&payload).await.err().map(WriteError::end);
            }
            Incoming::Pong => return None,
            Incoming::Close(received) => return Some(End::ClientClose(received)),
            Incoming::Text(_)
            | Incoming::InvalidUtf8
            | Incoming::Binary { .. }
            | Incoming::TooLarge { .. } => {
                self.received += 1;
                match self.limiter.check(Instant::now()) {
                    Verdict::Accept => {}
                    Verdict::Warn => {
                        let frame = rate_limit_frame(self.settings);
                        return match writer.text(&frame, &self.outbox).await {
                            Ok(()) | Err(WriteError::Preempted) => None,
                            Err(e) => Some(e.end()),
                        };
                    }
                    Verdict::Close => {
                        tracing::info!("client kept flooding after rate-limit warnings");
                        return Some(End::server(POLICY_VIOLATION, REASON_RATE_LIMITED));
                    }
                }
                match message {
                    Incoming::Text(text) => {
                        if let Err(error) = self.hub.handle_text(self.handle, &text) {
                            tracing::debug!(%error, "client message refused");
                        }
                        return None;
                    }
                    Incoming::TooLarge { size } => ProtocolError::TooLarge {
                        size,
                        limit: self.settings.max_message_size,
                    },
                    _ => ProtocolError::InvalidJson,
                }
            }
        };
        tracing::debug!(%error, "client message refused");
        self.hub.send_error(self.handle, &error);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate_then_closes_a_flood() {
        let t0 = Instant::now();
        let mut bucket = RateLimiter::new(10, 3, t0);
        for _ in 0..3 {
            assert_eq!(bucket.check(t0), Verdict::Accept);
        }
        for _ in 0..RATE_LIMIT_WARNINGS {
            assert_eq!(bucket.check(t0), Verdict::Warn);
        }
        assert_eq!(bucket.check(t0), Verdict::Close);

        // 100 ms later one token has come back.
        let mut bucket = RateLimiter::new(10, 3, t0);
        for _ in 0..3 {
            bucket.check(t0);
        }
        assert_eq!(bucket.check(t0), Verdict::Warn);
        let later = t0 + Duration::from_millis(100);
        assert_eq!(bucket.check(later), Verdict::Accept);
        assert_eq!(bucket.check(later), Verdict::Warn);
        // A full refill forgives the earlier strikes.
        let much_later = later + Duration::from_secs(1);
        assert_eq!(bucket.check(much_later), Verdict::Accept);
        assert_eq!(bucket.strikes, 0);
    }

    #[test]
    fn close_codes_echoed_only_when_sendable() {
        assert_eq!(echo_code(Some(1000)), 1000);
        assert_eq!(echo_code(Some(4001)), 4001);
        assert_eq!(echo_code(Some(1005)), 1000);
        assert_eq!(echo_code(Some(1006)), 1000);
        assert_eq!(echo_code(None), 1000);
    }

    #[test]
    fn rate_limit_detail_names_the_limits() {
        let settings = crate::config::Settings::from_source(
            &crate::config::Source::from_map(std::collections::HashMap::new()),
            true,
        )
        .unwrap()
        .ws;
        assert_eq!(
            rate_limit_frame(&settings),
            r#"{"type":"error","detail":"Rate limit exceeded: at most 50 messages per second (bursts of 200)"}"#
        );
    }
}
