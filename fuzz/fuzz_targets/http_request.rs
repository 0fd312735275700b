//! The request parser (`http::request`) over arbitrary bytes, read the way a
//! connection reads them: heads, `Content-Length` and chunked bodies, and
//! pipelined requests one after another.
//!
//! Input: two bytes choosing a split point, then the bytes a client sends.
//! The bytes are fed once whole and once in two reads split at that point;
//! SPEC section 3 says a request split over many reads is parsed the same as
//! one sent whole, so both must yield the same requests and the same error.
//! Limits are small so the 431 and 413 paths are reached; like the
//! connection, the parser never sees more than the header limit of a head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_cache::http::request::{decode_chunked, parse_head, BodyFraming, Chunked, ParseError, RequestHead};

const HEADER_LIMIT: usize = 512;
const BODY_LIMIT: usize = 1024;

/// What the parser made of the bytes, in order.
#[derive(Debug, PartialEq)]
enum Event {
    /// A complete request: its head (ranges relative to its own start) and body.
    Request(RequestHead, Vec<u8>),
    Rejected(ParseError),
}

/// Result of trying to take one request off the front of `buf`.
enum Step {
    Request(RequestHead, Vec<u8>, usize),
    NeedMore,
    Rejected(ParseError),
}

fn step(buf: &[u8]) -> Step {
    // The connection never buffers more than the header limit of a request
    // whose head is incomplete (`parse_head` leaves that to the caller), so
    // the head is judged on its first HEADER_LIMIT bytes at most.
    let head = match parse_head(&buf[..buf.len().min(HEADER_LIMIT)], HEADER_LIMIT, BODY_LIMIT) {
        Ok(Some(head)) => head,
        Ok(None) => return Step::NeedMore,
        Err(e) => return Step::Rejected(e),
    };
    assert!(head.len <= buf.len() && head.target.end <= head.len, "head ranges inside the head: {head:?}");
    let rest = &buf[head.len..];
    match head.framing {
        BodyFraming::None => Step::Request(head.clone(), Vec::new(), head.len),
        BodyFraming::Length(n) if rest.len() >= n => Step::Request(head.clone(), rest[..n].to_vec(), head.len + n),
        BodyFraming::Length(_) => Step::NeedMore,
        BodyFraming::Chunked => {
            let mut body = Vec::new();
            match decode_chunked(rest, &mut body, BODY_LIMIT) {
                Ok(Chunked::Done { consumed }) => {
                    assert!(consumed <= rest.len() && body.len() <= BODY_LIMIT);
                    Step::Request(head.clone(), body, head.len + consumed)
                }
                Ok(Chunked::Partial) => Step::NeedMore,
                Err(e) => Step::Rejected(e),
            }
        }
    }
}

/// Feeds `reads` one after another into a buffer, taking every complete
/// request after each read, like `http::connection` does.
fn run(reads: &[&[u8]]) -> Vec<Event> {
    let (mut buf, mut start, mut events) = (Vec::new(), 0, Vec::new());
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            match step(&buf[start..]) {
                Step::Request(head, body, used) => {
                    events.push(Event::Request(head, body));
                    start += used;
                }
                Step::NeedMore => break,
                Step::Rejected(e) => {
                    events.push(Event::Rejected(e));
                    return events;
                }
            }
        }
    }
    events
}

fuzz_target!(|data: &[u8]| {
    let Some((split, bytes)) = data.split_first_chunk::<2>() else { return };
    let at = usize::from(u16::from_le_bytes(*split)) % (bytes.len() + 1);
    let whole = run(&[bytes]);
    let split = run(&[&bytes[..at], &bytes[at..]]);
    assert_eq!(whole, split, "sent whole vs split at {at}");
});
