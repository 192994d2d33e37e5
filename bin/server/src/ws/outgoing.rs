//! The server's side of a WebSocket's write direction: frames handed from the session to
//! the HTTP response body through a small, byte-bounded hand-off.
//!
//! The upgraded connection ([`super::upgrade`]) writes the body by polling it only once the
//! previous chunk is in the socket, so a body that yields only what the session handed
//! over, and a session that hands over only while the hand-off holds less than
//! [`HANDOFF_BYTES`], keep every byte for a client that does not read in one of three
//! bounded places: the hub's queue (its byte budget), this hand-off (at most
//! [`HANDOFF_BYTES`] plus one frame) and the chunks of the vectored write in progress (at
//! most what the hand-off held when they were taken). Nothing is allocated until a frame is sent, and an idle
//! connection keeps room for at most four frames here.
//!
//! [`outgoing`] returns the two ends: the [`Outgoing`] writer for the session and the
//! [`OutgoingBody`] stream for the response.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use actix_web::web::{Bytes, BytesMut};
use futures_util::Stream;

/// The hand-off accepts a new frame while it holds fewer bytes than this.
pub const HANDOFF_BYTES: usize = 16 * 1024;
/// Largest piece of a frame handed to the connection at once.
pub const CHUNK_BYTES: usize = 16 * 1024;
/// Frames' room the hand-off keeps while empty (VecDeque's smallest buffer).
const KEPT_FRAMES: usize = 4;
/// Longest close reason a close frame carries (RFC 6455: 125 bytes minus the code).
const MAX_CLOSE_REASON: usize = 123;

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// The connection is gone: nothing more can be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

#[derive(Default)]
struct State {
    /// Encoded frames not yet taken by the body.
    frames: VecDeque<Bytes>,
    /// Bytes in `frames`.
    bytes: usize,
    /// A close frame was queued (or the writer is gone): the body ends once drained.
    finished: bool,
    /// The body was dropped (the connection closed).
    gone: bool,
    /// The session gave up on a client that does not read: the body fails at its next poll,
    /// which drops the connection.
    abort: bool,
    body: Option<Waker>,
    writer: Option<Waker>,
}

struct Shared(Mutex<State>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Creates a connected writer and response body.
pub fn outgoing() -> (Outgoing, OutgoingBody) {
    let shared = Arc::new(Shared(Mutex::new(State::default())));
    (
        Outgoing {
            shared: shared.clone(),
        },
        OutgoingBody { shared },
    )
}

/// The session's end: encodes frames into the hand-off. Dropping it ends the body after
/// what was handed over.
pub struct Outgoing {
    shared: Arc<Shared>,
}

impl Outgoing {
    /// Sends a text frame once the hand-off has room. Cancel-safe: a cancelled call has
    /// handed nothing over.
    pub async fn text(&self, text: &str) -> Result<(), Closed> {
        self.send(OP_TEXT, text.as_bytes()).await
    }

    /// Sends a ping once the hand-off has room.
    pub async fn ping(&self, payload: &[u8]) -> Result<(), Closed> {
        self.send(OP_PING, clip(payload)).await
    }

    /// Sends a pong once the hand-off has room.
    pub async fn pong(&self, payload: &[u8]) -> Result<(), Closed> {
        self.send(OP_PONG, clip(payload)).await
    }

    /// Queues a close frame (whatever the hand-off holds: it is at most 125 bytes) and ends
    /// the body after it.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), Closed> {
        let mut state = self.shared.lock();
        if state.gone {
            return Err(Closed);
        }
        if state.finished {
            return Ok(());
        }
        push(&mut state, encode_close(code, reason));
        state.finished = true;
        Ok(())
    }

    /// Waits until the body has taken everything handed over (or the connection is gone).
    pub async fn drained(&self) {
        std::future::poll_fn(|cx| {
            let mut state = self.shared.lock();
            if state.gone || state.frames.is_empty() {
                Poll::Ready(())
            } else {
                state.writer = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }

    /// Gives up on the connection: the body fails at its next poll, so the connection is dropped
    /// instead of waiting for a client that does not read to take what is left.
    pub fn abort(&self) {
        let mut state = self.shared.lock();
        state.abort = true;
        state.frames.clear();
        state.bytes = 0;
        if let Some(waker) = state.body.take() {
            waker.wake();
        }
    }

    /// Bytes handed over and not yet taken by the connection.
    pub fn pending_bytes(&self) -> usize {
        self.shared.lock().bytes
    }

    async fn send(&self, opcode: u8, payload: &[u8]) -> Result<(), Closed> {
        std::future::poll_fn(|cx| {
            let mut state = self.shared.lock();
            if state.gone || state.finished {
                return Poll::Ready(Err(Closed));
            }
            if state.bytes >= HANDOFF_BYTES {
                state.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            push(&mut state, encode(opcode, payload));
            Poll::Ready(Ok(()))
        })
        .await
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.finished = true;
        if let Some(waker) = state.body.take() {
            waker.wake();
        }
    }
}

fn push(state: &mut State, frame: Bytes) {
    state.bytes += frame.len();
    state.frames.push_back(frame);
    if let Some(waker) = state.body.take() {
        waker.wake();
    }
}

/// The response body: yields what the session handed over, in pieces of at most
/// [`CHUNK_BYTES`]; ends after a close frame or when the session is gone.
pub struct OutgoingBody {
    shared: Arc<Shared>,
}

/// Why the body failed (the session gave up on a client that does not read).
#[derive(Debug, thiserror::Error)]
#[error("WebSocket abandoned: the client stopped reading")]
pub struct Abandoned;

impl Stream for OutgoingBody {
    type Item = Result<Bytes, Abandoned>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut state = self.shared.lock();
        if state.abort {
            return Poll::Ready(Some(Err(Abandoned)));
        }
        if let Some(front) = state.frames.front_mut() {
            let piece = if front.len() > CHUNK_BYTES {
                front.split_to(CHUNK_BYTES)
            } else {
                state.frames.pop_front().unwrap_or_default()
            };
            state.bytes -= piece.len();
            if state.bytes < HANDOFF_BYTES
                && let Some(waker) = state.writer.take()
            {
                waker.wake();
            }
            return Poll::Ready(Some(Ok(piece)));
        }
        if let Some(waker) = state.writer.take() {
            waker.wake();
        }
        if state.finished {
            return Poll::Ready(None);
        }
        // Nothing queued: a buffer that grew past a few frames (a join's burst of
        // presence) goes, so an idle connection keeps at most that few. The small one
        // stays: the relay path would otherwise allocate it again for every message.
        if state.frames.capacity() > KEPT_FRAMES {
            state.frames = VecDeque::new();
        }
        state.body = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for OutgoingBody {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.gone = true;
        state.frames.clear();
        state.bytes = 0;
        if let Some(waker) = state.writer.take() {
            waker.wake();
        }
    }
}

/// Control frames carry at most 125 bytes.
fn clip(payload: &[u8]) -> &[u8] {
    &payload[..payload.len().min(125)]
}

/// One final, unmasked server frame.
fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut buf = BytesMut::with_capacity(len + 10);
    buf.extend_from_slice(&[0x80 | opcode]);
    if len < 126 {
        buf.extend_from_slice(&[len as u8]);
    } else if let Ok(short) = u16::try_from(len) {
        buf.extend_from_slice(&[126]);
        buf.extend_from_slice(&short.to_be_bytes());
    } else {
        buf.extend_from_slice(&[127]);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
    buf.extend_from_slice(payload);
    buf.freeze()
}

/// A close frame: the code, then the reason cut to 123 bytes at a character boundary.
fn encode_close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OP_CLOSE, &payload)
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;

    use super::*;

    #[test]
    fn frame_headers_follow_rfc_6455() {
        assert_eq!(&encode(OP_TEXT, b"hi")[..], b"\x81\x02hi");
        let mid = encode(OP_TEXT, &[b'a'; 300]);
        assert_eq!(&mid[..4], &[0x81, 126, 0x01, 0x2c]);
        assert_eq!(mid.len(), 304);
        let big = encode(OP_TEXT, &vec![b'a'; 70_000]);
        assert_eq!(&big[..2], &[0x81, 127]);
        assert_eq!(&big[2..10], &70_000u64.to_be_bytes());
        let close = encode_close(4409, "é".repeat(100).as_str());
        assert_eq!(close[0], 0x88);
        assert_eq!(usize::from(close[1]), close.len() - 2);
        assert!(close.len() - 2 <= 125);
        assert!(std::str::from_utf8(&close[4..]).is_ok());
    }

    #[tokio::test]
    async fn the_writer_waits_while_the_handoff_is_full_and_the_body_ends_after_close() {
        let (out, mut body) = outgoing();
        let big = "x".repeat(HANDOFF_BYTES);
        out.text(&big).await.unwrap();
        // Full: the next frame waits until the body takes some.
        let blocked =
            tokio::time::timeout(std::time::Duration::from_millis(50), out.text("next")).await;
        assert!(blocked.is_err());
        let mut taken = 0;
        while taken < big.len() + 4 {
            let piece = body.next().await.unwrap().unwrap();
            assert!(piece.len() <= CHUNK_BYTES);
            taken += piece.len();
        }
        out.text("next").await.unwrap();
        out.close(1000, "bye").unwrap();
        assert_eq!(&body.next().await.unwrap().unwrap()[..], b"\x81\x04next");
        assert_eq!(
            &body.next().await.unwrap().unwrap()[..],
            b"\x88\x05\x03\xe8bye"
        );
        assert!(body.next().await.is_none());
    }

    #[tokio::test]
    async fn a_dropped_body_fails_the_writer_and_abort_fails_the_body() {
        let (out, body) = outgoing();
        drop(body);
        assert_eq!(out.text("x").await, Err(Closed));

        let (out, mut body) = outgoing();
        out.text("x").await.unwrap();
        out.abort();
        assert!(matches!(body.next().await, Some(Err(Abandoned))));
        assert_eq!(out.pending_bytes(), 0);
    }
}
