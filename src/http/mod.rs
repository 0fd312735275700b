//! HTTP/1.1, hand-rolled on `httparse`: parsing (`request`), writing
//! (`response`) and the connection state machine (`connection`).

pub mod connection;
pub mod request;
pub mod response;

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
