//! Protobuf wire primitives over a byte buffer: varints, keys, lengths, skipping.
//!
//! Every read is bounded by the cursor's `end` (the end of the enclosing message), and
//! every length is compared with what remains before it is added to an offset, so no
//! input can make these panic or overflow.

use super::{DecodeError, MAX_GROUP_DEPTH};

pub(super) const VARINT: u8 = 0;
pub(super) const I64: u8 = 1;
pub(super) const LEN: u8 = 2;
pub(super) const SGROUP: u8 = 3;
pub(super) const EGROUP: u8 = 4;
pub(super) const I32: u8 = 5;

/// A cursor over `[pos, end)` of the decoder's buffer.
#[derive(Clone, Copy)]
pub(super) struct Cur {
    pub(super) pos: usize,
    pub(super) end: usize,
}

impl Cur {
    pub(super) fn new(pos: usize, end: usize) -> Self {
        Self { pos, end }
    }

    #[inline]
    pub(super) fn more(&self) -> bool {
        self.pos < self.end
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

impl Wire<'_> {
    #[inline]
    fn byte(&self, c: &Cur) -> Result<u8, DecodeError> {
        if c.pos < c.end {
            if let Some(&b) = self.buf.get(c.pos) {
                return Ok(b);
            }
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
        let key = self.varint(c)?;
        let wt = (key & 7) as u8;
        if key > u64::from(u32::MAX) || key < 8 || wt > I32 {
            return Err(DecodeError::BadKey { key, at });
        }
        Ok(((key >> 3) as u32, wt, at))
    }

    /// Reads a length prefix and steps over the bytes it covers: their range.
    #[inline]
    pub(super) fn len_range(&self, c: &mut Cur) -> Result<(usize, usize), DecodeError> {
        let at = c.pos;
        let len = self.varint(c)?;
        let remaining = c.end - c.pos;
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
        let b: Option<[u8; 8]> = if c.end - c.pos >= 8 {
            self.buf.get(at..at + 8).and_then(|s| s.try_into().ok())
        } else {
            None
        };
        let b = b.ok_or(DecodeError::Truncated {
            what: "fixed64",
            at,
        })?;
        c.pos += 8;
        Ok(u64::from_le_bytes(b))
    }

    #[inline]
    fn advance(&self, c: &mut Cur, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if c.end - c.pos < n {
            return Err(DecodeError::Truncated { what, at: c.pos });
        }
        c.pos += n;
        Ok(())
    }

    /// Skips the value of a field the decoder does not read.
    pub(super) fn skip(
        &self,
        c: &mut Cur,
        field: u32,
        wt: u8,
        at: usize,
    ) -> Result<(), DecodeError> {
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

    /// The ranges of the two fields of a message laid out exactly as `[0x0a, n, n bytes,
    /// 0x12, m, m bytes]` (fields 1 and 2, length-delimited, one-byte lengths): how
    /// encoders write a `KeyValue`. `None` for any other layout.
    #[inline]
    pub(super) fn canonical_pair(
        &self,
        s: usize,
        e: usize,
    ) -> Option<((usize, usize), (usize, usize))> {
        let b = self.buf.get(s..e)?;
        let (&k0, &n) = (b.first()?, b.get(1)?);
        let n = usize::from(n);
        let (&v0, &m) = (b.get(2 + n)?, b.get(3 + n)?);
        let m = usize::from(m);
        if k0 != 0x0a || v0 != 0x12 || n >= 0x80 || m >= 0x80 || 4 + n + m != b.len() {
            return None;
        }
        Some(((s + 2, s + 2 + n), (s + 4 + n, e)))
    }

    /// UTF-8 check. The strings read here are short and nearly always ASCII: the
    /// inlined ASCII test first, then `std` (benches/decode, 100-span request, lean
    /// decode: 13-18 µs with this, 21-28 µs with `std::str::from_utf8` alone, 25-27 µs
    /// with `simdutf8::basic::from_utf8`, interleaved runs on a loaded 2-core box; so
    /// `simdutf8` is not a dependency).
    #[inline]
    pub(super) fn utf8(&self, s: usize, e: usize, field: &'static str) -> Result<(), DecodeError> {
        match self.buf.get(s..e) {
            Some(b) if b.is_ascii() || std::str::from_utf8(b).is_ok() => Ok(()),
            _ => Err(DecodeError::InvalidUtf8 { field, at: s }),
        }
    }
}
