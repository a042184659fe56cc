//! Protobuf read in place: fields as borrowed slices, no owned messages.
//!
//! The ingest fast path reads OTLP exports and WAL records with this instead of decoding
//! them into structs of `String`s and `Vec`s, which cost an allocation per attribute key and
//! value. The checks are prost's: truncated lengths, over-long varints, field number 0,
//! unknown wire types, nesting beyond [`RECURSION_LIMIT`], strings that are not UTF-8.

use std::fmt;

/// Messages nested deeper than this are refused, as prost does.
pub const RECURSION_LIMIT: u32 = 100;

/// What is wrong with the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError(pub &'static str);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for WireError {}

/// One field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: bytes, strings, nested messages, packed repeated fields.
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
    /// Wire types 3 and 4 (deprecated groups), skipped whole.
    Group,
}

impl<'a> Value<'a> {
    /// The value of a length-delimited field.
    pub fn bytes(self) -> Result<&'a [u8], WireError> {
        match self {
            Value::Bytes(b) => Ok(b),
            _ => Err(WireError("invalid wire type for a length-delimited field")),
        }
    }

    /// The value of a string field.
    pub fn str(self) -> Result<&'a str, WireError> {
        utf8(self.bytes()?)
    }

    /// The value of a varint field.
    pub fn varint(self) -> Result<u64, WireError> {
        match self {
            Value::Varint(v) => Ok(v),
            _ => Err(WireError("invalid wire type for a varint field")),
        }
    }

    /// The value of a `fixed64` or `double` field, as bits.
    pub fn fixed64(self) -> Result<u64, WireError> {
        match self {
            Value::Fixed64(v) => Ok(v),
            _ => Err(WireError("invalid wire type for a fixed64 field")),
        }
    }
}

/// Checks that bytes are UTF-8.
pub fn utf8(b: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(b).map_err(|_| WireError("invalid string value: data is not UTF-8 encoded"))
}

/// Reads a varint.
pub fn read_varint(buf: &mut &[u8]) -> Result<u64, WireError> {
    // Most varints on the ingest path (tags, lengths, kinds) are one byte.
    if let Some((&b, rest)) = buf.split_first()
        && b < 0x80
    {
        *buf = rest;
        return Ok(u64::from(b));
    }
    let mut value = 0u64;
    for i in 0..10 {
        let Some((&b, rest)) = buf.split_first() else {
            return Err(WireError("buffer underflow"));
        };
        *buf = rest;
        if i == 9 && b > 1 {
            return Err(WireError("invalid varint"));
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err(WireError("invalid varint"))
}

/// Takes the next `n` bytes.
pub fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if buf.len() < n {
        return Err(WireError("buffer underflow"));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// Takes the next `N` bytes as an array (a little-endian number's, say).
pub fn take_array<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], WireError> {
    let mut a = [0u8; N];
    a.copy_from_slice(take(buf, N)?);
    Ok(a)
}

/// The fields of one message, in the order they are on the wire.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
}

/// Iterates the fields of a message.
pub fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf }
}

impl<'a> Fields<'a> {
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn next_field(&mut self) -> Result<(u32, Value<'a>), WireError> {
        let key = read_varint(&mut self.buf)?;
        if key > u64::from(u32::MAX) {
            return Err(WireError("invalid key value"));
        }
        let tag = (key >> 3) as u32;
        if tag == 0 {
            return Err(WireError("invalid tag value: 0"));
        }
        let value = match key & 7 {
            0 => Value::Varint(read_varint(&mut self.buf)?),
            1 => Value::Fixed64(u64::from_le_bytes(take(&mut self.buf, 8)?.try_into().unwrap_or_default())),
            2 => {
                let len = read_varint(&mut self.buf)?;
                let len = usize::try_from(len).map_err(|_| WireError("buffer underflow"))?;
                Value::Bytes(take(&mut self.buf, len)?)
            }
            3 => {
                skip_group(&mut self.buf, tag)?;
                Value::Group
            }
            5 => Value::Fixed32(u32::from_le_bytes(take(&mut self.buf, 4)?.try_into().unwrap_or_default())),
            _ => return Err(WireError("invalid wire type value")),
        };
        Ok((tag, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let item = self.next_field();
        if item.is_err() {
            self.buf = &[];
        }
        Some(item)
    }
}

/// Skips a group up to its end marker (groups inside it included, to the recursion limit).
fn skip_group(buf: &mut &[u8], tag: u32) -> Result<(), WireError> {
    let mut open = vec![tag];
    while let Some(&current) = open.last() {
        if open.len() as u32 > RECURSION_LIMIT {
            return Err(WireError("recursion limit reached"));
        }
        let key = read_varint(buf)?;
        if key > u64::from(u32::MAX) {
            return Err(WireError("invalid key value"));
        }
        let t = (key >> 3) as u32;
        if t == 0 {
            return Err(WireError("invalid tag value: 0"));
        }
        match key & 7 {
            0 => {
                read_varint(buf)?;
            }
            1 => {
                take(buf, 8)?;
            }
            2 => {
                let len = usize::try_from(read_varint(buf)?).map_err(|_| WireError("buffer underflow"))?;
                take(buf, len)?;
            }
            3 => open.push(t),
            4 if t == current => {
                open.pop();
            }
            4 => return Err(WireError("unexpected end group tag")),
            5 => {
                take(buf, 4)?;
            }
            _ => return Err(WireError("invalid wire type value")),
        }
    }
    Ok(())
}

/// Appends a varint.
pub fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a length-delimited field (bytes, string or an encoded message); empty values
/// are left out as prost leaves them out, unless `always`.
pub fn put_bytes(tag: u32, b: &[u8], out: &mut Vec<u8>) {
    if b.is_empty() {
        return;
    }
    put_message(tag, b, out);
}

/// Appends an embedded message, even an empty one (repeated fields keep empty elements).
pub fn put_message(tag: u32, b: &[u8], out: &mut Vec<u8>) {
    put_varint(u64::from(tag << 3 | 2), out);
    put_varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

/// An embedded message being written in place (see [`begin_message`]).
#[derive(Debug, Clone, Copy)]
pub struct Open {
    /// Where the field starts (its tag).
    pub start: usize,
    len_at: usize,
    width: usize,
}

/// Bytes a varint of `v` takes.
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Starts an embedded message field `tag` whose body is appended next, in place, so it
/// is not built in a buffer of its own and copied. Room is left for a length of about
/// `guess` bytes; [`end_message`] writes the real length and moves the body only when
/// its varint is wider or narrower than that guess. The bytes equal [`put_message`]'s.
pub fn begin_message(tag: u32, guess: usize, out: &mut Vec<u8>) -> Open {
    let start = out.len();
    put_varint(u64::from(tag << 3 | 2), out);
    let width = varint_len(guess as u64);
    let len_at = out.len();
    out.resize(len_at + width, 0);
    Open { start, len_at, width }
}

/// Ends a message begun with [`begin_message`]; returns where its body now is.
pub fn end_message(open: Open, out: &mut Vec<u8>) -> std::ops::Range<usize> {
    let body = open.len_at + open.width;
    let len = out.len() - body;
    let width = varint_len(len as u64);
    let at = open.len_at + width;
    if width > open.width {
        out.resize(out.len() + (width - open.width), 0);
        out.copy_within(body..body + len, at);
    } else if width < open.width {
        out.copy_within(body..body + len, at);
        out.truncate(at + len);
    }
    let mut v = len as u64;
    for b in &mut out[open.len_at..at] {
        *b = (v as u8 & 0x7f) | if v >= 0x80 { 0x80 } else { 0 };
        v >>= 7;
    }
    at..at + len
}

/// Appends a varint field unless it is 0.
pub fn put_varint_field(tag: u32, v: u64, out: &mut Vec<u8>) {
    if v != 0 {
        put_varint(u64::from(tag << 3), out);
        put_varint(v, out);
    }
}

/// Appends a `fixed64` field unless it is 0.
pub fn put_fixed64(tag: u32, v: u64, out: &mut Vec<u8>) {
    if v != 0 {
        put_varint(u64::from(tag << 3 | 1), out);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::records::{Attr, SpanRecord};

    #[test]
    fn reads_what_prost_writes() {
        let span = SpanRecord {
            trace_id: vec![7; 16],
            name: "héllo".into(),
            kind: 2,
            start_unix_nano: u64::MAX - 3,
            attributes: vec![Attr::new("k", "v"), Attr::new("", "")],
            ..Default::default()
        };
        let bytes = span.encode_to_vec();
        let got: Vec<(u32, Value)> = fields(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(got[0], (1, Value::Bytes(&[7; 16])));
        assert_eq!(got[1].1.str().unwrap(), "héllo");
        assert_eq!(got[2], (5, Value::Varint(2)));
        assert_eq!(got[3], (6, Value::Fixed64(u64::MAX - 3)));
        assert_eq!(got.iter().filter(|(t, _)| *t == 9).count(), 2);
    }

    #[test]
    fn writes_what_prost_writes() {
        let span = SpanRecord {
            span_id: vec![1; 8],
            name: "n".into(),
            kind: 3,
            end_unix_nano: 99,
            attributes: vec![Attr::new("k", "")],
            ..Default::default()
        };
        let mut attr = Vec::new();
        put_bytes(1, b"k", &mut attr);
        let mut out = Vec::new();
        put_bytes(1, &[], &mut out);
        put_bytes(2, &[1; 8], &mut out);
        put_bytes(4, b"n", &mut out);
        put_varint_field(5, 3, &mut out);
        put_fixed64(6, 0, &mut out);
        put_fixed64(7, 99, &mut out);
        put_message(9, &attr, &mut out);
        assert_eq!(out, span.encode_to_vec());
    }

    #[test]
    fn in_place_messages_equal_put_message() {
        // Every guess, right or wrong in either direction, gives put_message's bytes.
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 20_000] {
            let body: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut want = vec![9, 9];
            put_message(3, &body, &mut want);
            for guess in [0usize, 100, 200, 20_000, 3_000_000] {
                let mut out = vec![9, 9];
                let open = begin_message(3, guess, &mut out);
                assert_eq!(open.start, 2);
                out.extend_from_slice(&body);
                let at = end_message(open, &mut out);
                assert_eq!(out, want, "len {len} guess {guess}");
                assert_eq!(&out[at], &body[..]);
            }
        }
        assert_eq!((varint_len(0), varint_len(127), varint_len(128), varint_len(u64::MAX)), (1, 1, 2, 10));
    }

    #[test]
    fn refuses_what_prost_refuses() {
        let err = |b: &[u8]| fields(b).find_map(Result::err).map(|e| e.0);
        assert_eq!(err(&[0x0a, 0x05, 1]), Some("buffer underflow"));
        assert_eq!(err(&[0x08]), Some("buffer underflow"));
        assert_eq!(err(&[0x00, 0x01]), Some("invalid tag value: 0"));
        assert_eq!(err(&[0x0f]), Some("invalid wire type value"));
        assert_eq!(err(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), Some("invalid varint"));
        assert!(fields(&[0x0a, 0x01, 0xff]).next().unwrap().unwrap().1.str().unwrap_err().0.contains("UTF-8"));
        // A group is skipped whole, nested groups included; an unclosed one is refused.
        let group = [0x0b, 0x10, 0x01, 0x1b, 0x1c, 0x0c, 0x18, 0x05];
        let got: Vec<_> = fields(&group).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, vec![(1, Value::Group), (3, Value::Varint(5))]);
        assert_eq!(err(&[0x0b, 0x10, 0x01]), Some("buffer underflow"));
        // A key past 32 bits, at the top and inside a group (found by fuzzing).
        let wide = [0x80, 0x80, 0x80, 0x80, 0x10];
        assert_eq!(err(&wide), Some("invalid key value"));
        let in_group = [&[0x0b][..], &wide, &[0x0c]].concat();
        assert_eq!(err(&in_group), Some("invalid key value"));
        // prost agrees on each (`()`: every field unknown, so skipped as this skips them).
        for bad in [&[0x0a, 0x05, 1][..], &[0x08], &[0x00, 0x01], &[0x0f], &[0x0b, 0x10, 0x01], &wide, &in_group] {
            assert!(<() as Message>::decode(bad).is_err(), "{bad:x?}");
        }
        <() as Message>::decode(&group[..]).unwrap();
    }
}
