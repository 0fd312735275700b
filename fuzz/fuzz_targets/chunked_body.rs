//! The chunked body decoder (`http::request::decode_chunked`) over arbitrary
//! bytes: it must never panic, never exceed its limit, and answer the same
//! for a prefix of the bytes as the connection would see while the rest is
//! still on the way:
//! - once the whole input decodes (`Done { consumed }`), every prefix shorter
//!   than `consumed` is `Partial`, and every longer one gives the same body;
//! - a prefix is never rejected when the whole input is not.
//!
//! Input: one byte choosing the limit, then the body bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_cache::http::request::{decode_chunked, Chunked};

fuzz_target!(|data: &[u8]| {
    let Some((&limit, input)) = data.split_first() else { return };
    let limit = usize::from(limit) * 8;
    let mut whole_body = Vec::new();
    let whole = decode_chunked(input, &mut whole_body, limit);
    assert!(whole_body.len() <= limit, "body over the limit");
    if let Ok(Chunked::Done { consumed }) = whole {
        assert!(consumed <= input.len());
    }
    let mut body = Vec::new();
    for cut in (0..input.len()).filter(|c| worth_cutting(input, *c)) {
        let prefix = decode_chunked(&input[..cut], &mut body, limit);
        match (&whole, &prefix) {
            (Ok(Chunked::Done { consumed }), _) if cut < *consumed => assert_eq!(prefix, Ok(Chunked::Partial), "prefix of {cut} bytes"),
            (Ok(Chunked::Done { .. }), _) => {
                assert_eq!(prefix, whole, "prefix of {cut} bytes");
                assert_eq!(body, whole_body);
            }
            (Ok(Chunked::Partial), _) => assert_eq!(prefix, Ok(Chunked::Partial), "prefix of {cut} bytes of an incomplete body"),
            // More bytes may reveal an error; fewer may not be rejected for another reason.
            (Err(_), Err(_)) => assert_eq!(prefix, whole, "prefix of {cut} bytes"),
            (Err(_), Ok(Chunked::Partial)) => {}
            (Err(_), Ok(Chunked::Done { .. })) => panic!("a prefix of {cut} bytes completes a body the whole input rejects"),
        }
    }
});

/// Every cut of short inputs; of long ones a spread plus every cut next to a
/// CR, where line ends are judged (all of them would make runs slow).
fn worth_cutting(input: &[u8], cut: usize) -> bool {
    input.len() <= 256 || cut.is_multiple_of(input.len() / 128) || input[cut] == b'\r' || cut.checked_sub(1).is_some_and(|p| input[p] == b'\r')
}
