//! The real connection loop (`http::connection::serve`) over arbitrary
//! bytes from a client: heads, `Content-Length` and chunked bodies,
//! pipelined requests, rejections, closing.
//!
//! Input: two bytes choosing a split point, then the bytes a client sends.
//! They are fed once whole and once in two reads split at that point; a
//! request split over many reads must be handled exactly like one sent
//! whole, so both runs must write the same responses (apart from `Date`
//! lines and `100 Continue`, which is sent only while a body is awaited).
//! The handler echoes each request it gets in hex, so the comparison covers
//! what the parser made of every request, not just the status codes. Limits
//! are small so the 431 and 413 paths are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_cache::config::Limits;
use push_cache::http::connection::{serve, ScriptedStream};
use push_cache::http::response;
use push_cache::http::{Handler, Request, ResponseWriter};
use std::fmt::Write;
use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

struct Echo(Limits);

impl Handler for Echo {
    type Answer = ();

    fn limits(&self) -> &Limits {
        &self.0
    }

    fn draining(&self) -> bool {
        false
    }

    fn precheck(&self, _: &Request<'_>, _: &mut ResponseWriter<'_>) -> Option<()> {
        None
    }

    async fn handle(&self, req: &Request<'_>, res: &mut ResponseWriter<'_>) {
        let mut text = format!("{} ", req.method.as_str());
        for part in [req.target, req.if_none_match.unwrap_or(b"-"), req.authorization.unwrap_or(b"-"), req.body] {
            for b in part {
                let _ = write!(text, "{b:02x}");
            }
            text.push(' ');
        }
        let framing = res.framing();
        if req.target == b"/stream" {
            res.start_stream(200, &[]);
            for piece in text.as_bytes().chunks(7) {
                res.buf().extend_from_slice(piece);
                let _ = res.send().await;
            }
        } else {
            response::with_type(res.buf(), 200, "text/plain", text.as_bytes(), framing);
        }
    }

    fn record(&self, _: &Request<'_>, _: (), _: Duration) {}
}

/// What the server writes when the client's bytes arrive in `reads`.
fn run(reads: &[&[u8]]) -> String {
    let limits = Limits { header_bytes: 512, body_bytes: 1024, ..Limits::default() };
    let handler = Echo(limits);
    let mut stream = ScriptedStream::new(reads.iter().copied());
    {
        let mut served = std::pin::pin!(serve(&mut stream, &handler));
        let polled = served.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(matches!(polled, Poll::Ready(())), "a scripted stream never waits");
    }
    assert!(stream.shut, "every connection ends with a FIN");
    let text = String::from_utf8(stream.written).expect("responses are ASCII");
    let text = text.replace("HTTP/1.1 100 Continue\r\n\r\n", "");
    text.split_inclusive("\r\n").filter(|line| !line.starts_with("Date: ")).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((split, bytes)) = data.split_first_chunk::<2>() else { return };
    let at = usize::from(u16::from_le_bytes(*split)) % (bytes.len() + 1);
    let whole = run(&[bytes]);
    let split = run(&[&bytes[..at], &bytes[at..]]);
    assert_eq!(whole, split, "sent whole vs split at {at}");
});
