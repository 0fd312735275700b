//! The chunked body decoder (`http::chunked::ChunkedDecoder`) over arbitrary
//! bytes. It keeps its state between reads, so it must answer the same
//! however the bytes are split: fed whole, fed in two pieces at every cut
//! worth trying, the outcome (body, bytes used, or error) is identical. It
//! never panics and never lets the body exceed its limit.
//!
//! Input: one byte choosing the limit, then the body bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_cache::http::chunked::{Chunked, ChunkedDecoder};
use push_cache::http::request::ParseError;

/// The decoder's verdict on `pieces` fed in order: the body and how many
/// bytes of all pieces it used when complete, `None` when it needs more.
fn decode(pieces: &[&[u8]], limit: usize) -> Result<Option<(Vec<u8>, usize)>, ParseError> {
    let mut decoder = ChunkedDecoder::new(limit);
    let mut body = Vec::new();
    let mut used = 0;
    for piece in pieces {
        match decoder.decode(piece, &mut body)? {
            Chunked::Done { consumed } => {
                assert!(consumed <= piece.len());
                return Ok(Some((body, used + consumed)));
            }
            Chunked::Partial => used += piece.len(),
        }
        assert!(body.len() <= limit, "body over the limit");
    }
    Ok(None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&limit, input)) = data.split_first() else { return };
    let limit = usize::from(limit) * 8;
    let whole = decode(&[input], limit);
    if let Ok(Some((body, _))) = &whole {
        assert!(body.len() <= limit, "body over the limit");
    }
    for cut in (0..input.len()).filter(|c| worth_cutting(input, *c)) {
        let split = decode(&[&input[..cut], &input[cut..]], limit);
        assert_eq!(split, whole, "split at {cut}");
    }
});

/// Every cut of short inputs; of long ones a spread plus every cut next to a
/// CR or LF, where line ends are judged (all of them would make runs slow).
fn worth_cutting(input: &[u8], cut: usize) -> bool {
    let near_line_end = |i: usize| input.get(i).is_some_and(|b| *b == b'\r' || *b == b'\n');
    input.len() <= 256
        || cut.is_multiple_of(input.len() / 128)
        || near_line_end(cut)
        || cut.checked_sub(1).is_some_and(near_line_end)
}
