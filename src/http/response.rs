//! Responses, written straight into the connection's reused output buffer.
//!
//! Status lines and fixed headers are byte constants or pre-built per route,
//! so answering a GET hit is a few `extend_from_slice` calls and one integer
//! formatting for `Content-Length`.
//!
//! A handler writes through a [`ResponseWriter`]: a whole response into its
//! buffer, or a body streamed slice by slice (see the `http` module doc).

use futures_lite::{AsyncWrite, AsyncWriteExt};
use std::cell::RefCell;
use std::io;
use std::time::SystemTime;

/// How the connection frames this response.
#[derive(Clone, Copy, Debug)]
pub struct Framing {
    /// The client sent HEAD: headers only.
    pub head_only: bool,
    /// The connection closes after this response.
    pub close: bool,
    /// HTTP/1.0 client that asked for keep-alive (needs the header echoed).
    pub keep_alive_10: bool,
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Writes `HTTP/1.1 {status} {reason}\r\n`.
pub fn status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The prefix every 200 of a route starts with: status line, content type
/// and `Cache-Control`, built once at start-up.
pub fn ok_json_prefix(max_age: u64) -> Vec<u8> {
    let mut out = Vec::new();
    status_line(&mut out, 200);
    out.extend_from_slice(b"Content-Type: application/json\r\n");
    out.extend_from_slice(&cache_control(max_age));
    out
}

/// `Cache-Control: public, max-age={max_age}\r\n`.
pub fn cache_control(max_age: u64) -> Vec<u8> {
    format!("Cache-Control: public, max-age={max_age}\r\n").into_bytes()
}

/// Ends the header section: `Date`, connection header, `Content-Length`
/// (unless `None`), blank line, then the body unless HEAD.
pub fn finish(out: &mut Vec<u8>, framing: Framing, body: Option<&[u8]>) {
    write_date(out);
    if framing.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if framing.keep_alive_10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    if let Some(body) = body {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        if !framing.head_only {
            out.extend_from_slice(body);
        }
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

/// A complete response with a JSON body and optional extra headers.
pub fn json(out: &mut Vec<u8>, status: u16, extra: &[(&str, &[u8])], body: &[u8], framing: Framing) {
    status_line(out, status);
    out.extend_from_slice(b"Content-Type: application/json\r\n");
    headers(out, extra);
    finish(out, framing, Some(body));
}

/// A complete response with a body of the given content type.
pub fn with_type(out: &mut Vec<u8>, status: u16, content_type: &str, body: &[u8], framing: Framing) {
    status_line(out, status);
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\n");
    finish(out, framing, Some(body));
}

/// A JSON error body: `{"error":"<reason>"}`.
pub fn error(out: &mut Vec<u8>, status: u16, reason: &str, framing: Framing) {
    error_with(out, status, reason, &[], framing);
}

pub fn error_with(out: &mut Vec<u8>, status: u16, reason: &str, extra: &[(&str, &[u8])], framing: Framing) {
    let body = serde_json::to_vec(&serde_json::json!({ "error": reason })).unwrap_or_default();
    json(out, status, extra, &body, framing);
}

pub fn headers(out: &mut Vec<u8>, extra: &[(&str, &[u8])]) {
    for (name, value) in extra {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

/// Where a handler writes its response: the connection's output buffer
/// (which may still hold earlier pipelined responses, written out together)
/// and, for a streamed body, the socket.
pub struct ResponseWriter<'a> {
    framing: Framing,
    out: &'a mut Vec<u8>,
    socket: &'a mut (dyn AsyncWrite + Unpin),
    /// The client speaks HTTP/1.1, so a streamed body can be chunked.
    chunked_ok: bool,
    stream: Stream,
}

/// The state of a streamed body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    /// No stream: `buf` holds complete responses.
    Off,
    /// Body bytes start at `from` in `out`: framed as a chunk when sent.
    Chunked { from: usize },
    /// HTTP/1.0 client: the body is as sent, ended by closing the connection.
    UntilClose { from: usize },
    /// Cut short by the handler or a failed write: the connection closes.
    Broken,
}

impl<'a> ResponseWriter<'a> {
    /// A writer for a response to an HTTP/1.`minor` request.
    pub fn new(framing: Framing, minor: u8, out: &'a mut Vec<u8>, socket: &'a mut (dyn AsyncWrite + Unpin)) -> Self {
        ResponseWriter { framing, out, socket, chunked_ok: minor >= 1, stream: Stream::Off }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The output buffer: append a whole response (`json`, `error`, ...),
    /// or, after `start_stream`, the next slice of the body.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        self.out
    }

    /// Writes the head of a response whose body follows in slices, each
    /// appended to `buf()` and sent with `send`. The body ends when the
    /// handler returns.
    pub fn start_stream(&mut self, status: u16, extra: &[(&str, &[u8])]) {
        status_line(self.out, status);
        headers(self.out, extra);
        write_date(self.out);
        if self.framing.close || !self.chunked_ok {
            self.out.extend_from_slice(b"Connection: close\r\n");
        }
        if self.chunked_ok {
            self.out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            self.stream = Stream::Chunked { from: self.out.len() };
        } else {
            self.out.extend_from_slice(b"\r\n");
            self.stream = Stream::UntilClose { from: self.out.len() };
        }
    }

    /// Frames the body bytes appended since the last `send` and writes
    /// everything buffered to the socket, waiting until the socket took it
    /// (back-pressure from a slow client).
    pub async fn send(&mut self) -> io::Result<()> {
        self.frame_pending();
        if self.stream == Stream::Broken {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the response stream was cut short"));
        }
        if let Err(e) = self.socket.write_all(self.out).await {
            self.stream = Stream::Broken;
            return Err(e);
        }
        self.out.clear();
        match &mut self.stream {
            Stream::Chunked { from } | Stream::UntilClose { from } => *from = 0,
            _ => {}
        }
        Ok(())
    }

    /// Ends a stream that cannot be completed (a store failed half-way):
    /// the connection closes without ending the body, so the client sees a
    /// truncated response rather than a complete wrong one.
    pub fn abort(&mut self) {
        self.frame_pending();
        self.stream = Stream::Broken;
    }

    /// True when the connection must close after this response.
    pub fn must_close(&self) -> bool {
        matches!(self.stream, Stream::UntilClose { .. } | Stream::Broken)
    }

    /// Called by the connection once the handler returned: ends the body.
    pub fn finish(&mut self) {
        self.frame_pending();
        if let Stream::Chunked { .. } = self.stream {
            if !self.framing.head_only {
                self.out.extend_from_slice(b"0\r\n\r\n");
            }
            self.stream = Stream::Off;
        }
    }

    /// Turns the body bytes after `from` into one chunk (or drops them for HEAD).
    fn frame_pending(&mut self) {
        let (Stream::Chunked { from } | Stream::UntilClose { from }) = self.stream else { return };
        if self.framing.head_only {
            self.out.truncate(from);
        } else if let Stream::Chunked { .. } = self.stream {
            let len = self.out.len() - from;
            if len > 0 {
                let size_line = format!("{len:x}\r\n");
                self.out.splice(from..from, size_line.bytes());
                self.out.extend_from_slice(b"\r\n");
            }
        }
        let end = self.out.len();
        match &mut self.stream {
            Stream::Chunked { from } | Stream::UntilClose { from } => *from = end,
            _ => {}
        }
    }
}

thread_local! {
    /// `Date: ...\r\n` for the current second; each shard thread keeps its own
    /// and reformats it at most once a second.
    static DATE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
}

fn write_date(out: &mut Vec<u8>) {
    let now = unix_seconds();
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != now {
            cached.1 = format!("Date: {}\r\n", http_date(now)).into_bytes();
            cached.0 = now;
        }
        out.extend_from_slice(&cached.1);
    });
}

/// The current Unix second from the coarse real-time clock: a `Date`
/// header needs only the second, and the coarse clock is read from memory
/// the kernel updates every tick, without the time-stamp counter (which in
/// some VMs costs a system call per read).
fn unix_seconds() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
        return ts.tv_sec.max(0) as u64;
    }
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for Unix seconds.
pub fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: Framing = Framing { head_only: false, close: false, keep_alive_10: false };

    /// Every status the crate answers with has its reason phrase (a 504 once
    /// went out as "504 Unknown").
    #[test]
    fn every_status_sent_has_its_reason_phrase() {
        let sent = [100, 200, 201, 304, 400, 401, 404, 405, 408, 409, 413, 414, 415, 417, 422, 431, 500, 501, 502, 503];
        for status in sent.into_iter().chain([504, 505]) {
            assert_ne!(reason(status), "Unknown", "{status}");
        }
    }

    #[test]
    fn the_coarse_clock_gives_this_second() {
        let precise = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert!(unix_seconds().abs_diff(precise) <= 1);
    }

    #[test]
    fn dates_format_like_rfc_9110() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_709_210_096), "Thu, 29 Feb 2024 12:34:56 GMT");
    }

    #[test]
    fn json_response_has_length_and_body() {
        let mut out = Vec::new();
        json(&mut out, 201, &[("ETag", b"\"1\"")], b"{}", KEEP);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nETag: \"1\"\r\nDate: "));
        assert!(text.ends_with("Content-Length: 2\r\n\r\n{}"));
    }

    #[test]
    fn head_only_keeps_length_drops_body_and_close_is_said() {
        let mut out = Vec::new();
        error(&mut out, 404, "not found", Framing { head_only: true, close: true, keep_alive_10: false });
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("Content-Length: 21\r\n\r\n"), "{text}");
    }
}
