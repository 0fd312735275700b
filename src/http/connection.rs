//! One client connection: its read and write buffers, keep-alive,
//! pipelining, request bodies, the per-connection limits and timeouts, and
//! closing politely. Serves any [`Handler`] over any [`Transport`] (a TCP
//! stream in the server, an in-memory script in tests and the fuzzer).
//!
//! Buffers live as long as the connection and are reused by every request.
//! All complete requests already buffered are answered before the responses
//! are written back in one go, so a pipelined burst costs one write.
//!
//! Timeouts: a request head must arrive within the header timeout (between
//! requests the idle timeout applies); its whole body within the body
//! timeout, counted from the end of the head, however the bytes trickle in.
//! Each is a deadline the connection sets on its transport (over TCP swept
//! by the shard's coarse timer, see `deadline`), not a timer per read.
//!
//! The clock is read once when bytes arrive and once when a response is
//! ready; deadlines and the next request's start reuse the last reading.
//!
//! A chunked body is decoded as it arrives and its coded bytes are dropped
//! from the read buffer at once, so the work is linear in the body and the
//! buffer holds the head plus one read, not the coded body.
//!
//! Closing: after a refused request (400, 408, 413, ...) or a response that
//! ends the connection, the server sends its response and a FIN, then reads
//! and discards what the client still sends for a short while before
//! closing. Closing with unread bytes would make the kernel reset the
//! connection, and a reset can destroy the response before the client read it.

use super::deadline::{Registration, TimedStream};
use super::request::{
    oversized_head, parse_head, BodyFraming, Chunked, ChunkedDecoder, Method, ParseError, Request, RequestHead,
};
use super::response::{self, Framing, ResponseWriter};
use super::Handler;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

const INITIAL_BUFFER: usize = 4096;
/// Responses are flushed early when this much is waiting.
const FLUSH_AT: usize = 64 * 1024;
/// How much of a chunked body is read at once (its coded form is dropped as decoded).
const CHUNKED_READ: usize = 64 * 1024;
/// Before closing: how long, and how many bytes, the client's remaining input is read and discarded.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// A byte stream the connection can serve: a socket, or a script in tests.
#[allow(async_fn_in_trait)]
pub trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// Bounds every following read: one still waiting at `deadline` fails
    /// with `ErrorKind::TimedOut`.
    fn set_read_deadline(&mut self, deadline: Instant);
    /// Sends FIN (no more data from us); reading goes on.
    async fn shutdown_write(&mut self) -> io::Result<()>;
}

impl Transport for TimedStream<TcpStream> {
    fn set_read_deadline(&mut self, deadline: Instant) {
        self.deadline.set(deadline);
    }

    async fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown(std::net::Shutdown::Write).await.map_err(Into::into)
    }
}

/// Serves one TCP connection (see [`serve`]).
pub async fn serve_tcp<H: Handler>(stream: TcpStream, handler: &H) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(handler.limits().idle_timeout()));
    let mut stream = TimedStream { stream, deadline: Registration::new() };
    serve(&mut stream, handler).await;
}

/// Serves one connection until the client closes it, a limit ends it, or
/// the server drains.
pub async fn serve<S: Transport, H: Handler>(stream: &mut S, handler: &H) {
    let out = Vec::with_capacity(INITIAL_BUFFER);
    let mut conn = Connection { stream, input: ReadBuffer::new(), out, body: Vec::new(), now: Instant::now() };
    if let Err(e) = conn.run(handler).await {
        tracing::debug!(error = %e, "connection ended");
    }
}

struct Connection<'s, S> {
    stream: &'s mut S,
    input: ReadBuffer,
    out: Vec<u8>,
    /// Decoded chunked bodies.
    body: Vec<u8>,
    /// The last reading of the clock: when bytes last arrived or the last
    /// response was ready.
    now: Instant,
}

/// Why reading stopped.
enum Stop {
    /// The client closed, or stayed idle too long: just close.
    Quietly,
    /// Answer with this status and close.
    Reject(u16, &'static str),
}

impl From<ParseError> for Stop {
    fn from(e: ParseError) -> Stop {
        let reason = match e {
            ParseError::Malformed(why) => why,
            ParseError::HeadersTooLarge => "request header section too large",
            ParseError::TargetTooLong => "request target too long",
            ParseError::BodyTooLarge => "request body too large",
            ParseError::AmbiguousLength => "request has both Content-Length and Transfer-Encoding",
            ParseError::UnsupportedEncoding => "only the chunked transfer coding (alone) is supported",
            ParseError::Version => "only HTTP/1.0 and HTTP/1.1 are supported",
            ParseError::Expectation => "only the expectation 100-continue is supported",
        };
        Stop::Reject(e.status(), reason)
    }
}

/// What follows an answered request.
enum Next {
    KeepAlive,
    Close,
    Stop(Stop),
}

/// How reading a body ended.
enum Body {
    Ready,
    /// The handler refused the request before its body was sent.
    Refused,
}

impl<S: Transport> Connection<'_, S> {
    async fn run<H: Handler>(&mut self, handler: &H) -> io::Result<()> {
        let mut first = true;
        loop {
            let head = match self.next_head(first, handler).await? {
                Ok(head) => head,
                Err(stop) => return self.stop(stop).await,
            };
            first = false;
            handler.request_started();
            let next = self.answer(&head, handler).await;
            handler.request_ended();
            match next? {
                Next::KeepAlive => {}
                Next::Close => return self.close().await,
                Next::Stop(stop) => return self.stop(stop).await,
            }
        }
    }

    /// Reads until a complete request head is buffered. The first request
    /// of a connection, and every request once its first byte arrived, must
    /// complete its head within the header timeout; between requests the
    /// idle timeout applies.
    async fn next_head<H: Handler>(&mut self, first: bool, handler: &H) -> io::Result<Result<RequestHead, Stop>> {
        let limits = handler.limits();
        let mut started = (first || !self.input.is_empty()).then_some(self.now);
        loop {
            // Bytes beyond the header limit (pipelined after a chunked body)
            // are not looked at, as they would not have been read yet.
            let data = self.input.data();
            match parse_head(&data[..data.len().min(limits.header_bytes)], limits.header_bytes, limits.body_bytes) {
                Ok(Some(head)) => return Ok(Ok(head)),
                Ok(None) => {}
                Err(e) => return Ok(Err(e.into())),
            }
            self.flush().await?;
            if self.input.is_empty() && handler.draining() {
                return Ok(Err(Stop::Quietly));
            }
            let deadline = match started {
                Some(t) => t + limits.header_timeout(),
                None => self.now + limits.idle_timeout(),
            };
            match self.read_more(deadline, limits.header_bytes).await? {
                Read::Data => started = started.or(Some(self.now)),
                Read::Closed => return Ok(Err(Stop::Quietly)),
                Read::TimedOut if self.input.is_empty() => return Ok(Err(Stop::Quietly)),
                Read::TimedOut => return Ok(Err(Stop::Reject(408, "request header not received in time"))),
                Read::Full => return Ok(Err(oversized_head(self.input.data(), limits.header_bytes).into())),
            }
        }
    }

    /// Reads the body, runs the handler and consumes the request.
    async fn answer<H: Handler>(&mut self, head: &RequestHead, handler: &H) -> io::Result<Next> {
        let close = !head.keep_alive || handler.draining();
        let keep_alive_10 = head.minor == 0 && !close;
        let framing = Framing { head_only: head.method == Method::Head, close, keep_alive_10 };
        match self.read_body(head, framing, handler).await? {
            Ok(Body::Ready) => {}
            Ok(Body::Refused) => return Ok(Next::Close),
            Err(stop) => return Ok(Next::Stop(stop)),
        }
        let started = self.now;
        let data = self.input.data();
        let (body, in_buffer) = match head.framing {
            BodyFraming::Chunked => (&self.body[..], 0),
            BodyFraming::Length(n) => (&data[head.len..head.len + n], n),
            BodyFraming::None => (&[][..], 0),
        };
        let req = Request::new(head, data, body);
        let mut res = ResponseWriter::new(framing, head.minor, &mut self.out, &mut *self.stream);
        let answer = handler.handle(&req, &mut res).await;
        res.finish();
        let must_close = res.must_close();
        self.now = Instant::now();
        handler.record(&req, answer, self.now.saturating_duration_since(started));
        self.input.consume(head.len + in_buffer);
        if self.body.capacity() > 4 * FLUSH_AT {
            self.body = Vec::new();
        }
        if must_close {
            return Ok(Next::Close);
        }
        if self.out.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(if close { Next::Close } else { Next::KeepAlive })
    }

    /// Makes the whole body available: a `Content-Length` body stays in the
    /// input buffer after the head, a chunked one is decoded into `body`.
    /// Asks the handler before sending `100 Continue`.
    async fn read_body<H: Handler>(
        &mut self,
        head: &RequestHead,
        framing: Framing,
        handler: &H,
    ) -> io::Result<Result<Body, Stop>> {
        let limits = handler.limits();
        // Counted from the end of the head, once the body has to be waited for.
        let mut deadline = None;
        let mut chunked = ChunkedDecoder::new(limits.body_bytes);
        self.body.clear();
        let mut asked = false;
        loop {
            let have = &self.input.data()[head.len..];
            let have_len = have.len();
            let (done, max_input) = match head.framing {
                BodyFraming::None => (true, 0),
                BodyFraming::Length(n) => (have.len() >= n, head.len + n),
                BodyFraming::Chunked => match chunked.decode(have, &mut self.body) {
                    Ok(Chunked::Done { consumed }) => {
                        self.input.remove(head.len, consumed);
                        (true, 0)
                    }
                    Ok(Chunked::Partial) => {
                        self.input.remove(head.len, have_len);
                        (false, head.len + CHUNKED_READ)
                    }
                    Err(e) => return Ok(Err(e.into())),
                },
            };
            if done {
                return Ok(Ok(Body::Ready));
            }
            if head.expect_continue && !asked {
                asked = true;
                if self.refused(head, framing, handler) {
                    return Ok(Ok(Body::Refused));
                }
                self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            self.flush().await?;
            let deadline = *deadline.get_or_insert(self.now + limits.body_timeout());
            match self.read_more(deadline, max_input).await? {
                Read::Data => {}
                Read::Closed => return Ok(Err(Stop::Quietly)),
                Read::TimedOut => return Ok(Err(Stop::Reject(408, "request body not received in time"))),
                Read::Full => return Ok(Err(ParseError::BodyTooLarge.into())),
            }
        }
    }

    /// Lets the handler refuse a request that waits for `100 Continue`.
    fn refused<H: Handler>(&mut self, head: &RequestHead, framing: Framing, handler: &H) -> bool {
        let req = Request::new(head, self.input.data(), &[]);
        let framing = Framing { close: true, keep_alive_10: false, ..framing };
        let mut res = ResponseWriter::new(framing, head.minor, &mut self.out, &mut *self.stream);
        let Some(answer) = handler.precheck(&req, &mut res) else { return false };
        handler.record(&req, answer, Duration::ZERO);
        true
    }

    /// Reads what arrived, waiting at most until `deadline`; notes the time
    /// the bytes came.
    async fn read_more(&mut self, deadline: Instant, max: usize) -> io::Result<Read> {
        if deadline <= self.now {
            return Ok(Read::TimedOut);
        }
        self.stream.set_read_deadline(deadline);
        let Some(spare) = self.input.spare(max) else { return Ok(Read::Full) };
        match self.stream.read(spare).await {
            Ok(0) => Ok(Read::Closed),
            Ok(n) => {
                self.input.filled(n);
                self.now = Instant::now();
                Ok(Read::Data)
            }
            Err(e) if e.kind() == ErrorKind::TimedOut => Ok(Read::TimedOut),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(Read::Closed),
            Err(e) => Err(e),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
            if self.out.capacity() > 4 * FLUSH_AT {
                self.out.shrink_to(INITIAL_BUFFER);
            }
        }
        self.input.shrink_if_idle();
        Ok(())
    }

    async fn stop(&mut self, stop: Stop) -> io::Result<()> {
        match stop {
            Stop::Quietly => {
                self.flush().await?;
                let _ = self.stream.shutdown_write().await;
                Ok(())
            }
            Stop::Reject(status, reason) => {
                let framing = Framing { head_only: false, close: true, keep_alive_10: false };
                response::error(&mut self.out, status, reason, framing);
                self.close().await
            }
        }
    }

    /// Sends what is queued and a FIN, then lingers (see the module doc).
    async fn close(&mut self) -> io::Result<()> {
        self.flush().await?;
        let _ = self.stream.shutdown_write().await;
        self.stream.set_read_deadline(Instant::now() + LINGER_TIME);
        let mut scratch = [0u8; 4096];
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            match self.stream.read(&mut scratch).await {
                Ok(n) if n > 0 => discarded += n,
                _ => break,
            }
        }
        Ok(())
    }
}

enum Read {
    Data,
    Closed,
    TimedOut,
    /// The buffer reached its limit without a complete request.
    Full,
}

/// Bytes received but not yet consumed, in a buffer that grows up to the
/// request limits and shrinks back when idle.
struct ReadBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuffer {
    fn new() -> Self {
        ReadBuffer { buf: vec![0; INITIAL_BUFFER], start: 0, end: 0 }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Removes `n` bytes at `at` of the unconsumed data (a decoded chunked
    /// body's coded bytes), moving what follows down.
    fn remove(&mut self, at: usize, n: usize) {
        let from = self.start + at;
        self.buf.copy_within(from + n..self.end, from);
        self.end -= n;
    }

    /// Free space to read into, keeping the unconsumed bytes at most `max`.
    fn spare(&mut self, max: usize) -> Option<&mut [u8]> {
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= max {
                return None;
            }
            let grown = (self.buf.len() * 2).min(max.max(INITIAL_BUFFER));
            self.buf.resize(grown, 0);
        }
        let limit = self.buf.len().min(self.start + max);
        (limit > self.end).then(|| &mut self.buf[self.end..limit])
    }

    fn filled(&mut self, n: usize) {
        self.end += n;
    }

    fn shrink_if_idle(&mut self) {
        if self.is_empty() && self.buf.len() > 4 * INITIAL_BUFFER {
            self.buf = vec![0; INITIAL_BUFFER];
        }
    }
}

/// An in-memory [`Transport`] for tests and fuzzing: reads return the
/// scripted pieces one by one (a piece larger than the reader's buffer
/// over several reads), then end of stream; writes are collected. Never
/// waits, so one poll of `serve` runs it to the end.
#[derive(Debug, Default)]
pub struct ScriptedStream {
    pub reads: VecDeque<Vec<u8>>,
    pub written: Vec<u8>,
    /// `shutdown_write` was called.
    pub shut: bool,
}

impl ScriptedStream {
    pub fn new<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> ScriptedStream {
        // An empty read means end of stream, so empty pieces are left out.
        let reads = pieces.into_iter().filter(|p| !p.is_empty()).map(<[u8]>::to_vec).collect();
        ScriptedStream { reads, ..Default::default() }
    }
}

impl AsyncRead for ScriptedStream {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(mut piece) = this.reads.pop_front() else { return Poll::Ready(Ok(0)) };
        let n = piece.len().min(buf.len());
        buf[..n].copy_from_slice(&piece[..n]);
        if n < piece.len() {
            piece.drain(..n);
            this.reads.push_front(piece);
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for ScriptedStream {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Transport for ScriptedStream {
    fn set_read_deadline(&mut self, _: Instant) {}

    async fn shutdown_write(&mut self) -> io::Result<()> {
        self.shut = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use std::future::Future;

    /// Streams `/stream` in three slices, refuses `/refuse` in `precheck`,
    /// echoes the body length of anything else.
    struct TestHandler(Limits);

    impl Handler for TestHandler {
        type Answer = u16;

        fn limits(&self) -> &Limits {
            &self.0
        }

        fn draining(&self) -> bool {
            false
        }

        fn precheck(&self, req: &Request<'_>, res: &mut ResponseWriter<'_>) -> Option<u16> {
            let framing = res.framing();
            (req.target == b"/refuse").then(|| {
                response::error(res.buf(), 404, "no", framing);
                404
            })
        }

        async fn handle(&self, req: &Request<'_>, res: &mut ResponseWriter<'_>) -> u16 {
            if req.target == b"/stream" {
                res.start_stream(200, &[("Content-Type", b"text/plain")]);
                for slice in ["first;", "", "second slice;", "third"] {
                    res.buf().extend_from_slice(slice.as_bytes());
                    res.send().await.unwrap();
                }
                return 200;
            }
            let body = format!("{} {:?} {:x?} {} bytes", req.method.as_str(), req.target, req.body, req.body.len());
            let framing = res.framing();
            response::with_type(res.buf(), 200, "text/plain", body.as_bytes(), framing);
            200
        }

        fn record(&self, _: &Request<'_>, _: u16, _: Duration) {}
    }

    /// What the connection writes for `pieces` read one after another,
    /// `Date` lines removed; and whether it shut its side down.
    fn exchange(pieces: &[&[u8]]) -> String {
        let mut stream = ScriptedStream::new(pieces.iter().copied());
        let handler = TestHandler(Limits::default());
        {
            let mut fut = std::pin::pin!(serve(&mut stream, &handler));
            let ready = fut.as_mut().poll(&mut Context::from_waker(std::task::Waker::noop()));
            assert!(ready.is_ready(), "a scripted stream never waits");
        }
        assert!(stream.shut, "the connection ends with a FIN");
        let text = String::from_utf8(stream.written).unwrap();
        text.split_inclusive("\r\n").filter(|l| !l.starts_with("Date: ")).collect()
    }

    #[test]
    fn a_streamed_body_is_sent_as_chunks_and_the_next_request_follows() {
        let out = exchange(&[b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n"]);
        let streamed = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
                        6\r\nfirst;\r\nd\r\nsecond slice;\r\n5\r\nthird\r\n0\r\n\r\n";
        let next = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\nGET [47, 120] [] 0 bytes";
        assert_eq!(out, format!("{streamed}{next}"));
    }

    #[test]
    fn a_streamed_body_to_http10_or_head_is_framed_for_it() {
        let out = exchange(&[b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /x HTTP/1.0\r\n\r\n"]);
        let until_close =
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nfirst;second slice;third";
        assert_eq!(out, until_close, "HTTP/1.0: body until close, nothing after it");
        let out = exchange(&[b"HEAD /stream HTTP/1.1\r\nHost: h\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n"]);
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(out.starts_with(&format!("{head}HTTP/1.1 200 OK\r\n")), "{out}");
    }

    #[test]
    fn continue_is_sent_only_when_the_handler_lets_the_request_proceed() {
        let expect = b"Host: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
        let out = exchange(&[b"POST /x HTTP/1.1\r\n", expect, b"abc"]);
        assert!(out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("3 bytes"), "{out}");
        let out = exchange(&[b"POST /refuse HTTP/1.1\r\n", expect, b"abc"]);
        assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n") && out.contains("Connection: close\r\n"), "{out}");
        assert!(!out.contains("100 Continue"));
    }

    #[test]
    fn chunked_bodies_decode_across_reads_and_smuggling_is_refused() {
        let head = b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
        let out = exchange(&[head, b"3\r\nab", b"c\r\n2;e=\"v\"\r\nde\r", b"\n0\r\n\r\n"]);
        assert!(out.ends_with("5 bytes"), "{out}");
        let big: Vec<Vec<u8>> = (0..300).map(|_| format!("3e8\r\n{}\r\n", "b".repeat(1000)).into_bytes()).collect();
        let pieces = std::iter::once(&head[..]).chain(big.iter().map(Vec::as_slice)).chain([&b"0\r\n\r\n"[..]]);
        let out = exchange(&pieces.collect::<Vec<_>>());
        assert!(out.ends_with("300000 bytes"), "a body larger than the buffers kept across reads: {out}");
        let smuggle = b"2;a\nxx\r\n45\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n";
        let out = exchange(&[head, smuggle]);
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert_eq!(out.matches("HTTP/1.1").count(), 1, "exactly one response: {out}");
    }

    #[test]
    fn read_buffer_grows_to_max_and_compacts() {
        let mut b = ReadBuffer::new();
        let n = b.spare(10_000).unwrap().len();
        assert_eq!(n, INITIAL_BUFFER);
        b.filled(n);
        let more = b.spare(10_000).unwrap().len();
        assert_eq!(more, INITIAL_BUFFER);
        b.filled(more);
        assert_eq!(b.spare(10_000).unwrap().len(), 10_000 - 2 * INITIAL_BUFFER);
        b.filled(10_000 - 2 * INITIAL_BUFFER);
        assert!(b.spare(10_000).is_none());
        b.consume(100);
        assert_eq!(b.spare(10_000).unwrap().len(), 100);
        assert_eq!(b.data().len(), 9_900);
        b.consume(9_900);
        assert!(b.is_empty());
        b.shrink_if_idle();
        assert_eq!(b.buf.len(), 10_000, "below the shrink threshold");
        b.buf.resize(5 * INITIAL_BUFFER, 0);
        b.shrink_if_idle();
        assert_eq!(b.buf.len(), INITIAL_BUFFER);
    }

    /// The `http_request` fuzz target's property, on its seed corpus and on
    /// seeded random mutations of it: every split of the input into two
    /// reads gives the same responses as the input sent whole.
    #[test]
    fn any_split_gives_the_same_responses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/http_request");
        let read = |e: std::io::Result<std::fs::DirEntry>| std::fs::read(e.unwrap().path()).unwrap();
        let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(dir).unwrap().map(read).collect();
        let chunked = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
                       1;a=\"b\"\r\nx\r\n0\r\nT: 1\r\n\r\n";
        let streams = "GET /stream HTTP/1.1\r\nHost: h\r\n\r\nHEAD /stream HTTP/1.1\r\nHost: h\r\n\r\n\
                       GET /x HTTP/1.0\r\n\r\n";
        inputs.extend([chunked.as_bytes().to_vec(), streams.as_bytes().to_vec()]);
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as usize
        };
        let seeds = inputs.len();
        const BYTES: &[u8] = b"\r\n;: 0aZ\"\t\x00";
        for _ in 0..300 {
            let mut input = inputs[next() % seeds].clone();
            for _ in 0..1 + next() % 4 {
                let at = next() % (input.len() + 1);
                match next() % 4 {
                    0 if at < input.len() => input[at] = BYTES[next() % BYTES.len()],
                    1 => input.insert(at, BYTES[next() % BYTES.len()]),
                    2 if at < input.len() => drop(input.remove(at)),
                    _ => {
                        let other = &inputs[next() % seeds];
                        input.extend_from_slice(&other[next() % (other.len() + 1)..]);
                    }
                }
            }
            inputs.push(input);
        }
        // 100 Continue is sent only while a body is awaited, so it depends on the split.
        let responses = |pieces: &[&[u8]]| exchange(pieces).replace("HTTP/1.1 100 Continue\r\n\r\n", "");
        for input in &inputs {
            let whole = responses(&[input]);
            for at in 0..=input.len() {
                let split = responses(&[&input[..at], &input[at..]]);
                assert_eq!(split, whole, "{:?} split at {at}", String::from_utf8_lossy(input));
            }
        }
    }
}
