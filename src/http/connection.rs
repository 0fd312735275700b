//! One client connection: its read and write buffers, keep-alive, pipelining,
//! request bodies and the per-connection limits of SPEC section 3.
//!
//! Buffers live as long as the connection and are reused by every request.
//! All complete requests already buffered are answered before the responses
//! are written back in one go, so a pipelined burst costs one write.

use super::request::{decode_chunked, parse_head, BodyFraming, Chunked, ParseError, RequestHead};
use super::response::{self, Framing};
use crate::api::handlers::{handle, Request};
use crate::api::Api;
use crate::config::Limits;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::io::{self, ErrorKind};
use std::time::{Duration, Instant};

const INITIAL_BUFFER: usize = 4096;
/// Responses are flushed early when this much is waiting.
const FLUSH_AT: usize = 64 * 1024;

/// Serves one connection until the client closes it, a limit ends it, or
/// the server drains.
pub async fn serve(stream: TcpStream, api: &Api) {
    let _ = stream.set_nodelay(true);
    let limits = api.shared.limits.clone();
    let _ = stream.set_write_timeout(Some(limits.idle_timeout()));
    let mut conn = Connection { stream, input: ReadBuffer::new(), out: Vec::with_capacity(INITIAL_BUFFER), body: Vec::new(), limits, timeout: None };
    if let Err(e) = conn.run(api).await {
        tracing::debug!(error = %e, "connection ended");
    }
}

struct Connection {
    stream: TcpStream,
    input: ReadBuffer,
    out: Vec<u8>,
    /// Decoded chunked bodies.
    body: Vec<u8>,
    limits: Limits,
    /// The read timeout currently set on the socket.
    timeout: Option<Duration>,
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
            ParseError::Malformed => "malformed request",
            ParseError::HeadersTooLarge => "request header section too large",
            ParseError::BodyTooLarge => "request body too large",
            ParseError::AmbiguousLength => "request has both Content-Length and Transfer-Encoding",
            ParseError::UnsupportedEncoding => "only chunked transfer encoding is supported",
            ParseError::Version => "only HTTP/1.0 and HTTP/1.1 are supported",
        };
        Stop::Reject(e.status(), reason)
    }
}

impl Connection {
    async fn run(&mut self, api: &Api) -> io::Result<()> {
        let mut first = true;
        loop {
            let head = match self.next_head(first, api).await? {
                Ok(head) => head,
                Err(stop) => return self.stop(stop).await,
            };
            first = false;
            api.in_flight.set(api.in_flight.get() + 1);
            let result = self.answer(&head, api).await;
            api.in_flight.set(api.in_flight.get() - 1);
            match result? {
                Ok(true) => {}
                Ok(false) => return self.close().await,
                Err(stop) => return self.stop(stop).await,
            }
        }
    }

    /// Reads until a complete request head is buffered. The first request
    /// of a connection, and every request once its first byte arrived, must
    /// complete its head within the header timeout; between requests the
    /// idle timeout applies.
    async fn next_head(&mut self, first: bool, api: &Api) -> io::Result<Result<RequestHead, Stop>> {
        let mut started = (first || !self.input.is_empty()).then(Instant::now);
        loop {
            match parse_head(self.input.data(), self.limits.header_bytes, self.limits.body_bytes) {
                Ok(Some(head)) => return Ok(Ok(head)),
                Ok(None) => {}
                Err(e) => return Ok(Err(e.into())),
            }
            self.flush().await?;
            if self.input.is_empty() && api.draining.get() {
                return Ok(Err(Stop::Quietly));
            }
            let timeout = match started {
                Some(t) => self.limits.header_timeout().saturating_sub(t.elapsed()),
                None => self.limits.idle_timeout(),
            };
            match self.read_more(timeout, self.limits.header_bytes).await? {
                Read::Data => started = started.or_else(|| Some(Instant::now())),
                Read::Closed => return Ok(Err(Stop::Quietly)),
                Read::TimedOut if self.input.is_empty() => return Ok(Err(Stop::Quietly)),
                Read::TimedOut => return Ok(Err(Stop::Reject(408, "request header not received in time"))),
                Read::Full => return Ok(Err(ParseError::HeadersTooLarge.into())),
            }
        }
    }

    /// Reads the body, runs the handler and consumes the request. `Ok(true)`
    /// keeps the connection open.
    async fn answer(&mut self, head: &RequestHead, api: &Api) -> io::Result<Result<bool, Stop>> {
        let consumed = match self.read_body(head).await? {
            Ok(n) => n,
            Err(stop) => return Ok(Err(stop)),
        };
        let close = !head.keep_alive || api.draining.get();
        let framing = Framing { head_only: head.method == super::request::Method::Head, close, keep_alive_10: head.minor == 0 && !close };
        let started = Instant::now();
        let data = self.input.data();
        let body = match head.framing {
            BodyFraming::Chunked => &self.body[..],
            BodyFraming::Length(n) => &data[head.len..head.len + n],
            BodyFraming::None => &[][..],
        };
        let req = Request {
            method: head.method,
            target: &data[head.target.clone()],
            if_none_match: head.if_none_match.clone().map(|r| &data[r]),
            authorization: head.authorization.clone().map(|r| &data[r]),
            body,
        };
        let answer = handle(api, &req, framing, &mut self.out).await;
        api.shard.metrics.borrow_mut().record(answer.label, head.method, answer.status, started.elapsed());
        self.input.consume(consumed);
        if self.out.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(Ok(!close))
    }

    /// Makes the whole body available; returns the bytes the request takes
    /// in the input buffer (head + body as sent).
    async fn read_body(&mut self, head: &RequestHead) -> io::Result<Result<usize, Stop>> {
        let max_input = head.len + 2 * self.limits.body_bytes + 4096;
        let mut continued = false;
        loop {
            let have = &self.input.data()[head.len..];
            let done = match head.framing {
                BodyFraming::None => Some(0),
                BodyFraming::Length(n) => (have.len() >= n).then_some(n),
                BodyFraming::Chunked => match decode_chunked(have, &mut self.body, self.limits.body_bytes) {
                    Ok(Chunked::Done { consumed }) => Some(consumed),
                    Ok(Chunked::Partial) => None,
                    Err(e) => return Ok(Err(e.into())),
                },
            };
            if let Some(n) = done {
                return Ok(Ok(head.len + n));
            }
            if head.expect_continue && !continued {
                continued = true;
                self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            self.flush().await?;
            match self.read_more(self.limits.header_timeout(), max_input).await? {
                Read::Data => {}
                Read::Closed => return Ok(Err(Stop::Quietly)),
                Read::TimedOut => return Ok(Err(Stop::Reject(408, "request body not received in time"))),
                Read::Full => return Ok(Err(ParseError::BodyTooLarge.into())),
            }
        }
    }

    async fn read_more(&mut self, timeout: Duration, max: usize) -> io::Result<Read> {
        if timeout.is_zero() {
            return Ok(Read::TimedOut);
        }
        if self.timeout != Some(timeout) {
            self.stream.set_read_timeout(Some(timeout))?;
            self.timeout = Some(timeout);
        }
        let Some(spare) = self.input.spare(max) else { return Ok(Read::Full) };
        match self.stream.read(spare).await {
            Ok(0) => Ok(Read::Closed),
            Ok(n) => {
                self.input.filled(n);
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
        if let Stop::Reject(status, reason) = stop {
            let framing = Framing { head_only: false, close: true, keep_alive_10: false };
            response::error(&mut self.out, status, reason, framing);
        }
        self.close().await
    }

    async fn close(&mut self) -> io::Result<()> {
        self.flush().await?;
        let _ = self.stream.shutdown(std::net::Shutdown::Write).await;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
