//! Property tests of the server's own parsers: the WebSocket frame decoder under arbitrary
//! bytes and arbitrary chunking, and TURN URI parsing.
//!
//! CI runs proptest's default case count; `PROPTEST_CASES=20000 cargo test -p
//! telcall-server --test it properties` runs longer.

use actix_web::web::{Bytes, BytesMut};
use proptest::prelude::*;
use telcall_server::turn::{TurnTransport, TurnUri};
use telcall_server::ws::frames::{FrameDecoder, FrameError, Incoming};

/// Longest frame header: 2 bytes, a 64-bit length, a 4-byte mask.
const MAX_HEADER: usize = 14;
/// Longest control-frame payload.
const MAX_CONTROL: usize = 125;

/// What decoding a byte stream produced: the messages, then the framing error if any.
type Outcome = (Vec<Incoming>, Option<FrameError>);

/// Feeds `bytes` to a fresh decoder in pieces of the given sizes (cycled; the rest in one
/// piece), checking after every piece that the decoder holds no more than it may.
fn decode_chunked(limit: usize, bytes: &[u8], sizes: &[usize]) -> Result<Outcome, TestCaseError> {
    let mut decoder = FrameDecoder::new(limit);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut sizes = sizes.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => out.push(message),
                Ok(None) => break,
                Err(e) => return Ok((out, Some(e))),
            }
        }
        // Never more than one message of at most the limit, plus one frame's header (or one
        // control frame) still incomplete in the buffer.
        prop_assert!(
            decoder.buffered() <= limit,
            "holds {} > limit {limit}",
            decoder.buffered()
        );
        prop_assert!(
            buf.len() < limit.max(MAX_CONTROL) + MAX_HEADER,
            "left {} bytes in the buffer (limit {limit})",
            buf.len()
        );
    }
    Ok((out, None))
}

/// How a frame spells its payload length.
#[derive(Debug, Clone, Copy)]
enum LenForm {
    Shortest,
    Sixteen,
    SixtyFour,
}

/// A masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4], form: LenForm) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let len = payload.len();
    match form {
        LenForm::Shortest if len < 126 => out.push(0x80 | len as u8),
        LenForm::Shortest | LenForm::Sixteen if len <= usize::from(u16::MAX) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

/// One message of a well-formed client stream.
#[derive(Debug, Clone)]
enum Message {
    /// A text (`binary == false`) or binary message, in fragments, with control frames
    /// interleaved after some fragments.
    Data {
        binary: bool,
        fragments: Vec<(Vec<u8>, Option<Control>)>,
    },
    /// A control frame on its own.
    Control(Control),
}

#[derive(Debug, Clone)]
enum Control {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

impl Control {
    fn encode(&self, mask: [u8; 4], form: LenForm) -> Vec<u8> {
        match self {
            Self::Ping(p) => frame(true, 0x9, p, mask, form),
            Self::Pong(p) => frame(true, 0xA, p, mask, form),
            Self::Close(None) => frame(true, 0x8, &[], mask, form),
            Self::Close(Some((code, reason))) => {
                let mut p = code.to_be_bytes().to_vec();
                p.extend_from_slice(reason.as_bytes());
                frame(true, 0x8, &p, mask, form)
            }
        }
    }

    fn expected(&self) -> Incoming {
        match self {
            Self::Ping(p) => Incoming::Ping(Bytes::copy_from_slice(p)),
            Self::Pong(_) => Incoming::Pong,
            Self::Close(c) => Incoming::Close(c.clone()),
        }
    }
}

fn control() -> impl Strategy<Value = Control> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..=MAX_CONTROL).prop_map(Control::Ping),
        proptest::collection::vec(any::<u8>(), 0..=MAX_CONTROL).prop_map(Control::Pong),
        Just(Control::Close(None)),
        (any::<u16>(), "\\PC{0,30}")
            .prop_filter("reason fits a control frame", |(_, r)| r.len() <= 123)
            .prop_map(|(c, r)| Control::Close(Some((c, r)))),
    ]
}

/// A payload: text, arbitrary bytes (maybe not UTF-8), sometimes past a small limit.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "\\PC{0,40}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        3 => (
            any::<bool>(),
            proptest::collection::vec((payload(), proptest::option::weighted(0.2, control())), 1..4),
        )
            .prop_map(|(binary, fragments)| Message::Data { binary, fragments }),
        1 => control().prop_map(Message::Control),
    ]
}

fn len_form() -> impl Strategy<Value = LenForm> {
    prop_oneof![
        4 => Just(LenForm::Shortest),
        1 => Just(LenForm::Sixteen),
        1 => Just(LenForm::SixtyFour),
    ]
}

/// Encodes `messages` as a client would (masks and length forms varying), and the messages
/// a decoder with `limit` must produce from them.
fn encode(
    messages: &[Message],
    limit: usize,
    masks: &[([u8; 4], LenForm)],
) -> (Vec<u8>, Vec<Incoming>) {
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    let mut style = masks.iter().copied().cycle();
    let mut next_style = || style.next().unwrap_or(([0; 4], LenForm::Shortest));
    for message in messages {
        match message {
            Message::Control(c) => {
                let (mask, form) = next_style();
                bytes.extend(c.encode(mask, form));
                expected.push(c.expected());
            }
            Message::Data { binary, fragments } => {
                let mut whole = Vec::new();
                for (i, (part, interleaved)) in fragments.iter().enumerate() {
                    let fin = i + 1 == fragments.len();
                    let opcode = match (i, binary) {
                        (0, true) => 0x2,
                        (0, false) => 0x1,
                        _ => 0x0,
                    };
                    let (mask, form) = next_style();
                    bytes.extend(frame(fin, opcode, part, mask, form));
                    whole.extend_from_slice(part);
                    // A control frame may sit between the fragments of a message.
                    if let Some(c) = interleaved.as_ref().filter(|_| !fin) {
                        let (mask, form) = next_style();
                        bytes.extend(c.encode(mask, form));
                        expected.push(c.expected());
                    }
                }
                let size = whole.len();
                expected.push(if size > limit {
                    Incoming::TooLarge { size }
                } else if *binary {
                    Incoming::Binary { size }
                } else {
                    match String::from_utf8(whole) {
                        Ok(text) => Incoming::Text(text),
                        Err(_) => Incoming::InvalidUtf8,
                    }
                });
            }
        }
    }
    (bytes, expected)
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(
        prop_oneof![3 => 1usize..8, 1 => 8usize..200, 1 => 200usize..2000],
        1..16,
    )
}

proptest! {
    /// Arbitrary bytes: no panic, the same outcome however they are split, and never more
    /// buffered than the limit allows.
    #[test]
    fn arbitrary_bytes_same_outcome_however_split(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        limit in 0usize..300,
        sizes in chunk_sizes(),
    ) {
        let whole = decode_chunked(limit, &bytes, &[bytes.len().max(1)])?;
        let chunked = decode_chunked(limit, &bytes, &sizes)?;
        prop_assert_eq!(chunked, whole);
    }

    /// Arbitrary bytes behind a valid masked header, so the decoder gets past the first
    /// checks and into lengths, fragments and skipping.
    #[test]
    fn noise_after_valid_headers_same_outcome_however_split(
        parts in proptest::collection::vec(
            (any::<bool>(), prop_oneof![Just(0u8), Just(1), Just(2), Just(8), Just(9), Just(10), 0u8..16],
             proptest::collection::vec(any::<u8>(), 0..200), any::<[u8; 4]>(), len_form()),
            0..6,
        ),
        noise in proptest::collection::vec(any::<u8>(), 0..40),
        limit in 0usize..300,
        sizes in chunk_sizes(),
    ) {
        let mut bytes = Vec::new();
        for (fin, opcode, payload, mask, form) in &parts {
            bytes.extend(frame(*fin, *opcode, payload, *mask, *form));
        }
        bytes.extend(noise);
        let whole = decode_chunked(limit, &bytes, &[bytes.len().max(1)])?;
        let chunked = decode_chunked(limit, &bytes, &sizes)?;
        prop_assert_eq!(chunked, whole);
    }

    /// A well-formed client stream decodes to exactly the messages sent (oversize ones
    /// reported with their size), however it is split.
    #[test]
    fn well_formed_streams_decode_to_what_was_sent(
        messages in proptest::collection::vec(message(), 0..8),
        masks in proptest::collection::vec((any::<[u8; 4]>(), len_form()), 1..8),
        limit in 0usize..400,
        sizes in chunk_sizes(),
    ) {
        let (bytes, expected) = encode(&messages, limit, &masks);
        let (got, error) = decode_chunked(limit, &bytes, &sizes)?;
        prop_assert_eq!(error, None);
        prop_assert_eq!(got, expected);
    }

    /// A frame announcing a huge length is skipped as its bytes arrive: nothing of it is
    /// held, and the next message is read normally.
    #[test]
    fn announced_huge_frames_are_never_buffered(
        announced in (1u64 << 20)..(1u64 << 62),
        text in any::<bool>(),
        sent in 0usize..5000,
        sizes in chunk_sizes(),
    ) {
        let mut bytes = vec![0x80 | if text { 0x1 } else { 0x2 }, 0x80 | 127];
        bytes.extend_from_slice(&announced.to_be_bytes());
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        bytes.extend(std::iter::repeat_n(b'x', sent));
        let (got, error) = decode_chunked(65_536, &bytes, &sizes)?;
        prop_assert_eq!(got, vec![]);
        prop_assert_eq!(error, None);
    }

    /// Any string: TURN URI parsing answers (never panics), and what it accepts is a
    /// `turn:`/`turns:` URI with a usable host and port that parses the same again.
    #[test]
    fn turn_uri_arbitrary_text(raw in prop_oneof![
        "\\PC{0,40}",
        "turns?:[\\[\\]a-z0-9.:_?=/-]{0,30}",
    ]) {
        if let Ok(uri) = TurnUri::parse(&raw) {
            prop_assert!(raw.starts_with("turn:") || raw.starts_with("turns:"));
            prop_assert!(!uri.host.is_empty());
            prop_assert!(uri.port != 0);
            // A colon in the host is only possible inside brackets (an IPv6 literal).
            if uri.host.contains(':') {
                prop_assert!(uri.host.parse::<std::net::Ipv6Addr>().is_ok(), "host {:?} of {raw:?}", uri.host);
            }
            prop_assert_eq!(TurnUri::parse(&uri.uri), Ok(uri.clone()));
        }
    }

    /// A URI built from valid parts parses back to those parts.
    #[test]
    fn turn_uri_from_parts_parses_back(
        secure in any::<bool>(),
        host in prop_oneof![
            "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?){0,3}",
            any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
            any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
        ],
        port in proptest::option::of(1u16..=u16::MAX),
        transport in proptest::option::of(prop_oneof![Just(TurnTransport::Udp), Just(TurnTransport::Tcp)]),
    ) {
        let mut raw = format!("{}:{host}", if secure { "turns" } else { "turn" });
        if let Some(p) = port {
            raw.push_str(&format!(":{p}"));
        }
        match transport {
            Some(TurnTransport::Udp) => raw.push_str("?transport=udp"),
            Some(TurnTransport::Tcp) => raw.push_str("?transport=tcp"),
            None => {}
        }
        let parsed = TurnUri::parse(&raw);
        prop_assert!(parsed.is_ok(), "refused {raw}: {parsed:?}");
        let parsed = parsed.unwrap_or_else(|_| unreachable!());
        prop_assert_eq!(parsed.host.as_str(), host.trim_start_matches('[').trim_end_matches(']'));
        prop_assert_eq!(parsed.port, port.unwrap_or(if secure { 5349 } else { 3478 }));
        prop_assert_eq!(parsed.secure, secure);
        prop_assert_eq!(parsed.transport, transport);
        prop_assert_eq!(parsed.uri, raw);
    }
}

/// Found by `turn_uri_arbitrary_text`: an IPv6 literal without brackets was split at its
/// last colon (`turn:2001:db8::1` became host `2001:db8:` port 1). RFC 7065 requires the
/// brackets, so it is refused.
#[test]
fn unbracketed_ipv6_turn_host_is_refused() {
    for bad in [
        "turn:2001:db8::1",
        "turn:::1",
        "turns:fe80::1:5349",
        "turn:a:b:3478",
    ] {
        assert!(TurnUri::parse(bad).is_err(), "{bad} was accepted");
    }
    let ok = TurnUri::parse("turn:[2001:db8::1]:3478").unwrap();
    assert_eq!((ok.host.as_str(), ok.port), ("2001:db8::1", 3478));
}
