//! Upgraded WebSockets leave actix-http's HTTP/1 dispatcher.
//!
//! The dispatcher keeps a read buffer and a write buffer of 8 KiB each for as long as a
//! connection lives, which for a WebSocket is the whole call: two thirds of an idle
//! socket's memory. actix-http hands a request that asks for a WebSocket upgrade, together
//! with the socket itself, to an *upgrade service* when one is configured; [`service`] is
//! ours. It
//!
//! 1. gives the request a payload that reads the socket directly (`Inbound`: each read
//!    goes through a stack buffer and is copied out at its exact size, so nothing is
//!    buffered between reads; the session's [`super::frames::FrameReader`] is the only
//!    buffer, bounded by the message size limit);
//! 2. runs it through the same actix-web application as every other request (tracing span,
//!    security headers, rate limits, routing, `connect`);
//! 3. writes the response head, then the response body, which for a `101` is the session's
//!    hand-off ([`super::outgoing`]), chunk by chunk straight to the socket, without a
//!    buffer of its own: a client that does not read holds the hand-off's bytes and one
//!    chunk, no more;
//! 4. after the body ended (a close frame was sent) and the session let go of the reader,
//!    waits at most [`LINGER`] for the client to close its side, then drops the socket.
//!
//! All of this runs on a task of its own on the same worker, not in actix-http's
//! connection task: that task is sized for the HTTP/1 dispatcher (some 3 KiB) and ends as
//! soon as the socket is handed over. [`UpgradedSockets`] counts these tasks, so that
//! shutdown can wait for the WebSockets to close before it stops the workers.
//!
//! Any other answer (a `429` of the rate limiter, a `400` for a broken handshake) is
//! written whole and the connection is closed after it.
//!
//! The connection's permit ([`crate::connections::ConnectionPermit`]) is held until the
//! socket is dropped, so an upgraded connection counts against the connection caps for as
//! long as it is open, exactly as a request on the dispatcher does.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix_codec::{AsyncRead, AsyncWrite, Encoder as _, Framed, ReadBuf};
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::error::PayloadError;
use actix_http::{ConnectionType, Payload, Request, Response, StatusCode, h1};
use actix_service::{Service, ServiceFactory, fn_factory, fn_service};
use actix_web::dev::{AppConfig, ServiceResponse};
use actix_web::web::{Buf as _, Bytes, BytesMut};
use futures_util::Stream;
use tokio::sync::Notify;

use crate::connections::SharedPermit;

/// Largest single read from the socket (a stack buffer; what was read is copied out).
pub const READ_CHUNK: usize = 8 * 1024;
/// Most body chunks written with one vectored write.
const WRITE_BATCH: usize = 8;
/// Once the response has ended and the session no longer reads, how long the client has
/// to close its side before the socket is dropped (actix-http's client disconnect timeout
/// plays this part for ordinary requests).
pub const LINGER: Duration = Duration::from_secs(1);

/// The socket, shared by the request's payload (the session reads) and the connection's
/// task (which writes). Both run on the same worker thread; neither borrow is held across
/// a suspension point, so the two never overlap.
struct Shared<T> {
    io: RefCell<T>,
    /// The payload was dropped: nobody reads any more.
    reader_gone: Cell<bool>,
    /// The connection's task, woken when the reader goes away.
    writer: Cell<Option<Waker>>,
}

/// The upgrade requests being served (each on a task of its own), over every worker.
#[derive(Debug, Clone, Default)]
pub struct UpgradedSockets(Arc<Tally>);

#[derive(Debug, Default)]
struct Tally {
    open: AtomicUsize,
    none_open: Notify,
}

/// One upgrade request being served, until its socket is dropped.
struct Served(Arc<Tally>);

impl Drop for Served {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_open.notify_waiters();
        }
    }
}

impl UpgradedSockets {
    /// Upgrade requests being served now: WebSockets, and handshakes not yet answered.
    pub fn open(&self) -> usize {
        self.0.open.load(Ordering::Acquire)
    }

    fn serve(&self) -> Served {
        self.0.open.fetch_add(1, Ordering::AcqRel);
        Served(self.0.clone())
    }

    /// Waits until none is open.
    pub async fn closed(&self) {
        loop {
            let none_open = self.0.none_open.notified();
            let mut none_open = std::pin::pin!(none_open);
            none_open.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            none_open.await;
        }
    }
}

/// The upgrade service for actix-http: `app` is the application every request goes
/// through (one instance per worker, built by actix-http when the worker starts). Each
/// request is served on a task of its own, counted in `sockets`; the connection's task
/// ends at once.
pub fn service<T, F, B>(
    app: F,
    sockets: UpgradedSockets,
) -> impl ServiceFactory<
    (Request, Framed<T, h1::Codec>),
    Config = (),
    Response = (),
    Error = actix_web::Error,
    InitError = (),
>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    F: ServiceFactory<
            Request,
            Config = AppConfig,
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    F::Service: 'static,
    B: MessageBody + 'static,
{
    let app = Rc::new(app);
    fn_factory(move || {
        let app = app.clone();
        let sockets = sockets.clone();
        async move {
            let app = Rc::new(app.new_service(AppConfig::default()).await?);
            Ok(fn_service(
                move |(req, framed): (Request, Framed<T, h1::Codec>)| {
                    let task = upgrade(&*app, req, framed, sockets.serve());
                    actix_web::rt::spawn(task);
                    std::future::ready(Ok(()))
                },
            ))
        }
    })
}

/// Serves one upgrade request and, when it was accepted, the WebSocket after it: the
/// task of one upgrade request, counted by `served` until the socket is dropped.
///
/// The socket is taken apart and the application called before the task's future is
/// made, so that the future holds only what it needs afterwards (a WebSocket holds it
/// for the whole call).
fn upgrade<T, S, B>(
    app: &S,
    req: Request,
    framed: Framed<T, h1::Codec>,
    served: Served,
) -> impl Future<Output = ()> + 'static
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    // Held until the socket is dropped: the connection counts as long as it is open.
    let permit = req.conn_data::<SharedPermit>().cloned();
    let parts = framed.into_parts();
    // Bytes the client sent right after the request head, at their size; the dispatcher's
    // buffers are freed here (not at the end of the call).
    let early = (!parts.read_buf.is_empty()).then(|| Bytes::copy_from_slice(&parts.read_buf));
    let unwritten = (!parts.write_buf.is_empty()).then(|| parts.write_buf.freeze());
    let mut codec = parts.codec;
    let shared = Rc::new(Shared {
        io: RefCell::new(parts.io),
        reader_gone: Cell::new(false),
        writer: Cell::new(None),
    });
    let inbound = Inbound {
        shared: shared.clone(),
        early,
        ended: false,
    };
    let payload: actix_http::BoxedPayloadStream = Box::pin(inbound);
    let (req, _none) = req.replace_payload(Payload::Stream { payload });
    // Boxed: the application's future is large and needed only until the response.
    let call = Box::pin(app.call(req));
    async move {
        let _held = (served, permit);
        respond(call, &shared, &mut codec, unwritten).await;
    }
}

/// Writes the application's answer to an upgrade request and, for a `101`, the WebSocket
/// after it.
async fn respond<T, B, F>(
    call: Pin<Box<F>>,
    shared: &Shared<T>,
    codec: &mut h1::Codec,
    unwritten: Option<Bytes>,
) where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
    B: MessageBody + 'static,
{
    let res: Response<BoxBody> = match call.await {
        Ok(res) => res.map_into_boxed_body().into(),
        Err(e) => e.into(),
    };
    let (mut head, body) = res.into_parts();
    let mut out = BytesMut::with_capacity(512);
    if let Some(bytes) = unwritten {
        out.extend_from_slice(&bytes);
    }
    if head.status() == StatusCode::SWITCHING_PROTOCOLS {
        let encoded = codec.encode(h1::Message::Item((head, BodySize::Stream)), &mut out);
        if encoded.is_ok()
            && write_all(shared, out.freeze()).await.is_ok()
            && pump(shared, body).await.is_ok()
        {
            linger(shared).await;
        }
        return;
    }
    // Refused before the upgrade: the answer whole, then the connection ends.
    let body = actix_web::body::to_bytes(body).await.unwrap_or_default();
    head.head_mut().set_connection_type(ConnectionType::Close);
    let encoded = codec
        .encode(
            h1::Message::Item((head, BodySize::Sized(body.len() as u64))),
            &mut out,
        )
        .and_then(|()| codec.encode(h1::Message::Chunk(Some(body)), &mut out))
        .and_then(|()| codec.encode(h1::Message::Chunk(None), &mut out));
    if encoded.is_ok() && write_all(shared, out.freeze()).await.is_ok() {
        linger(shared).await;
    }
}

/// Writes the response body to the socket until it ends. An error means the connection is
/// to be dropped at once (the body failed: the session gave up on the client; or the
/// socket failed).
async fn pump<T: AsyncWrite + Unpin>(shared: &Shared<T>, body: BoxBody) -> io::Result<()> {
    let mut body = std::pin::pin!(body);
    let mut batch: [Bytes; WRITE_BATCH] = std::array::from_fn(|_| Bytes::new());
    loop {
        // Wait for the next chunk, then take whatever else is ready: one vectored write.
        let (count, ended) = poll_fn(|cx| {
            let mut count = 0;
            while count < WRITE_BATCH {
                match body.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(chunk))) => {
                        batch[count] = chunk;
                        count += 1;
                    }
                    Poll::Ready(Some(Err(_))) => {
                        return Poll::Ready(Err(io::Error::from(io::ErrorKind::ConnectionAborted)));
                    }
                    Poll::Ready(None) => return Poll::Ready(Ok((count, true))),
                    Poll::Pending if count == 0 => return Poll::Pending,
                    Poll::Pending => break,
                }
            }
            Poll::Ready(Ok((count, false)))
        })
        .await?;
        let written = write_batch(shared, &mut batch[..count]).await;
        // Written chunks still point at their frames' memory: let go of it now.
        batch[..count].fill(Bytes::new());
        written?;
        if ended {
            return Ok(());
        }
    }
}

/// Writes `bytes` whole.
async fn write_all<T: AsyncWrite + Unpin>(shared: &Shared<T>, bytes: Bytes) -> io::Result<()> {
    write_batch(shared, &mut [bytes]).await
}

/// Writes every chunk of `batch`, in order, with vectored writes (at most [`WRITE_BATCH`]
/// chunks); each chunk is emptied as it is written.
async fn write_batch<T: AsyncWrite + Unpin>(
    shared: &Shared<T>,
    batch: &mut [Bytes],
) -> io::Result<()> {
    let mut first = 0;
    loop {
        while first < batch.len() && batch[first].is_empty() {
            first += 1;
        }
        let rest = &batch[first..];
        if rest.is_empty() {
            return Ok(());
        }
        let written = poll_fn(|cx| {
            let mut io = shared.io.borrow_mut();
            if let [only] = rest {
                return Pin::new(&mut *io).poll_write(cx, only);
            }
            let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
            let n = rest.len().min(WRITE_BATCH);
            for (slice, chunk) in slices.iter_mut().zip(rest) {
                *slice = IoSlice::new(chunk);
            }
            Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n])
        })
        .await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let mut left = written;
        for chunk in &mut batch[first..] {
            if left == 0 {
                break;
            }
            let n = left.min(chunk.len());
            chunk.advance(n);
            left -= n;
        }
    }
}

/// The response has ended: sends FIN, waits until the session no longer reads, then gives
/// the client [`LINGER`] to close its side (what it still sends is discarded), so that
/// the last frames are not cut off by a reset.
async fn linger<T: AsyncRead + AsyncWrite + Unpin>(shared: &Shared<T>) {
    let _ = poll_fn(|cx| Pin::new(&mut *shared.io.borrow_mut()).poll_shutdown(cx)).await;
    poll_fn(|cx| {
        if shared.reader_gone.get() {
            Poll::Ready(())
        } else {
            shared.writer.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    })
    .await;
    let drain = poll_fn(|cx| {
        loop {
            let mut buf = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut buf);
            match Pin::new(&mut *shared.io.borrow_mut()).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    });
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// The upgraded request's payload: the client's bytes, read from the socket when the
/// session asks for them.
struct Inbound<T> {
    shared: Rc<Shared<T>>,
    /// Bytes that arrived with the request head.
    early: Option<Bytes>,
    /// End of stream or an error was reported.
    ended: bool,
}

impl<T: AsyncRead + Unpin> Stream for Inbound<T> {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(early) = this.early.take() {
            return Poll::Ready(Some(Ok(early)));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let mut buf = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = ReadBuf::uninit(&mut buf);
        match Pin::new(&mut *this.shared.io.borrow_mut()).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(Bytes::copy_from_slice(buf.filled())))),
            Poll::Ready(Err(e)) => {
                this.ended = true;
                Poll::Ready(Some(Err(PayloadError::Io(e))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Drop for Inbound<T> {
    fn drop(&mut self) {
        self.shared.reader_gone.set(true);
        if let Some(waker) = self.shared.writer.take() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closed_waits_for_the_last_served_socket() {
        let sockets = UpgradedSockets::default();
        tokio::time::timeout(Duration::from_secs(5), sockets.closed())
            .await
            .expect("none open: closed at once");
        let (a, b) = (sockets.serve(), sockets.serve());
        assert_eq!(sockets.open(), 2);
        let waiter = tokio::spawn({
            let sockets = sockets.clone();
            async move { sockets.closed().await }
        });
        drop(a);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "one socket is still open");
        assert_eq!(sockets.open(), 1);
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the last socket closed")
            .unwrap();
        assert_eq!(sockets.open(), 0);
    }
}
