//! A bounded reader of client WebSocket frames (RFC 6455, server side).
//!
//! actix-ws's own `MessageStream` keeps a frame in memory until it is complete, whatever
//! its declared length, before it checks its size limit: a client announcing a huge frame
//! could make the server buffer all of it. This decoder never holds more than one message
//! of at most the configured limit (plus one read chunk and a 14-byte header):
//!
//! - a data message (text or binary, fragmented or not) whose size passes the limit is
//!   *skipped* as its bytes arrive, counted but never stored, and reported once complete as
//!   [`Incoming::TooLarge`] with its exact size, so the connection stays usable;
//! - binary messages are never stored at all (they are refused by size alone);
//! - control frames must be final and at most 125 bytes, as the RFC says.
//!
//! Anything that breaks the framing rules (unmasked client frame, reserved bits, unknown
//! opcode, a continuation out of place) is a [`FrameError`]: the connection is failed with
//! close code 1002.

use std::fmt;

use actix_web::dev::Payload;
use actix_web::web::{Bytes, BytesMut};
use futures_util::StreamExt as _;

/// Longest payload of a control frame (ping, pong, close).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// One complete client message, as the session handles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A text message within the limit, valid UTF-8.
    Text(String),
    /// A text message within the limit that is not valid UTF-8.
    InvalidUtf8,
    /// A binary message within the limit (its content is not kept).
    Binary {
        /// Its size in bytes.
        size: usize,
    },
    /// A data message above the limit; its bytes were discarded as they arrived.
    TooLarge {
        /// Its size in bytes (all fragments together).
        size: usize,
    },
    /// A ping, with its payload (to echo in the pong).
    Ping(Bytes),
    /// A pong.
    Pong,
    /// A close frame, with its code and reason when it carried them.
    Close(Option<(u16, String)>),
}

/// A violation of the framing rules; the connection cannot continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A client frame without the mask bit.
    Unmasked,
    /// RSV bits set although no extension was negotiated.
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    UnknownOpcode(u8),
    /// A ping, pong or close that is fragmented or longer than 125 bytes.
    BadControlFrame,
    /// A close frame whose payload is one byte, or whose reason is not UTF-8.
    BadClosePayload,
    /// A continuation frame with no message to continue, or a new message while one is
    /// still unfinished.
    BadContinuation,
    /// A 64-bit length with its most significant bit set.
    BadLength,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unmasked => f.write_str("unmasked client frame"),
            Self::ReservedBits => f.write_str("reserved bits set"),
            Self::UnknownOpcode(op) => write!(f, "unknown opcode {op:#x}"),
            Self::BadControlFrame => f.write_str("fragmented or oversized control frame"),
            Self::BadClosePayload => f.write_str("malformed close payload"),
            Self::BadContinuation => f.write_str("continuation frame out of place"),
            Self::BadLength => f.write_str("invalid payload length"),
        }
    }
}

impl std::error::Error for FrameError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataKind {
    Text,
    Binary,
}

/// A data message whose final frame has not arrived yet.
#[derive(Debug)]
struct Partial {
    kind: DataKind,
    /// Bytes announced so far, all fragments together.
    size: u64,
    /// The unmasked text received so far; empty (and unused) for binary and oversize
    /// messages.
    text: BytesMut,
    /// Whether the message passed the limit (its bytes are being skipped).
    oversize: bool,
}

impl Partial {
    fn finish(self) -> Incoming {
        let size = usize::try_from(self.size).unwrap_or(usize::MAX);
        if self.oversize {
            return Incoming::TooLarge { size };
        }
        match self.kind {
            DataKind::Binary => Incoming::Binary { size },
            DataKind::Text => match String::from_utf8(self.text.to_vec()) {
                Ok(text) => Incoming::Text(text),
                Err(_) => Incoming::InvalidUtf8,
            },
        }
    }
}

/// What handling one data frame did.
enum Step {
    /// It completed a message.
    Done(Incoming),
    /// It was consumed (stored as a fragment, or its payload is being skipped).
    Consumed,
    /// It is not complete in the buffer yet; nothing was consumed.
    NeedMore,
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: u8,
    len: u64,
    mask: [u8; 4],
    /// Header length in bytes (2 to 14).
    size: usize,
}

/// The framing state machine: feed it bytes in a [`BytesMut`], take messages out.
#[derive(Debug)]
pub struct FrameDecoder {
    limit: u64,
    message: Option<Partial>,
    /// Payload bytes of the current frame still to discard, and whether that frame is final.
    skipping: Option<(u64, bool)>,
}

impl FrameDecoder {
    /// A decoder refusing data messages larger than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit: u64::try_from(limit).unwrap_or(u64::MAX),
            message: None,
            skipping: None,
        }
    }

    /// Bytes of an unfinished text message the decoder holds (never more than the limit).
    pub fn buffered(&self) -> usize {
        self.message.as_ref().map_or(0, |m| m.text.len())
    }

    /// Consumes what it can from `buf` and returns the next complete message, or `None` when
    /// more bytes are needed. Bytes of a skipped frame are dropped from `buf` as they come.
    ///
    /// # Errors
    /// A [`FrameError`] when the client broke the framing rules.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, FrameError> {
        loop {
            if let Some((remaining, fin)) = self.skipping {
                let available = u64::try_from(buf.len()).unwrap_or(u64::MAX);
                let take = remaining.min(available);
                // `take` is at most `buf.len()`, so it fits a usize.
                let _ = buf.split_to(usize::try_from(take).unwrap_or(buf.len()));
                if take < remaining {
                    self.skipping = Some((remaining - take, fin));
                    return Ok(None);
                }
                self.skipping = None;
                if fin && let Some(message) = self.message.take() {
                    return Ok(Some(message.finish()));
                }
                continue;
            }

            let Some(header) = parse_header(buf)? else {
                return Ok(None);
            };
            match header.opcode {
                0x8..=0xA => {
                    if !header.fin || header.len > MAX_CONTROL_PAYLOAD {
                        return Err(FrameError::BadControlFrame);
                    }
                    let Some(payload) = take_frame(buf, &header) else {
                        return Ok(None);
                    };
                    return control(header.opcode, payload).map(Some);
                }
                0x0..=0x2 => match self.data_frame(buf, &header)? {
                    Step::Done(message) => return Ok(Some(message)),
                    Step::Consumed => {}
                    Step::NeedMore => return Ok(None),
                },
                other => return Err(FrameError::UnknownOpcode(other)),
            }
        }
    }

    /// Handles a text, binary or continuation frame whose header is at the start of `buf`.
    fn data_frame(&mut self, buf: &mut BytesMut, header: &Header) -> Result<Step, FrameError> {
        let continuation = header.opcode == 0x0;
        match (&self.message, continuation) {
            (None, true) | (Some(_), false) => return Err(FrameError::BadContinuation),
            _ => {}
        }
        let (kind, announced, oversize) = match &self.message {
            Some(m) => (m.kind, m.size, m.oversize),
            None if header.opcode == 0x1 => (DataKind::Text, 0, false),
            None => (DataKind::Binary, 0, false),
        };
        let size = announced.saturating_add(header.len);
        let oversize = oversize || size > self.limit;
        let stores = kind == DataKind::Text && !oversize;

        if !stores {
            // Skip the payload as it arrives; remember only the size.
            let _ = buf.split_to(header.size);
            let message = self.message.get_or_insert_with(|| Partial {
                kind,
                size: 0,
                text: BytesMut::new(),
                oversize: false,
            });
            message.size = size;
            if oversize && !message.oversize {
                message.oversize = true;
                message.text = BytesMut::new();
            }
            self.skipping = Some((header.len, header.fin));
            return Ok(Step::Consumed);
        }

        let Some(payload) = take_frame(buf, header) else {
            return Ok(Step::NeedMore);
        };
        let message = self.message.get_or_insert_with(|| Partial {
            kind,
            size: 0,
            text: BytesMut::new(),
            oversize: false,
        });
        message.size = size;
        message.text.extend_from_slice(&payload);
        if header.fin
            && let Some(done) = self.message.take()
        {
            return Ok(Step::Done(done.finish()));
        }
        Ok(Step::Consumed)
    }
}

/// Parses the header at the start of `buf` without consuming it; `None` if incomplete.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    if second & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let opcode = first & 0x0F;
    if !matches!(opcode, 0x0..=0x2 | 0x8..=0xA) {
        return Err(FrameError::UnknownOpcode(opcode));
    }
    let (len, at) = match second & 0x7F {
        126 => {
            let Some(bytes) = buf.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut raw = [0u8; 8];
            raw.copy_from_slice(bytes);
            let len = u64::from_be_bytes(raw);
            if len >> 63 != 0 {
                return Err(FrameError::BadLength);
            }
            (len, 10)
        }
        short => (u64::from(short), 2),
    };
    let Some(mask) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin: first & 0x80 != 0,
        opcode,
        len,
        mask: [mask[0], mask[1], mask[2], mask[3]],
        size: at + 4,
    }))
}

/// Takes a whole frame off `buf` and returns its unmasked payload; `None` (and `buf`
/// untouched) until all of it has arrived. Only called for frames of bounded length.
fn take_frame(buf: &mut BytesMut, header: &Header) -> Option<BytesMut> {
    let len = usize::try_from(header.len).ok()?;
    if buf.len() < header.size.checked_add(len)? {
        return None;
    }
    let _ = buf.split_to(header.size);
    let mut payload = buf.split_to(len);
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= header.mask[i & 3];
    }
    Some(payload)
}

fn control(opcode: u8, payload: BytesMut) -> Result<Incoming, FrameError> {
    match opcode {
        0x9 => Ok(Incoming::Ping(payload.freeze())),
        0xA => Ok(Incoming::Pong),
        _ => match payload.len() {
            0 => Ok(Incoming::Close(None)),
            1 => Err(FrameError::BadClosePayload),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let reason =
                    std::str::from_utf8(&payload[2..]).map_err(|_| FrameError::BadClosePayload)?;
                Ok(Incoming::Close(Some((code, reason.to_owned()))))
            }
        },
    }
}

/// Why reading stopped.
#[derive(Debug)]
pub enum ReadError {
    /// The client broke the framing rules.
    Frame(FrameError),
    /// The connection failed.
    Io(String),
}

/// Reads [`Incoming`] messages off a request's raw payload.
pub struct FrameReader {
    payload: Payload,
    buf: BytesMut,
    decoder: FrameDecoder,
    eof: bool,
}

impl FrameReader {
    /// A reader over `payload` refusing data messages above `limit` bytes.
    pub fn new(payload: Payload, limit: usize) -> Self {
        Self {
            payload,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(limit),
            eof: false,
        }
    }

    /// The next message; `None` once the client's side of the connection has ended.
    ///
    /// Cancel-safe: its only await is the payload stream's `next`, and bytes read are kept
    /// in the reader before anything else happens, so it can sit in a `select!`.
    pub async fn next(&mut self) -> Option<Result<Incoming, ReadError>> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(message)) => return Some(Ok(message)),
                Ok(None) => {}
                Err(e) => {
                    self.eof = true;
                    self.buf.clear();
                    return Some(Err(ReadError::Frame(e)));
                }
            }
            if self.eof {
                return None;
            }
            match self.payload.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    self.eof = true;
                    return Some(Err(ReadError::Io(e.to_string())));
                }
                None => self.eof = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= usize::from(u16::MAX) {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
        out
    }

    /// Feeds `bytes` one chunk of `chunk` bytes at a time and collects every message.
    fn decode_all(
        limit: usize,
        bytes: &[u8],
        chunk: usize,
    ) -> (Vec<Incoming>, Result<(), FrameError>, usize) {
        let mut decoder = FrameDecoder::new(limit);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut peak = 0;
        for piece in bytes.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            peak = peak.max(buf.len());
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(m)) => out.push(m),
                    Ok(None) => break,
                    Err(e) => return (out, Err(e), peak),
                }
            }
        }
        (out, Ok(()), peak)
    }

    #[test]
    fn text_binary_and_control_frames() {
        let mut bytes = frame(true, 0x1, br#"{"type":"offer"}"#);
        bytes.extend(frame(true, 0x2, &[1, 2, 3]));
        bytes.extend(frame(true, 0x9, b"hi"));
        bytes.extend(frame(true, 0xA, b""));
        bytes.extend(frame(true, 0x8, &[0x03, 0xE8, b'b', b'y', b'e']));
        for chunk in [1, 3, 7, 1000] {
            let (out, res, _) = decode_all(1000, &bytes, chunk);
            res.unwrap();
            assert_eq!(
                out,
                vec![
                    Incoming::Text(r#"{"type":"offer"}"#.into()),
                    Incoming::Binary { size: 3 },
                    Incoming::Ping(Bytes::from_static(b"hi")),
                    Incoming::Pong,
                    Incoming::Close(Some((1000, "bye".into()))),
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn fragmented_text_with_interleaved_ping() {
        let mut bytes = frame(false, 0x1, b"{\"a\":");
        bytes.extend(frame(true, 0x9, b""));
        bytes.extend(frame(false, 0x0, b"\"\xC3"));
        bytes.extend(frame(true, 0x0, b"\xA9\"}"));
        let (out, res, _) = decode_all(1000, &bytes, 2);
        res.unwrap();
        assert_eq!(
            out,
            vec![
                Incoming::Ping(Bytes::new()),
                Incoming::Text("{\"a\":\"é\"}".into())
            ]
        );
    }

    #[test]
    fn oversize_single_frame_is_skipped_and_reported_exactly() {
        let big = vec![b'x'; 70_000];
        let mut bytes = frame(true, 0x1, &big);
        bytes.extend(frame(true, 0x1, b"{}"));
        let (out, res, peak) = decode_all(1000, &bytes, 4096);
        res.unwrap();
        assert_eq!(
            out,
            vec![
                Incoming::TooLarge { size: 70_000 },
                Incoming::Text("{}".into())
            ]
        );
        // Never more than one read chunk in memory.
        assert!(peak <= 4096, "peak {peak}");
    }

    #[test]
    fn oversize_fragmented_message_counts_every_fragment() {
        let mut bytes = frame(false, 0x1, &[b'a'; 600]);
        bytes.extend(frame(false, 0x0, &[b'b'; 600]));
        bytes.extend(frame(true, 0xA, b""));
        bytes.extend(frame(true, 0x0, &[b'c'; 10]));
        bytes.extend(frame(true, 0x1, b"ok"));
        let (out, res, _) = decode_all(1000, &bytes, 100);
        res.unwrap();
        assert_eq!(
            out,
            vec![
                Incoming::Pong,
                Incoming::TooLarge { size: 1210 },
                Incoming::Text("ok".into())
            ]
        );
    }

    #[test]
    fn exactly_at_the_limit_is_kept() {
        let text = "é".repeat(500); // 1000 bytes
        let (out, res, _) = decode_all(1000, &frame(true, 0x1, text.as_bytes()), 64);
        res.unwrap();
        assert_eq!(out, vec![Incoming::Text(text)]);
        let (out, _, _) = decode_all(999, &frame(true, 0x1, "é".repeat(500).as_bytes()), 64);
        assert_eq!(out, vec![Incoming::TooLarge { size: 1000 }]);
    }

    #[test]
    fn huge_declared_length_is_never_buffered() {
        // Announces 2^62 bytes, sends a few: nothing is kept, no message yet.
        let mut bytes = vec![0x81, 0x80 | 127];
        bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
        bytes.extend_from_slice(&MASK);
        bytes.extend(vec![0u8; 50_000]);
        let mut decoder = FrameDecoder::new(65_536);
        let mut buf = BytesMut::new();
        for piece in bytes.chunks(8192) {
            buf.extend_from_slice(piece);
            assert_eq!(decoder.decode(&mut buf), Ok(None));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn invalid_utf8_and_binary() {
        let mut bytes = frame(true, 0x1, b"\xFF\xFE");
        bytes.extend(frame(true, 0x2, &[0; 5000]));
        let (out, res, _) = decode_all(1000, &bytes, 512);
        res.unwrap();
        assert_eq!(
            out,
            vec![Incoming::InvalidUtf8, Incoming::TooLarge { size: 5000 }]
        );
    }

    #[test]
    fn protocol_violations() {
        let unmasked = vec![0x81, 0x02, b'h', b'i'];
        assert_eq!(decode_all(100, &unmasked, 10).1, Err(FrameError::Unmasked));
        let mut rsv = frame(true, 0x1, b"x");
        rsv[0] |= 0x40;
        assert_eq!(decode_all(100, &rsv, 10).1, Err(FrameError::ReservedBits));
        assert_eq!(
            decode_all(100, &frame(true, 0x3, b""), 10).1,
            Err(FrameError::UnknownOpcode(3))
        );
        assert_eq!(
            decode_all(100, &frame(false, 0x9, b""), 10).1,
            Err(FrameError::BadControlFrame)
        );
        assert_eq!(
            decode_all(1000, &frame(true, 0x9, &[0; 126]), 10).1,
            Err(FrameError::BadControlFrame)
        );
        assert_eq!(
            decode_all(100, &frame(true, 0x0, b"x"), 10).1,
            Err(FrameError::BadContinuation)
        );
        let mut two_starts = frame(false, 0x1, b"x");
        two_starts.extend(frame(true, 0x1, b"y"));
        assert_eq!(
            decode_all(100, &two_starts, 10).1,
            Err(FrameError::BadContinuation)
        );
        assert_eq!(
            decode_all(100, &frame(true, 0x8, &[3]), 10).1,
            Err(FrameError::BadClosePayload)
        );
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        huge.extend_from_slice(&MASK);
        assert_eq!(decode_all(100, &huge, 100).1, Err(FrameError::BadLength));
    }
}
