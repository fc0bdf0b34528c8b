//! Protobuf wire primitives over a byte buffer: varints, keys, lengths, skipping.
//!
//! Every read is bounded by the cursor's `end` (the end of the enclosing message), and
//! every length is compared with what remains before it is added to an offset, so no
//! input can make these panic or overflow.

use super::attrs::Val;
use super::{DecodeError, MAX_GROUP_DEPTH};

pub(super) const VARINT: u8 = 0;
pub(super) const I64: u8 = 1;
pub(super) const LEN: u8 = 2;
pub(super) const SGROUP: u8 = 3;
pub(super) const EGROUP: u8 = 4;
pub(super) const I32: u8 = 5;

/// A byte range `[start, end)` of the decoder's buffer.
pub(super) type Range = (usize, usize);

/// A cursor over `[pos, end)` of the decoder's buffer. It holds the buffer cut at `end`,
/// so one bounds check on a read covers both the enclosing message and the buffer.
#[derive(Clone, Copy)]
pub(super) struct Cur<'a> {
    pub(super) pos: usize,
    buf: &'a [u8],
}

impl<'a> Cur<'a> {
    /// A cursor over `[pos, end)` of `buf` (`pos <= end <= buf.len()`; an `end` past the
    /// buffer gives an empty cursor).
    #[inline]
    pub(super) fn new(buf: &'a [u8], pos: usize, end: usize) -> Self {
        Self {
            pos,
            buf: buf.get(..end).unwrap_or_default(),
        }
    }

    #[inline]
    pub(super) fn more(&self) -> bool {
        self.pos < self.buf.len()
    }

    /// The byte at the cursor (0, never a valid key, at the end).
    #[inline]
    pub(super) fn peek(&self) -> u8 {
        self.buf.get(self.pos).copied().unwrap_or(0)
    }

    /// Bytes left before the end of the enclosing message.
    #[inline]
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }
}

#[inline]
pub(super) fn expect(
    wt: u8,
    want: u8,
    msg: &'static str,
    field: u32,
    at: usize,
) -> Result<(), DecodeError> {
    if wt == want {
        Ok(())
    } else {
        Err(DecodeError::WrongWireType {
            msg,
            field,
            wire_type: wt,
            expected: want,
            at,
        })
    }
}

/// The buffer every [`Cur`] indexes into.
#[derive(Clone, Copy)]
pub(super) struct Wire<'a> {
    pub(super) buf: &'a [u8],
}

impl<'a> Wire<'a> {
    #[inline]
    fn byte(&self, c: &Cur) -> Result<u8, DecodeError> {
        if let Some(&b) = c.buf.get(c.pos) {
            return Ok(b);
        }
        Err(DecodeError::Truncated {
            what: "varint",
            at: c.pos,
        })
    }

    #[inline]
    pub(super) fn varint(&self, c: &mut Cur) -> Result<u64, DecodeError> {
        let b = self.byte(c)?;
        if b < 0x80 {
            c.pos += 1;
            return Ok(u64::from(b));
        }
        // Two bytes (lengths of 128 B - 16 KiB: spans, say) inline too.
        if let Some(&b1) = c.buf.get(c.pos + 1) {
            if b1 < 0x80 {
                c.pos += 2;
                return Ok(u64::from(b & 0x7F) | u64::from(b1) << 7);
            }
        }
        self.varint_slow(c)
    }

    #[cold]
    fn varint_slow(&self, c: &mut Cur) -> Result<u64, DecodeError> {
        let at = c.pos;
        let mut v = 0u64;
        for i in 0..10 {
            let b = self
                .byte(c)
                .map_err(|_| DecodeError::Truncated { what: "varint", at })?;
            c.pos += 1;
            v |= u64::from(b & 0x7F) << (7 * i);
            if b < 0x80 {
                // The 10th byte may only carry the top bit of a u64.
                if i == 9 && b > 1 {
                    return Err(DecodeError::BadVarint { at });
                }
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint { at })
    }

    /// Reads a field key: (field number, wire type, offset of the key).
    #[inline]
    pub(super) fn key(&self, c: &mut Cur) -> Result<(u32, u8, usize), DecodeError> {
        let at = c.pos;
        let b = self.byte(c)?;
        if b < 0x80 {
            // A one-byte key (fields 1-15): only field 0 and wire types 6, 7 are invalid.
            let wt = b & 7;
            if b >= 8 && wt <= I32 {
                c.pos += 1;
                return Ok((u32::from(b >> 3), wt, at));
            }
        }
        let key = self.varint(c)?;
        let wt = (key & 7) as u8;
        if key > u64::from(u32::MAX) || key < 8 || wt > I32 {
            return Err(DecodeError::BadKey { key, at });
        }
        Ok(((key >> 3) as u32, wt, at))
    }

    /// Reads a field key with its one-byte form: `(tag, field, wire type, offset)`, where
    /// `tag` is `field << 3 | wire type` for fields 1-15 however the key was encoded (0
    /// for higher fields), so a message loop can match on `tag` alone and send the rest
    /// to [`Self::other`].
    #[inline(always)]
    pub(super) fn tag(&self, c: &mut Cur) -> Result<(u8, u32, u8, usize), DecodeError> {
        let at = c.pos;
        let b = self.byte(c)?;
        let wt = b & 7;
        if (8..0x80).contains(&b) && wt <= I32 {
            c.pos += 1;
            return Ok((b, u32::from(b >> 3), wt, at));
        }
        let (field, wt, at) = self.key(c)?;
        let tag = if field < 16 {
            (field << 3) as u8 | wt
        } else {
            0
        };
        Ok((tag, field, wt, at))
    }

    /// A key its message loop has no arm for: a field of `declared` (the fields the loop
    /// reads, with their wire types) under another wire type is an error; anything else
    /// is skipped.
    #[inline]
    pub(super) fn other(
        &self,
        c: &mut Cur,
        msg: &'static str,
        declared: &[(u32, u8)],
        field: u32,
        wt: u8,
        at: usize,
    ) -> Result<(), DecodeError> {
        for &(f, want) in declared {
            if f == field {
                expect(wt, want, msg, field, at)?;
            }
        }
        self.skip(c, field, wt, at)
    }

    /// Reads a length prefix and steps over the bytes it covers: their range.
    #[inline]
    pub(super) fn len_range(&self, c: &mut Cur) -> Result<(usize, usize), DecodeError> {
        let at = c.pos;
        let len = self.varint(c)?;
        let remaining = c.left();
        if len > remaining as u64 {
            return Err(DecodeError::LengthOverflow { len, remaining, at });
        }
        let s = c.pos;
        c.pos += len as usize;
        Ok((s, c.pos))
    }

    #[inline]
    pub(super) fn fixed64(&self, c: &mut Cur) -> Result<u64, DecodeError> {
        let at = c.pos;
        let b: Option<[u8; 8]> = c.buf.get(at..at + 8).and_then(|s| s.try_into().ok());
        let b = b.ok_or(DecodeError::Truncated {
            what: "fixed64",
            at,
        })?;
        c.pos += 8;
        Ok(u64::from_le_bytes(b))
    }

    #[inline]
    fn advance(&self, c: &mut Cur, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if c.left() < n {
            return Err(DecodeError::Truncated { what, at: c.pos });
        }
        c.pos += n;
        Ok(())
    }

    /// Skips the value of a field the decoder does not read. The common wire types
    /// inline; groups and errors go out of line ([`Self::skip_rare`]).
    #[inline(always)]
    pub(super) fn skip(
        &self,
        c: &mut Cur,
        field: u32,
        wt: u8,
        at: usize,
    ) -> Result<(), DecodeError> {
        match wt {
            LEN => self.len_range(c).map(drop),
            VARINT => self.varint(c).map(drop),
            I64 => self.advance(c, 8, "fixed64"),
            I32 => self.advance(c, 4, "fixed32"),
            _ => self.skip_rare(c, field, wt, at),
        }
    }

    #[inline(never)]
    fn skip_rare(&self, c: &mut Cur, field: u32, wt: u8, at: usize) -> Result<(), DecodeError> {
        match wt {
            VARINT => self.varint(c).map(drop),
            I64 => self.advance(c, 8, "fixed64"),
            LEN => self.len_range(c).map(drop),
            I32 => self.advance(c, 4, "fixed32"),
            SGROUP => self.skip_group(c, field),
            _ => Err(DecodeError::UnexpectedEndGroup { field, at }),
        }
    }

    /// Skips a (deprecated, but legal) group up to its matching end tag, iteratively.
    fn skip_group(&self, c: &mut Cur, field: u32) -> Result<(), DecodeError> {
        let mut open = [0u32; MAX_GROUP_DEPTH];
        open[0] = field;
        let mut depth = 1;
        while depth > 0 {
            if !c.more() {
                return Err(DecodeError::Truncated {
                    what: "group",
                    at: c.pos,
                });
            }
            let (f, wt, at) = self.key(c)?;
            match wt {
                SGROUP => {
                    if depth == MAX_GROUP_DEPTH {
                        return Err(DecodeError::TooDeep { at });
                    }
                    open[depth] = f;
                    depth += 1;
                }
                EGROUP => {
                    if open[depth - 1] != f {
                        return Err(DecodeError::UnexpectedEndGroup { field: f, at });
                    }
                    depth -= 1;
                }
                _ => self.skip(c, f, wt, at)?,
            }
        }
        Ok(())
    }

    /// A message laid out exactly as `[0x0a, n, n bytes, 0x12, m, m bytes]` (fields 1
    /// and 2, length-delimited, one-byte lengths), how encoders write a `KeyValue`: the
    /// bytes of field 1, their range and the range of field 2. `None` for any other
    /// layout.
    #[inline(always)]
    pub(super) fn canonical_pair(&self, s: usize, e: usize) -> Option<(&'a [u8], Range, Range)> {
        let b = self.buf.get(s..e)?;
        let [0x0a, n, rest @ ..] = b else {
            return None;
        };
        let n = usize::from(*n);
        if n >= 0x80 {
            return None;
        }
        let (key, rest) = rest.split_at_checked(n)?;
        let [0x12, m, value @ ..] = rest else {
            return None;
        };
        if *m >= 0x80 || value.len() != usize::from(*m) {
            return None;
        }
        let k = s + 2;
        Some((key, (k, k + n), (k + n + 2, e)))
    }

    /// An `AnyValue` laid out as a lone `string_value` with a one-byte length
    /// (`[0x0a, n, n bytes]`) or a lone `int_value` (`[0x18, varint]`), exactly filling
    /// `[s, e)`; `None` for any other layout or anything malformed, which the general
    /// reader then reports.
    #[inline(always)]
    pub(super) fn canonical_any(&self, s: usize, e: usize) -> Option<Val> {
        let b = self.buf.get(s..e)?;
        match *b {
            [0x0a, n, ..] if n < 0x80 && usize::from(n) + 2 == b.len() => Some(Val::Str(s + 2, e)),
            [0x18, ..] => {
                let mut c = Cur::new(self.buf, s + 1, e);
                let v = self.varint(&mut c).ok()?;
                // int64 on the wire: the cast is the protobuf rule.
                (c.pos == e).then_some(Val::Int(v as i64))
            }
            _ => None,
        }
    }

    /// UTF-8 check. The strings read here are short and nearly always ASCII: the
    /// inlined ASCII test first, then `std` (benches/decode, 100-span request, lean
    /// decode: 13-18 µs with this, 21-28 µs with `std::str::from_utf8` alone, 25-27 µs
    /// with `simdutf8::basic::from_utf8`, interleaved runs on a loaded 2-core box; so
    /// `simdutf8` is not a dependency).
    #[inline]
    pub(super) fn utf8(&self, s: usize, e: usize, field: &'static str) -> Result<(), DecodeError> {
        match self.buf.get(s..e) {
            Some(b) if ascii(b) || std::str::from_utf8(b).is_ok() => Ok(()),
            _ => Err(DecodeError::InvalidUtf8 { field, at: s }),
        }
    }
}

/// Whether `b` is all ASCII: ORs the bytes a word at a time (the last word overlapping
/// the one before) and tests the high bits once, with no alignment prologue. On the
/// short strings of the hot path (a name and three or four keys per span) this saves
/// ~22 instructions per span over `<[u8]>::is_ascii` (callgrind,
/// `examples/hot_path_profile decode`: 1,200 → 1,178 Ir/span).
#[inline]
pub(super) fn ascii(b: &[u8]) -> bool {
    const HI: u64 = 0x8080_8080_8080_8080;
    let n = b.len();
    if n >= 8 {
        let mut acc = 0u64;
        let mut words = b.chunks_exact(8);
        for w in &mut words {
            acc |= u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        }
        if !words.remainder().is_empty() {
            if let Some(w) = b.get(n - 8..).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
                acc |= u64::from_le_bytes(w);
            }
        }
        acc & HI == 0
    } else if n >= 4 {
        let lo = b.get(..4).and_then(|w| <[u8; 4]>::try_from(w).ok());
        let hi = b.get(n - 4..).and_then(|w| <[u8; 4]>::try_from(w).ok());
        match (lo, hi) {
            (Some(lo), Some(hi)) => {
                (u32::from_le_bytes(lo) | u32::from_le_bytes(hi)) & 0x8080_8080 == 0
            }
            _ => false,
        }
    } else {
        b.iter().fold(0u8, |a, &x| a | x) < 0x80
    }
}
