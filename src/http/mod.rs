//! HTTP/1.1, hand-rolled on `httparse`: parsing (`request`, `chunked`),
//! writing (`response`) and the connection loop (`connection`), which serves
//! any [`Handler`] over any [`connection::Transport`].
//!
//! This layer knows nothing of routes or stores. The connection owns the
//! buffers, keep-alive, pipelining, body framing, limits and timeouts; a
//! handler turns one complete [`Request`] into one response, written with a
//! [`ResponseWriter`]. Usually that is a whole response appended to
//! [`ResponseWriter::buf`]. A large body is streamed instead:
//! [`ResponseWriter::start_stream`] writes the head (chunked framing for
//! HTTP/1.1, close-delimited for HTTP/1.0), the handler appends a slice to
//! `buf()`, calls [`ResponseWriter::send`] (which frames the slice as one
//! chunk, writes it to the socket and waits for the socket to take it), and
//! repeats; returning from `handle` ends the body. Memory stays bounded by a
//! slice whatever the body's length, and other tasks of the shard run while
//! the handler awaits.

pub mod chunked;
pub mod connection;
pub mod deadline;
pub mod request;
pub mod response;

pub use request::Request;
pub use response::ResponseWriter;

use crate::config::Limits;
use std::time::Duration;

/// What the connection loop calls to answer requests.
///
/// The futures are not `Send`: each shard serves its connections on its own
/// thread, so handlers may hold `Rc`s and `RefCell` borrows across awaits.
#[allow(async_fn_in_trait)]
pub trait Handler {
    /// What `handle` and `precheck` report about an answer (for example its
    /// status and route), handed back to `record`.
    type Answer;

    /// The connection limits and timeouts to apply.
    fn limits(&self) -> &Limits;

    /// True once the server stops: connections close after their current
    /// request and idle ones close at once.
    fn draining(&self) -> bool;

    /// Brackets every request from its parsed head to its queued answer,
    /// body reading included, so a stopping server can wait for them.
    fn request_started(&self) {}
    fn request_ended(&self) {}

    /// Called before `100 Continue` is sent for a request that asked for
    /// it: when the request would be refused anyway (unknown path, wrong
    /// method, missing credentials) write the whole refusal to `res` and
    /// return its answer; the client then never sends the body, and the
    /// connection closes after the refusal. `req.body` is empty here.
    fn precheck(&self, req: &Request<'_>, res: &mut ResponseWriter<'_>) -> Option<Self::Answer>;

    /// Answers a complete request (body included) through `res`.
    async fn handle(&self, req: &Request<'_>, res: &mut ResponseWriter<'_>) -> Self::Answer;

    /// Called once per answered request with the time from the complete
    /// request to the queued (or, streamed, the last written) answer.
    fn record(&self, req: &Request<'_>, answer: Self::Answer, elapsed: Duration);
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so any
/// string (a cache key, a registry subject) is exactly one path segment.
/// `api::router` decodes it back.
pub fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0xf)]));
        }
    }
    out
}
