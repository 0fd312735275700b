//! The chunked transfer coding of request bodies (RFC 9112 section 7.1),
//! decoded by a byte-level state machine that keeps its state between reads.
//!
//! Each input byte is looked at once, however the body is split into reads,
//! so decoding is linear in the body's size; and since a split never changes
//! the state reached, a body split over many reads decodes (or is refused)
//! exactly like the same bytes sent whole.
//!
//! Only the RFC's syntax is accepted, nothing a lenient parser might read
//! differently (the classic smuggling vector is a proxy and a server
//! disagreeing on where a chunk ends):
//!
//! ```text
//! chunk       = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size  = 1*HEXDIG
//! chunk-ext   = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
//! ext-name    = token ; ext-val = token / quoted-string
//! last-chunk  = 1*("0") [ chunk-ext ] CRLF
//! trailer     = *( field-name ":" OWS field-value OWS CRLF ) CRLF
//! ```
//!
//! A bare LF, a bare CR or any control byte outside chunk data is 400.
//! Extensions and trailer fields are checked, then ignored.

use super::request::{is_token, ParseError};

/// A chunk-size or trailer line longer than this (its CRLF not counted) is malformed.
pub const MAX_CHUNK_LINE: usize = 1024;
/// All trailer lines together, CRLFs included; above it 431.
pub const MAX_TRAILER: usize = 16 * 1024;

const BAD_SIZE_LINE: &str = "malformed chunk-size line or chunk extension";
const BAD_DATA_END: &str = "chunk data not followed by CRLF";
const BAD_TRAILER: &str = "malformed trailer field";

/// Outcome of decoding some bytes of a chunked body.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunked {
    /// The body is complete; `consumed` bytes of this input were used and
    /// the rest belongs to the next request.
    Done { consumed: usize },
    /// Every byte of the input was used; more are needed.
    Partial,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Hex digits of the chunk size.
    Size,
    /// After the size or an extension name or value.
    AfterItem(Item),
    /// Whitespace after an item: only `;` (or `=` after a name) may follow.
    Space(Item),
    /// After `;`: optional whitespace, then an extension name.
    ExtName {
        started: bool,
    },
    /// After `=`: optional whitespace, then a token or a quoted string.
    ExtValue {
        started: bool,
    },
    Quoted,
    QuotedEscape,
    /// CR seen at the end of the size line.
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    Size,
    Name,
    Value,
}

/// Decodes one chunked body fed in pieces. `out` (the decoded body) is
/// never longer than `limit`; the coded form may be up to `8 * limit +
/// 64 KiB` (small chunks and extensions cost bytes), beyond that 413.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    /// The current size line has at least one digit.
    digits: bool,
    limit: usize,
    /// Bytes of the current size or trailer line, CRLF not counted.
    line: usize,
    trailer: usize,
    /// Coded bytes taken so far.
    taken: usize,
}

impl ChunkedDecoder {
    pub fn new(limit: usize) -> ChunkedDecoder {
        ChunkedDecoder { state: State::Size, size: 0, digits: false, limit, line: 0, trailer: 0, taken: 0 }
    }

    fn max_coded(&self) -> usize {
        self.limit.saturating_mul(8).saturating_add(64 * 1024)
    }

    /// Decodes the next bytes of the body, appending data to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Chunked, ParseError> {
        let budget = self.max_coded() - self.taken;
        let mut pos = 0;
        while pos < input.len() && self.state != State::Done {
            if pos == budget {
                return Err(ParseError::BodyTooLarge);
            }
            if let State::Data(left) = self.state {
                let n = (input.len() - pos).min(budget - pos).min(usize::try_from(left).unwrap_or(usize::MAX));
                out.extend_from_slice(&input[pos..pos + n]);
                pos += n;
                self.state = if left == n as u64 { State::DataCr } else { State::Data(left - n as u64) };
                continue;
            }
            self.step(input[pos], out.len())?;
            pos += 1;
        }
        self.taken += pos;
        Ok(if self.state == State::Done { Chunked::Done { consumed: pos } } else { Chunked::Partial })
    }

    /// One byte outside chunk data.
    fn step(&mut self, b: u8, decoded: usize) -> Result<(), ParseError> {
        use State::*;
        self.count_line(b)?;
        self.state = match self.state {
            Size => match hex_value(b) {
                Some(d) => self.add_digit(d, decoded)?,
                None if !self.digits => return Err(ParseError::Malformed(BAD_SIZE_LINE)),
                None => self.after_item(Item::Size, b)?,
            },
            AfterItem(item) => self.after_item(item, b)?,
            Space(item) => match b {
                b' ' | b'\t' => Space(item),
                b';' => ExtName { started: false },
                b'=' if item == Item::Name => ExtValue { started: false },
                _ => return Err(ParseError::Malformed(BAD_SIZE_LINE)),
            },
            ExtName { started } => match b {
                b' ' | b'\t' if !started => ExtName { started },
                _ if is_token(b) => ExtName { started: true },
                _ if started => self.after_item(Item::Name, b)?,
                _ => return Err(ParseError::Malformed(BAD_SIZE_LINE)),
            },
            ExtValue { started } => match b {
                b' ' | b'\t' if !started => ExtValue { started },
                b'"' if !started => Quoted,
                _ if is_token(b) => ExtValue { started: true },
                _ if started => self.after_item(Item::Value, b)?,
                _ => return Err(ParseError::Malformed(BAD_SIZE_LINE)),
            },
            Quoted => match b {
                b'"' => AfterItem(Item::Value),
                b'\\' => QuotedEscape,
                b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => Quoted,
                _ => return Err(ParseError::Malformed(BAD_SIZE_LINE)),
            },
            QuotedEscape => match b {
                b'\t' | b' '..=0x7e | 0x80..=0xff => Quoted,
                _ => return Err(ParseError::Malformed(BAD_SIZE_LINE)),
            },
            SizeLf => match b {
                b'\n' if self.size == 0 => TrailerStart,
                b'\n' => Data(self.size),
                _ => return Err(ParseError::Malformed(BAD_SIZE_LINE)),
            },
            DataCr if b == b'\r' => DataLf,
            DataLf if b == b'\n' => Size,
            DataCr | DataLf => return Err(ParseError::Malformed(BAD_DATA_END)),
            TrailerStart => match b {
                b'\r' => FinalLf,
                _ if is_token(b) => TrailerName,
                _ => return Err(ParseError::Malformed(BAD_TRAILER)),
            },
            TrailerName => match b {
                b':' => TrailerValue,
                _ if is_token(b) => TrailerName,
                _ => return Err(ParseError::Malformed(BAD_TRAILER)),
            },
            TrailerValue => match b {
                b'\r' => TrailerLf,
                b'\t' | b' '..=0x7e | 0x80..=0xff => TrailerValue,
                _ => return Err(ParseError::Malformed(BAD_TRAILER)),
            },
            TrailerLf | FinalLf if b != b'\n' => return Err(ParseError::Malformed(BAD_TRAILER)),
            TrailerLf => TrailerStart,
            FinalLf => Done,
            Data(_) | Done => unreachable!("handled by decode"),
        };
        if matches!(self.state, Size | TrailerStart) && b == b'\n' {
            // A new line starts.
            self.line = 0;
            self.size = 0;
            self.digits = false;
        }
        Ok(())
    }

    /// What may follow a size, an extension name or an extension value.
    fn after_item(&self, item: Item, b: u8) -> Result<State, ParseError> {
        Ok(match b {
            b' ' | b'\t' => State::Space(item),
            b';' => State::ExtName { started: false },
            b'=' if item == Item::Name => State::ExtValue { started: false },
            b'\r' => State::SizeLf,
            _ => return Err(ParseError::Malformed(BAD_SIZE_LINE)),
        })
    }

    fn add_digit(&mut self, digit: u8, decoded: usize) -> Result<State, ParseError> {
        let size = self.size.checked_mul(16).and_then(|s| s.checked_add(u64::from(digit)));
        let room = (self.limit - decoded) as u64;
        match size {
            Some(s) if s <= room => {
                self.size = s;
                self.digits = true;
                Ok(State::Size)
            }
            _ => Err(ParseError::BodyTooLarge),
        }
    }

    /// Counts the bytes of size and trailer lines (CR and LF not counted)
    /// and of the whole trailer section against their limits.
    fn count_line(&mut self, b: u8) -> Result<(), ParseError> {
        use State::*;
        let in_trailer = matches!(self.state, TrailerStart | TrailerName | TrailerValue | TrailerLf | FinalLf);
        if in_trailer {
            self.trailer += 1;
            if self.trailer > MAX_TRAILER {
                return Err(ParseError::HeadersTooLarge);
            }
        }
        if matches!(self.state, SizeLf | Data(_) | DataCr | DataLf | TrailerLf | FinalLf | Done) || b == b'\r' {
            return Ok(());
        }
        self.line += 1;
        if self.line > MAX_CHUNK_LINE {
            return Err(ParseError::Malformed("chunk-size or trailer line too long"));
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// Decodes a whole chunked body at once into `out` (cleared first): a
/// fresh `ChunkedDecoder` fed `input`.
pub fn decode_chunked(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<Chunked, ParseError> {
    out.clear();
    ChunkedDecoder::new(limit).decode(input, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 100;

    fn decode(input: &[u8]) -> Result<(Chunked, Vec<u8>), ParseError> {
        let mut out = Vec::new();
        decode_chunked(input, &mut out, LIMIT).map(|c| (c, out))
    }

    /// Decodes `input` fed one byte at a time; must agree with `decode`.
    fn decode_bytewise(input: &[u8]) -> Result<(Chunked, Vec<u8>), ParseError> {
        let mut d = ChunkedDecoder::new(LIMIT);
        let mut out = Vec::new();
        for (i, b) in input.iter().enumerate() {
            if let Chunked::Done { consumed } = d.decode(std::slice::from_ref(b), &mut out)? {
                assert_eq!(consumed, 1);
                return Ok((Chunked::Done { consumed: i + 1 }, out));
            }
        }
        Ok((Chunked::Partial, out))
    }

    fn accepted(input: &str) -> Vec<u8> {
        let whole = decode(input.as_bytes());
        assert_eq!(whole, decode_bytewise(input.as_bytes()), "whole vs byte by byte: {input:?}");
        match whole {
            Ok((Chunked::Done { consumed }, out)) if consumed == input.len() => out,
            other => panic!("{input:?} not accepted: {other:?}"),
        }
    }

    fn refused(input: &str) -> ParseError {
        let whole = decode(input.as_bytes());
        assert_eq!(whole, decode_bytewise(input.as_bytes()), "whole vs byte by byte: {input:?}");
        match whole {
            Err(e) => e,
            other => panic!("{input:?} not refused: {other:?}"),
        }
    }

    #[test]
    fn plain_chunks_extensions_and_trailers() {
        assert_eq!(accepted("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"), b"Wikipedia");
        assert_eq!(accepted("A\r\n0123456789\r\n000\r\n\r\n"), b"0123456789");
        assert_eq!(accepted("1;a\r\nx\r\n0\r\n\r\n"), b"x");
        assert_eq!(accepted("1 ; a = b ;c=\"q \\\" ;\"\r\nx\r\n0;last\r\n\r\n"), b"x");
        assert_eq!(accepted("1\r\nx\r\n0\r\nExpires: never\r\nX-Empty:\r\n\r\n"), b"x");
        assert_eq!(accepted("0\r\n\r\n"), b"");
    }

    #[test]
    fn bare_lf_and_other_sloppy_syntax_are_refused() {
        // The smuggling case: a lenient parser ends the size line at the bare LF.
        assert!(matches!(refused("2;a\nxx\r\n45\r\n"), ParseError::Malformed(_)));
        for bad in [
            "2\nxx\r\n0\r\n\r\n",
            "2\r\nxx\n0\r\n\r\n",
            "2\r\nxxx\r\n",
            "\r\n",
            " 2\r\nxx\r\n",
            "2 \r\nxx\r\n",
            "2;\r\nxx\r\n",
            "2;a=\r\nxx\r\n",
            "2;a b\r\nxx\r\n",
            "2;a=\"x\r\nxx\r\n",
            "2;a=\"\x01\"\r\nxx\r\n",
            "2;a=b c\r\nxx\r\n",
            "2\r\r\nxx\r\n",
            "0x2\r\nxx\r\n",
            "-2\r\nxx\r\n",
            "zz\r\n",
            "0\r\nBad Name: x\r\n\r\n",
            "0\r\nX: a\x00b\r\n\r\n",
            "0\r\nX: a\nY: b\r\n\r\n",
            "0\r\n\n",
            "0\r\n: x\r\n\r\n",
            "0\r\n folded: x\r\n\r\n",
        ] {
            assert!(matches!(refused(bad), ParseError::Malformed(_)), "{bad:?}");
        }
    }

    #[test]
    fn sizes_beyond_the_limit_are_413() {
        assert_eq!(refused("65\r\n"), ParseError::BodyTooLarge);
        assert_eq!(refused("ffffffffffffffffffff\r\n"), ParseError::BodyTooLarge);
        let mut d = ChunkedDecoder::new(LIMIT);
        let mut out = Vec::new();
        assert_eq!(d.decode(b"32\r\n", &mut out), Ok(Chunked::Partial));
        assert_eq!(d.decode(&[b'x'; 50], &mut out), Ok(Chunked::Partial));
        assert_eq!(d.decode(b"\r\n33\r\n", &mut out), Err(ParseError::BodyTooLarge));
    }

    #[test]
    fn coded_size_is_bounded_too() {
        // Extensions fill 8 * limit + 64 KiB of coded bytes with one byte of data.
        let line = format!("1;{}\r\nx\r\n", "e".repeat(MAX_CHUNK_LINE - 2));
        let mut d = ChunkedDecoder::new(LIMIT);
        let mut out = Vec::new();
        let mut result = Ok(Chunked::Partial);
        for _ in 0..200 {
            result = d.decode(line.as_bytes(), &mut out);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ParseError::BodyTooLarge));
    }

    #[test]
    fn line_lengths_are_limited_whole_or_split() {
        let ok = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_LINE - 2));
        accepted(&ok);
        let long = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_LINE - 1));
        assert!(matches!(refused(&long), ParseError::Malformed(_)));
        let trailer = format!("0\r\nT:{}\r\n\r\n", "t".repeat(MAX_CHUNK_LINE - 2));
        accepted(&trailer);
        let many: String = (0..20).map(|_| format!("T:{}\r\n", "t".repeat(1000))).collect();
        assert_eq!(refused(&format!("0\r\n{many}\r\n")), ParseError::HeadersTooLarge);
    }

    #[test]
    fn stops_at_the_end_of_the_body_and_every_split_agrees() {
        let input = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let body_len = input.len() - 4;
        let mut out = Vec::new();
        assert_eq!(decode_chunked(input, &mut out, LIMIT), Ok(Chunked::Done { consumed: body_len }));
        assert_eq!(out, b"Wikipedia");
        for cut in 0..=input.len() {
            let mut d = ChunkedDecoder::new(LIMIT);
            let mut out = Vec::new();
            let first = d.decode(&input[..cut], &mut out).unwrap();
            if cut >= body_len {
                assert_eq!(first, Chunked::Done { consumed: body_len }, "cut at {cut}");
            } else {
                assert_eq!(first, Chunked::Partial, "cut at {cut}");
                assert_eq!(d.decode(&input[cut..], &mut out), Ok(Chunked::Done { consumed: body_len - cut }));
            }
            assert_eq!(out, b"Wikipedia", "cut at {cut}");
        }
    }
}
