//! Responses, written straight into the connection's reused output buffer.
//!
//! Status lines and fixed headers are byte constants or pre-built per route,
//! so answering a GET hit is a few `extend_from_slice` calls and one integer
//! formatting for `Content-Length`.

use std::cell::RefCell;
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
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
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

thread_local! {
    /// `Date: ...\r\n` for the current second; each shard thread keeps its own
    /// and reformats it at most once a second.
    static DATE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
}

fn write_date(out: &mut Vec<u8>) {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != now {
            cached.1 = format!("Date: {}\r\n", http_date(now)).into_bytes();
            cached.0 = now;
        }
        out.extend_from_slice(&cached.1);
    });
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
