//! Request parsing: `httparse` for the head, with the RFC 9112 rules it is
//! laxer about checked here, and the parsed request a handler sees.
//!
//! The parser works on whatever bytes have arrived so far and answers
//! "complete", "need more" or "reject with this status", so a request split
//! over many TCP reads parses exactly like one sent whole, and several
//! pipelined requests in one read are taken one after another.
//!
//! Strict on purpose: a cache often sits behind a proxy that may frame a
//! message differently, and any leniency there is a request-smuggling hole.
//! So a head with a bare LF, a request line that is not `METHOD SP target SP
//! HTTP/x.y`, an HTTP/1.1 request without exactly one valid `Host`, a
//! `Content-Length` that is not plain digits (or several that differ) and a
//! `Transfer-Encoding` beside a `Content-Length` are all refused.

use std::ops::Range;

pub use super::chunked::{decode_chunked, Chunked, ChunkedDecoder};

/// Headers beyond this count get 431, like an oversized header section.
const MAX_HEADERS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Other,
}

impl Method {
    fn parse(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Other => "OTHER",
        }
    }
}

/// How the body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(usize),
    Chunked,
}

/// What a handler needs from a request head. Text fields are byte ranges
/// into the connection's read buffer, so parsing copies nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The target in origin form (`/path?query`); of an absolute-form target
    /// (`http://host/path?query`) only the path and query.
    pub target: Range<usize>,
    /// HTTP/1.x minor version.
    pub minor: u8,
    pub keep_alive: bool,
    pub framing: BodyFraming,
    pub expect_continue: bool,
    pub if_none_match: Option<Range<usize>>,
    pub authorization: Option<Range<usize>>,
    /// `Kafka-Min-Position`: positions a GET must see applied.
    pub min_position: Option<Range<usize>>,
    pub content_type: Option<Range<usize>>,
    /// Length of the head, request line to the blank line.
    pub len: usize,
}

/// A parsed request as a handler sees it, borrowing the connection's buffers.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: Method,
    /// Path and query, origin form.
    pub target: &'a [u8],
    pub if_none_match: Option<&'a [u8]>,
    pub authorization: Option<&'a [u8]>,
    /// `Kafka-Min-Position`: positions a GET must see applied.
    pub min_position: Option<&'a [u8]>,
    pub content_type: Option<&'a [u8]>,
    /// The whole body, decoded when it was chunked. Empty in
    /// `Handler::precheck`, which runs before the body is read.
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// The request `head` describes, its text in `buf` (the bytes `head` was parsed from).
    pub fn new(head: &RequestHead, buf: &'a [u8], body: &'a [u8]) -> Request<'a> {
        Request {
            method: head.method,
            target: &buf[head.target.clone()],
            if_none_match: head.if_none_match.clone().map(|r| &buf[r]),
            authorization: head.authorization.clone().map(|r| &buf[r]),
            min_position: head.min_position.clone().map(|r| &buf[r]),
            content_type: head.content_type.clone().map(|r| &buf[r]),
            body,
        }
    }
}

/// Why a request is refused before it reaches a handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a valid HTTP/1.1 request; the text says what is wrong.
    #[error("{0}")]
    Malformed(&'static str),
    #[error("request header section too large")]
    HeadersTooLarge,
    #[error("request target too long")]
    TargetTooLong,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("request has both Content-Length and Transfer-Encoding")]
    AmbiguousLength,
    #[error("only the chunked transfer coding (alone) is supported")]
    UnsupportedEncoding,
    #[error("only HTTP/1.x is supported")]
    Version,
    #[error("only the expectation 100-continue is supported")]
    Expectation,
}

impl ParseError {
    pub fn status(self) -> u16 {
        match self {
            ParseError::Malformed(_) | ParseError::AmbiguousLength => 400,
            ParseError::HeadersTooLarge => 431,
            ParseError::TargetTooLong => 414,
            ParseError::BodyTooLarge => 413,
            ParseError::UnsupportedEncoding => 501,
            ParseError::Version => 505,
            ParseError::Expectation => 417,
        }
    }
}

/// Parses a request head from the start of `buf`. `Ok(None)` means more
/// bytes are needed; the caller enforces `header_limit` on what it buffers.
pub fn parse_head(buf: &[u8], header_limit: usize, body_limit: usize) -> Result<Option<RequestHead>, ParseError> {
    match parse_with_httparse(buf, header_limit, body_limit) {
        Err(ParseError::Version) => judge_version(buf, header_limit, body_limit),
        other => other,
    }
}

fn parse_with_httparse(buf: &[u8], header_limit: usize, body_limit: usize) -> Result<Option<RequestHead>, ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= header_limit => return Err(oversized_head(buf, header_limit)),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeadersTooLarge),
        Err(httparse::Error::Version) => return Err(ParseError::Version),
        Err(_) => return Err(ParseError::Malformed(REQUEST_LINE_OR_HEADER)),
    };
    if len > header_limit {
        return Err(oversized_head(buf, header_limit));
    }
    // httparse accepts a bare LF as a line end; RFC 9112 senders never send one.
    if buf[..len].iter().enumerate().any(|(i, b)| *b == b'\n' && (i == 0 || buf[i - 1] != b'\r')) {
        return Err(ParseError::Malformed(BARE_LF));
    }
    let minor = req.version.ok_or(ParseError::Malformed(REQUEST_LINE))?;
    let method = Method::parse(req.method.ok_or(ParseError::Malformed(REQUEST_LINE))?);
    let path = req.path.ok_or(ParseError::Malformed(REQUEST_LINE))?;
    let target = origin_form(buf, path.as_bytes(), req.method == Some("OPTIONS"))?;
    let mut head = RequestHead {
        method,
        target,
        minor,
        keep_alive: minor >= 1,
        framing: BodyFraming::None,
        expect_continue: false,
        if_none_match: None,
        authorization: None,
        min_position: None,
        content_type: None,
        len,
    };
    read_headers(buf, req.headers, &mut head, body_limit)?;
    Ok(Some(head))
}

/// What a head that filled the header limit is refused as: 414 when the
/// request line itself has not ended (RFC 9112 section 3), else 431.
pub fn oversized_head(buf: &[u8], header_limit: usize) -> ParseError {
    let buf = &buf[..buf.len().min(header_limit)];
    let skipped = buf.chunks(2).take_while(|pair| *pair == b"\r\n").count() * 2;
    if buf[skipped..].contains(&b'\n') {
        ParseError::HeadersTooLarge
    } else {
        ParseError::TargetTooLong
    }
}

const REQUEST_LINE: &str = "request line is not METHOD SP target SP HTTP/x.y";
const BARE_LF: &str = "bare LF in the request head; lines end with CRLF";
const REQUEST_LINE_OR_HEADER: &str = "malformed request line or header field";

/// httparse knows HTTP/1.0 and HTTP/1.1 only. A well-formed `HTTP/1.x` with
/// a higher minor is served as HTTP/1.1, another well-formed version is 505,
/// anything else in the version's place is a malformed request line (400).
fn judge_version(buf: &[u8], header_limit: usize, body_limit: usize) -> Result<Option<RequestHead>, ParseError> {
    // httparse skips empty lines before the request line; so do we.
    let skipped = buf.chunks(2).take_while(|pair| *pair == b"\r\n").count() * 2;
    let Some(line_end) = buf[skipped..].iter().position(|b| *b == b'\n').map(|n| skipped + n) else {
        return if buf.len() >= header_limit { Err(oversized_head(buf, header_limit)) } else { Ok(None) };
    };
    let line = buf[skipped..line_end].strip_suffix(b"\r").ok_or(ParseError::Malformed(BARE_LF))?;
    let mut parts = line.split(|b| *b == b' ');
    let (Some(_), Some(_), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(ParseError::Malformed(REQUEST_LINE));
    };
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            if *major != b'1' {
                return Err(ParseError::Version);
            }
            // Parse a copy that says HTTP/1.1; every offset stays the same.
            let mut copy = buf[..buf.len().min(header_limit)].to_vec();
            copy[skipped + line.len() - 1] = b'1';
            let head = parse_with_httparse(&copy, header_limit, body_limit)?;
            Ok(head.map(|h| RequestHead { minor: 1, ..h }))
        }
        _ => Err(ParseError::Malformed(REQUEST_LINE)),
    }
}

/// The range of the origin-form target (`/path?query`) inside `buf`.
/// An absolute-form target (`http://host/path?query`) gives its path and
/// query; `*` is kept for `OPTIONS` (no route matches it).
fn origin_form(buf: &[u8], target: &[u8], options: bool) -> Result<Range<usize>, ParseError> {
    let range = range_of(buf, target);
    if target.first() == Some(&b'/') || (options && target == b"*") {
        return Ok(range);
    }
    let Some(colon) = target.iter().position(|b| *b == b':') else {
        return Err(ParseError::Malformed("request target is neither /path nor http://host/path"));
    };
    let (scheme, rest) = (&target[..colon], &target[colon + 1..]);
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme.iter().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b));
    let Some(after) = rest.strip_prefix(b"//").filter(|_| scheme_ok) else {
        return Err(ParseError::Malformed("request target is neither /path nor http://host/path"));
    };
    let authority_len = after.iter().position(|b| *b == b'/' || *b == b'?').unwrap_or(after.len());
    let path_start = range.start + colon + 3 + authority_len;
    match after.get(authority_len) {
        Some(b'/') => Ok(path_start..range.end),
        // `http://host` means `/`: the second slash of `//`.
        None => Ok(range.start + colon + 2..range.start + colon + 3),
        _ => Err(ParseError::Malformed("an absolute-form target with a query needs a path (http://host/?query)")),
    }
}

fn read_headers(
    buf: &[u8],
    headers: &[httparse::Header],
    head: &mut RequestHead,
    body_limit: usize,
) -> Result<(), ParseError> {
    let mut length: Option<usize> = None;
    let mut codings = Codings::default();
    let mut hosts = 0;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            if !valid_host(h.value) {
                return Err(ParseError::Malformed("invalid Host header"));
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = parse_length(h.value)?;
            if length.is_some_and(|l| l != n) {
                return Err(ParseError::Malformed("several Content-Length headers that differ"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            codings.add(h.value)?;
        } else if name.eq_ignore_ascii_case("connection") {
            apply_connection(h.value, head);
        } else if name.eq_ignore_ascii_case("if-none-match") {
            head.if_none_match = Some(range_of(buf, h.value));
        } else if name.eq_ignore_ascii_case("authorization") {
            head.authorization = Some(range_of(buf, h.value));
        } else if name.eq_ignore_ascii_case("kafka-min-position") {
            head.min_position = Some(range_of(buf, h.value));
        } else if name.eq_ignore_ascii_case("content-type") {
            head.content_type = Some(range_of(buf, h.value));
        } else if name.eq_ignore_ascii_case("expect") {
            if !h.value.eq_ignore_ascii_case(b"100-continue") {
                return Err(ParseError::Expectation);
            }
            // HTTP/1.0 clients do not know 100 Continue (RFC 9110 10.1.1).
            head.expect_continue = head.minor >= 1;
        }
    }
    match hosts {
        0 if head.minor >= 1 => return Err(ParseError::Malformed("missing Host header")),
        0 | 1 => {}
        _ => return Err(ParseError::Malformed("more than one Host header")),
    }
    head.framing = match (length, codings.seen) {
        (Some(_), true) => return Err(ParseError::AmbiguousLength),
        (None, true) => {
            codings.chunked_only()?;
            // RFC 9112 6.1: HTTP/1.0 framing cannot be trusted with it.
            if head.minor == 0 {
                head.keep_alive = false;
            }
            BodyFraming::Chunked
        }
        (Some(0) | None, false) => BodyFraming::None,
        (Some(n), false) if n > body_limit => return Err(ParseError::BodyTooLarge),
        (Some(n), false) => BodyFraming::Length(n),
    };
    Ok(())
}

/// `uri-host [ ":" port ]`, or empty: the characters of a reg-name, an IPv4
/// address or a bracketed IP literal, and a port of digits.
fn valid_host(v: &[u8]) -> bool {
    v.iter().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:[]".contains(b))
        && match v.iter().rposition(|b| *b == b':') {
            Some(i) if !v.ends_with(b"]") && v.first() != Some(&b'[') => v[i + 1..].iter().all(u8::is_ascii_digit),
            _ => true,
        }
}

fn parse_length(v: &[u8]) -> Result<usize, ParseError> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::Malformed("Content-Length must be decimal digits"));
    }
    let digits = v.iter().skip_while(|d| **d == b'0').count();
    if digits > 19 {
        return Err(ParseError::BodyTooLarge);
    }
    Ok(v.iter().fold(0usize, |n, d| n * 10 + usize::from(d - b'0')))
}

/// The transfer codings of every `Transfer-Encoding` header, read as one list.
#[derive(Default)]
struct Codings {
    seen: bool,
    count: usize,
    /// The last coding is `chunked` (without parameters).
    last_chunked: bool,
}

impl Codings {
    fn add(&mut self, value: &[u8]) -> Result<(), ParseError> {
        self.seen = true;
        for coding in value.split(|b| *b == b',').map(<[u8]>::trim_ascii).filter(|c| !c.is_empty()) {
            let name_len = coding.iter().position(|b| *b == b';' || *b == b' ' || *b == b'\t').unwrap_or(coding.len());
            if name_len == 0 || !coding[..name_len].iter().all(|b| is_token(*b)) {
                return Err(ParseError::Malformed("Transfer-Encoding is not a list of codings"));
            }
            self.count += 1;
            self.last_chunked = coding.eq_ignore_ascii_case(b"chunked");
        }
        Ok(())
    }

    /// Anything but exactly one `chunked` is not implemented (501).
    fn chunked_only(&self) -> Result<(), ParseError> {
        match (self.count, self.last_chunked) {
            (0, _) => Err(ParseError::Malformed("empty Transfer-Encoding")),
            (1, true) => Ok(()),
            _ => Err(ParseError::UnsupportedEncoding),
        }
    }
}

/// RFC 9110 `tchar`.
pub(crate) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn apply_connection(v: &[u8], head: &mut RequestHead) {
    for token in v.split(|b| *b == b',') {
        let t = token.trim_ascii();
        if t.eq_ignore_ascii_case(b"close") {
            head.keep_alive = false;
        } else if t.eq_ignore_ascii_case(b"keep-alive") && head.minor == 0 {
            head.keep_alive = true;
        }
    }
}

/// The position of `part` (a sub-slice of `buf`) inside `buf`.
fn range_of(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

/// Splits a request target into path and query (without the `?`).
pub fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    match target.iter().position(|b| *b == b'?') {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => (target, b""),
    }
}

/// Percent-decodes a path segment or query value (`+` as space when
/// `plus_is_space`). `None` when the escapes are bad or the result is not UTF-8.
pub fn percent_decode(input: &[u8], plus_is_space: bool) -> Option<String> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' => {
                let hex = input.get(i + 1..i + 3)?;
                let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(v);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Iterates `name=value` pairs of a query string, values still encoded.
pub fn query_pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query.split(|b| *b == b'&').filter(|p| !p.is_empty()).map(|p| match p.iter().position(|b| *b == b'=') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (p, &b""[..]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<RequestHead>, ParseError> {
        parse_head(text.as_bytes(), 16384, 1 << 20)
    }

    fn status(text: &str) -> u16 {
        match head(text) {
            Ok(Some(_)) => 200,
            Ok(None) => 0,
            Err(e) => e.status(),
        }
    }

    #[test]
    fn simple_get() {
        let text = "GET /api/customers/acct-1 HTTP/1.1\r\nHost: x\r\n\r\n";
        let h = head(text).unwrap().unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(&text.as_bytes()[h.target.clone()], b"/api/customers/acct-1");
        assert!(h.keep_alive);
        assert_eq!(h.framing, BodyFraming::None);
        assert_eq!(h.len, text.len());
    }

    #[test]
    fn partial_head_needs_more() {
        assert_eq!(head("GET /a HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(head("GE"), Ok(None));
        assert_eq!(head("GET / HTTP/2.0"), Ok(None), "the version is judged once the line is complete");
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        assert!(!head("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap().unwrap().keep_alive);
    }

    #[test]
    fn host_is_required_once_in_http11() {
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a:x\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        for ok in ["a", "", "127.0.0.1:8080", "[::1]:80", "xn--bcher-kva.example"] {
            assert_eq!(status(&format!("GET / HTTP/1.1\r\nHost: {ok}\r\n\r\n")), 200, "{ok}");
        }
        assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), 200);
    }

    #[test]
    fn absolute_form_targets_route_on_their_path() {
        let text = "GET http://cache.example:8080/api/x?limit=1 HTTP/1.1\r\nHost: y\r\n\r\n";
        let h = head(text).unwrap().unwrap();
        assert_eq!(&text.as_bytes()[h.target], b"/api/x?limit=1");
        let text = "GET HTTP://h HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(&text.as_bytes()[head(text).unwrap().unwrap().target], b"/");
        assert_eq!(status("GET api/x HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status("GET 1http://h/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), 200);
    }

    #[test]
    fn request_line_must_be_method_target_version() {
        assert_eq!(status("THIS IS NOT HTTP\r\n\r\n"), 400);
        assert_eq!(status("GET /\r\n\r\n"), 400);
        assert_eq!(status("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/12.0\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status("GET / http/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
        assert_eq!(status("GET / HTTP/0.9\r\n\r\n"), 505);
        let text = "\r\nGET /x HTTP/1.2\r\nHost: h\r\n\r\n";
        let h = head(text).unwrap().unwrap();
        assert_eq!((h.minor, &text.as_bytes()[h.target]), (1, &b"/x"[..]), "HTTP/1.2 is served as 1.1");
    }

    #[test]
    fn bare_lf_is_refused() {
        assert_eq!(status("GET / HTTP/1.1\nHost: h\n\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: h\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: h\r\n\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n"), 400);
    }

    #[test]
    fn body_framing() {
        let h = head("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing, BodyFraming::Length(12));
        let twice = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0012\r\nContent-Length: 12\r\n\r\n";
        let h = head(twice).unwrap().unwrap();
        assert_eq!(h.framing, BodyFraming::Length(12));
        let h = head("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing, BodyFraming::Chunked);
        let cl_and_te = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(head(cl_and_te), Err(ParseError::AmbiguousLength));
        for bad in ["-1", "+1", "1 2", "1,1", "0x10", "", "1.0"] {
            assert_eq!(status(&format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {bad}\r\n\r\n")), 400, "{bad}");
        }
        assert_eq!(status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400);
        assert_eq!(status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n"), 413);
        assert_eq!(status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n"), 413);
    }

    #[test]
    fn transfer_encoding_is_one_list_ending_in_chunked() {
        let te = |values: &[&str]| {
            let lines: String = values.iter().map(|v| format!("Transfer-Encoding: {v}\r\n")).collect();
            status(&format!("POST / HTTP/1.1\r\nHost: h\r\n{lines}\r\n"))
        };
        assert_eq!(te(&["chunked"]), 200);
        assert_eq!(te(&["Chunked"]), 200);
        assert_eq!(te(&["gzip"]), 501);
        assert_eq!(te(&["gzip, chunked"]), 501);
        assert_eq!(te(&["gzip", "chunked"]), 501);
        assert_eq!(te(&["chunked", "gzip"]), 501);
        assert_eq!(te(&["chunked", "chunked"]), 501);
        assert_eq!(te(&["identity"]), 501);
        assert_eq!(te(&["chunked;x=1"]), 501);
        assert_eq!(te(&[""]), 400);
        assert_eq!(te(&["chu\"nked"]), 400);
        let http10 = "POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n";
        let h = head(http10).unwrap().unwrap();
        assert!(!h.keep_alive, "Transfer-Encoding on HTTP/1.0 closes the connection");
    }

    #[test]
    fn expect_and_conditional_headers() {
        let text = concat!(
            "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n",
            "If-None-Match: \"5\"\r\nAuthorization: Bearer t\r\n\r\n"
        );
        let h = head(text).unwrap().unwrap();
        assert!(h.expect_continue);
        assert_eq!(&text.as_bytes()[h.if_none_match.unwrap()], b"\"5\"");
        assert_eq!(&text.as_bytes()[h.authorization.unwrap()], b"Bearer t");
        assert_eq!(status("POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n"), 417);
        assert_eq!(status("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue, x\r\n\r\n"), 417);
        assert!(!head("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").unwrap().unwrap().expect_continue);
    }

    #[test]
    fn garbage_is_malformed_and_big_head_is_431() {
        assert_eq!(status("\x00\x01 garbage\r\n\r\n"), 400);
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(300));
        assert_eq!(parse_head(big.as_bytes(), 256, 1024), Err(ParseError::HeadersTooLarge));
        let long_target = format!("GET /{} HTTP/1.1\r\n", "a".repeat(300));
        assert_eq!(parse_head(long_target.as_bytes(), 256, 1024), Err(ParseError::TargetTooLong));
        assert_eq!(ParseError::TargetTooLong.status(), 414);
        let many: String = (0..70).map(|i| format!("X{i}: v\r\n")).collect();
        assert_eq!(head(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Err(ParseError::HeadersTooLarge));
    }

    #[test]
    fn every_split_of_a_head_parses_alike() {
        let texts = [
            "GET /a HTTP/1.1\r\nHost: h\r\nIf-None-Match: *\r\n\r\n",
            "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\n\r\n",
            "THIS IS NOT HTTP\r\n\r\n",
            "\r\nGET /x HTTP/1.2\r\nHost: h\r\n\r\n",
        ];
        for text in texts {
            let whole = head(text);
            for cut in 0..text.len() {
                match head(&text[..cut]) {
                    Ok(None) => {}
                    Err(e) => assert_eq!(Err(e), whole, "{text:?} cut at {cut}"),
                    Ok(Some(h)) => panic!("{text:?} complete at {cut}: {h:?}"),
                }
            }
        }
    }

    #[test]
    fn target_and_query_helpers() {
        assert_eq!(split_target(b"/a/b?x=1"), (&b"/a/b"[..], &b"x=1"[..]));
        assert_eq!(percent_decode(b"a%20b+c", true).unwrap(), "a b c");
        assert_eq!(percent_decode(b"a+b", false).unwrap(), "a+b");
        assert!(percent_decode(b"%zz", false).is_none());
        assert!(percent_decode(b"%ff", false).is_none());
        let pairs: Vec<_> = query_pairs(b"limit=5&&filter=a%20b&x").collect();
        assert_eq!(pairs, vec![(&b"limit"[..], &b"5"[..]), (&b"filter"[..], &b"a%20b"[..]), (&b"x"[..], &b""[..])]);
    }
}
