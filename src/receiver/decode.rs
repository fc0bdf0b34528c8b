//! The zero-copy OTLP trace decoder: `ExportTraceServiceRequest` bytes → [`TraceBatch`].
//!
//! A hand-written protobuf wire reader that walks only what the shards need and skips the
//! rest by wire type. It allocates nothing per span beyond the pushes into the batch
//! vectors and copies no string: every text field is a [`Str`] range into the request
//! buffer, which the batch keeps alive (`Bytes` is reference counted).
//!
//! # What it extracts
//!
//! Per `ResourceSpans` with at least one span, a [`ResourceRec`]: `service.name`,
//! `service.namespace`, `deployment.environment.name` (else `deployment.environment`),
//! `service.version`, and the rare attributes of [`Ext`] (CI/CD, VCS, deployment,
//! `error.type`; the record-level identity fields of a resource's `Ext` stay empty, since
//! the resource's identity is the `ResourceRec` itself). Per span, a [`SpanRec`]; a span
//! carrying at least one rare key also gets an [`Ext`] in [`TraceBatch::ext`].
//!
//! # Attribute semantics
//!
//! - **Duplicate keys: the last occurrence wins**, whatever its value: a later
//!   `http.route` with an int value leaves the route absent, even after an earlier string.
//!   Flags ([`crate::model::flags`]) record that a key is present at all, with any value.
//! - String fields ([`Str`]) take string values only; any other value type is "absent".
//! - `http.response.status_code` and legacy `http.status_code`: an int, or a string that
//!   parses as an `i64`; outside `100..=999` it is absent (0). The new key is used when it
//!   yields a code, else the legacy one.
//! - `rpc.grpc.status_code`: an int in `0..=16`, else absent (255).
//! - `rpc.status_code`: a string mapped to [`rpc_code`]; present with any other string
//!   or value type it is [`rpc_code::OTHER`].
//! - `cicd.pipeline.run.id`: a string ([`Ext::run_id`]) or an int ([`Ext::run_id_int`]).
//! - Environment: the `deployment.environment.name` string when non-empty, else the
//!   `deployment.environment` string.
//! - Identity values (service, namespace, environment, version — on the resource and,
//!   for record-level attribution, on the span — plus span name and `http.route`) are
//!   cut to at most [`DecodeOptions::max_value_bytes`] bytes on a UTF-8 char boundary.
//! - Span kinds outside 0..=5 read as `UNSPECIFIED`, status codes outside 0..=2 as
//!   `UNSET`.
//!
//! # Validation
//!
//! Every structure the reader walks must be well formed: a truncated varint, length or
//! fixed field, a length running past its enclosing message, a wrong wire type for a
//! field it reads, an invalid key, a stray end-group tag or a group nested deeper than
//! [`MAX_GROUP_DEPTH`] is a [`DecodeError`]. Every string it reads must be valid UTF-8:
//! span names, attribute keys of spans and resources, the values of resource attributes,
//! the span attribute values it extracts, and status messages.
//!
//! Attribute values nested deeper than [`MAX_VALUE_DEPTH`] (arrays and kvlists inside
//! each other, in any attribute of a resource, scope, span, event or link) are a
//! [`DecodeError`]: a hostile nesting is refused here, before a protobuf decoder
//! downstream (the span archive, the next hop) meets it.
//!
//! Fields skipped wholesale are **not** validated beyond that: trace/span ids,
//! `trace_state`, events, links, scopes, span attributes it does not extract, and
//! arrays/kvlists nested in attribute values. So this reader accepts a few requests a full protobuf decoder would
//! refuse (invalid UTF-8 inside an event, say); it accepts everything such a decoder
//! accepts, with the same protobuf semantics (last scalar wins, repeated occurrences of a
//! singular message field merge, unknown fields — groups included — are skipped).
//!
//! Never panics, whatever the input; lengths are checked against what remains before any
//! arithmetic on them.

use bytes::Bytes;

use crate::model::{Ext, ResourceRec, SpanRec, Str, TraceBatch};

mod attrs;
mod wire;

use attrs::{classify, cut, kind_of, status_of, str_of, Attrs, Key, Val};
use wire::{expect, Cur, Wire, I64, LEN, VARINT};

/// Decoder settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Identity values (service, namespace, environment, version, span name, route) are
    /// cut to at most this many bytes, on a UTF-8 char boundary (`limits.max_value_bytes`).
    pub max_value_bytes: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_value_bytes: 256,
        }
    }
}

/// Why a request body could not be decoded. All are permanent: the same bytes fail again
/// (gRPC `INVALID_ARGUMENT`, HTTP 400). Byte offsets count from the start of the body.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The input ends inside a field.
    #[error("truncated protobuf: {what} at byte {at} runs past the end of its message")]
    Truncated {
        /// what was being read
        what: &'static str,
        /// offset where it starts
        at: usize,
    },
    /// A varint longer than 10 bytes or overflowing 64 bits.
    #[error("invalid protobuf varint at byte {at}")]
    BadVarint {
        /// offset of the varint
        at: usize,
    },
    /// A field key that is not valid protobuf (field number 0, over 32 bits, or wire type
    /// 6 or 7).
    #[error("invalid protobuf field key {key} at byte {at}")]
    BadKey {
        /// the key value
        key: u64,
        /// offset of the key
        at: usize,
    },
    /// A known field encoded with another wire type than its declared one.
    #[error(
        "protobuf field {msg}.{field} at byte {at} has wire type {wire_type}, expected {expected}"
    )]
    WrongWireType {
        /// message name
        msg: &'static str,
        /// field number
        field: u32,
        /// wire type found
        wire_type: u8,
        /// wire type the schema declares
        expected: u8,
        /// offset of the field key
        at: usize,
    },
    /// A length prefix larger than what remains of its enclosing message.
    #[error(
        "protobuf length {len} at byte {at} exceeds the {remaining} bytes left in its message"
    )]
    LengthOverflow {
        /// the declared length
        len: u64,
        /// bytes left in the enclosing message
        remaining: usize,
        /// offset of the length prefix
        at: usize,
    },
    /// A string field that is not valid UTF-8.
    #[error("invalid UTF-8 in {field} at byte {at}")]
    InvalidUtf8 {
        /// which field (e.g. "span name", "attribute key")
        field: &'static str,
        /// offset of the string
        at: usize,
    },
    /// An end-group tag without a matching start-group tag.
    #[error("unexpected protobuf end-group tag for field {field} at byte {at}")]
    UnexpectedEndGroup {
        /// field number of the end-group tag
        field: u32,
        /// offset of the tag
        at: usize,
    },
    /// Groups nested deeper than [`MAX_GROUP_DEPTH`].
    #[error("protobuf groups nested deeper than {MAX_GROUP_DEPTH} at byte {at}")]
    TooDeep {
        /// offset of the group that is one too deep
        at: usize,
    },
    /// Attribute values (arrays, kvlists) nested deeper than [`MAX_VALUE_DEPTH`].
    #[error("attribute values nested deeper than {MAX_VALUE_DEPTH} levels at byte {at}")]
    ValueTooDeep {
        /// offset of the value that is one too deep
        at: usize,
    },
    /// A body too large to address with 32-bit offsets.
    #[error("request body of {len} bytes is over the 4 GiB a batch can address")]
    TooLarge {
        /// body length
        len: usize,
    },
    /// OTLP/JSON that does not parse or does not follow the OTLP JSON mapping.
    #[error("invalid OTLP/JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The deepest nesting of (unknown, skipped) protobuf groups accepted; protobuf decoders
/// such as prost refuse more than 100 levels of nesting, so nothing they accept is refused.
pub const MAX_GROUP_DEPTH: usize = 100;

/// The deepest nesting of `AnyValue`s accepted in any attribute of a trace request
/// (resource, scope, span, event, link): a value is level 1, each array or kvlist around
/// it one more. 16 levels of kvlists inside an event attribute are 51 levels of protobuf
/// messages, well inside the 100 that prost (the span archive's decoder) and most
/// protobuf decoders allow, so whatever this reader accepts the next hop can decode.
pub const MAX_VALUE_DEPTH: usize = 16;

/// Decodes an `ExportTraceServiceRequest` (or `TracesData`: same wire form) into a batch
/// whose [`Str`]s point into `buf`. See the module docs for what is extracted and checked.
pub fn decode_traces(buf: Bytes, opts: &DecodeOptions) -> Result<TraceBatch, DecodeError> {
    addressable(buf.len())?;
    let mut d = Decoder {
        w: Wire { buf: &buf },
        max: opts.max_value_bytes,
        resources: Vec::new(),
        // A typical span encodes to 200-1000 bytes; an estimate is enough, the vector grows.
        spans: Vec::with_capacity(buf.len() / 256 + 1),
        ext: Vec::new(),
    };
    let mut c = Cur::new(&buf, 0, buf.len());
    while c.more() {
        let (field, wt, at) = d.w.key(&mut c)?;
        match field {
            1 => {
                expect(wt, LEN, "ExportTraceServiceRequest", field, at)?;
                let (s, e) = d.w.len_range(&mut c)?;
                d.resource_spans(s, e)?;
            }
            _ => d.w.skip(&mut c, field, wt, at)?,
        }
    }
    let Decoder {
        resources,
        spans,
        ext,
        ..
    } = d;
    Ok(TraceBatch {
        buf,
        resources,
        spans,
        ext,
    })
}

/// Batches address their buffer with `u32` offsets ([`Str`]).
fn addressable(len: usize) -> Result<(), DecodeError> {
    if len > u32::MAX as usize {
        return Err(DecodeError::TooLarge { len });
    }
    Ok(())
}

/// What [`Decoder::span`] keeps of a span while reading its fields.
struct SpanFields {
    attrs: Attrs,
    name: Str,
    kind: i32,
    code: i32,
    start: u64,
    end: u64,
}

struct Decoder<'a> {
    w: Wire<'a>,
    max: usize,
    resources: Vec<ResourceRec>,
    spans: Vec<SpanRec>,
    ext: Vec<Ext>,
}

impl Decoder<'_> {
    fn resource_spans(&mut self, s: usize, e: usize) -> Result<(), DecodeError> {
        let first = self.spans.len();
        let mut attrs = Attrs::NEW;
        let mut c = Cur::new(self.w.buf, s, e);
        while c.more() {
            let (field, wt, at) = self.w.key(&mut c)?;
            match field {
                // A singular message field seen twice merges: attributes concatenate.
                1 => {
                    expect(wt, LEN, "ResourceSpans", field, at)?;
                    let (s, e) = self.w.len_range(&mut c)?;
                    self.resource(s, e, &mut attrs)?;
                }
                2 => {
                    expect(wt, LEN, "ResourceSpans", field, at)?;
                    let (s, e) = self.w.len_range(&mut c)?;
                    self.scope_spans(s, e)?;
                }
                _ => self.w.skip(&mut c, field, wt, at)?,
            }
        }
        let count = self.spans.len() - first;
        if count > 0 {
            let (buf, max) = (self.w.buf, self.max);
            self.resources.push(ResourceRec {
                service: cut(buf, attrs.service, max),
                namespace: cut(buf, attrs.namespace, max),
                environment: cut(buf, attrs.environment(), max),
                version: cut(buf, attrs.version, max),
                ext: attrs.ext(buf, max, false),
                first_span: first as u32,
                span_count: count as u32,
            });
        }
        Ok(())
    }

    fn resource(&mut self, s: usize, e: usize, attrs: &mut Attrs) -> Result<(), DecodeError> {
        let mut c = Cur::new(self.w.buf, s, e);
        while c.more() {
            let (field, wt, at) = self.w.key(&mut c)?;
            match field {
                1 => {
                    expect(wt, LEN, "Resource", field, at)?;
                    let (s, e) = self.w.len_range(&mut c)?;
                    self.key_value(s, e, attrs, true)?;
                }
                _ => self.w.skip(&mut c, field, wt, at)?,
            }
        }
        Ok(())
    }

    fn scope_spans(&mut self, s: usize, e: usize) -> Result<(), DecodeError> {
        let mut c = Cur::new(self.w.buf, s, e);
        while c.more() {
            let (tag, field, wt, at) = self.w.tag(&mut c)?;
            match tag {
                0x12 => {
                    let (s, e) = self.w.len_range(&mut c)?;
                    self.span(s, e)?;
                }
                // the scope: only the nesting of its attributes (field 3) is checked
                0x0a => {
                    let (s, e) = self.w.len_range(&mut c)?;
                    self.attrs_depth(s, e, 3)?;
                }
                _ => self
                    .w
                    .other(&mut c, "ScopeSpans", &[(2, LEN)], field, wt, at)?,
            }
        }
        Ok(())
    }

    fn span(&mut self, s: usize, e: usize) -> Result<(), DecodeError> {
        let mut f = SpanFields {
            attrs: Attrs::NEW,
            name: Str::EMPTY,
            kind: 0,
            code: 0,
            start: 0,
            end: 0,
        };
        let mut c = Cur::new(self.w.buf, s, e);
        while c.more() {
            // The usual one-byte keys dispatch straight on the byte, each arm with its key
            // as a constant; any other key is read in full first.
            let at = c.pos;
            macro_rules! known {
                ($t:literal) => {{
                    c.pos += 1;
                    self.span_field(&mut f, &mut c, $t, $t >> 3, $t & 7, at)?
                }};
            }
            match c.peek() {
                0x0a => known!(0x0a),
                0x12 => known!(0x12),
                0x2a => known!(0x2a),
                0x30 => known!(0x30),
                0x39 => known!(0x39),
                0x41 => known!(0x41),
                0x4a => known!(0x4a),
                _ => {
                    let (tag, field, wt, at) = self.w.tag(&mut c)?;
                    self.span_field(&mut f, &mut c, tag, field, wt, at)?
                }
            }
        }
        let SpanFields {
            attrs,
            name,
            kind,
            code,
            start,
            end,
        } = f;
        let ext = if attrs.rare {
            let idx = self.ext.len() as u32;
            self.ext.push(attrs.ext(self.w.buf, self.max, true));
            idx
        } else {
            u32::MAX
        };
        self.spans.push(SpanRec {
            start_ns: start,
            end_ns: end,
            name: cut(self.w.buf, name, self.max),
            route: cut(self.w.buf, attrs.route, self.max),
            raw: str_of(s, e),
            ext,
            http_status: if attrs.http != 0 {
                attrs.http
            } else {
                attrs.http_legacy
            },
            flags: attrs.flags,
            kind: kind_of(kind),
            status: status_of(code),
            grpc_status: attrs.grpc,
            rpc_code: attrs.rpc,
        });
        Ok(())
    }

    /// One field of a `Span`, by its one-byte key (`Wire::tag`).
    #[inline(always)]
    fn span_field(
        &self,
        f: &mut SpanFields,
        c: &mut Cur,
        tag: u8,
        field: u32,
        wt: u8,
        at: usize,
    ) -> Result<(), DecodeError> {
        // The fields read, with their declared wire types; the tags below are these.
        const SPAN: &[(u32, u8)] = &[
            (5, LEN),
            (6, VARINT),
            (7, I64),
            (8, I64),
            (9, LEN),
            (15, LEN),
        ];
        match tag {
            // trace_id, span_id, parent_span_id: skipped (the usual skip of a LEN field)
            0x0a | 0x12 | 0x22 => {
                self.w.len_range(c)?;
            }
            0x2a => {
                let (s, e) = self.w.len_range(c)?;
                self.w.utf8(s, e, "span name")?;
                f.name = str_of(s, e);
            }
            // int32 on the wire: truncation is the protobuf rule.
            0x30 => f.kind = self.w.varint(c)? as i32,
            0x39 => f.start = self.w.fixed64(c)?,
            0x41 => f.end = self.w.fixed64(c)?,
            0x4a => {
                let (s, e) = self.w.len_range(c)?;
                self.key_value(s, e, &mut f.attrs, false)?;
            }
            0x7a => {
                let (s, e) = self.w.len_range(c)?;
                self.status(s, e, &mut f.code)?;
            }
            // events (attributes in field 3) and links (field 4): only the nesting of
            // their attribute values is checked
            0x5a | 0x6a => {
                let (s, e) = self.w.len_range(c)?;
                self.attrs_depth(s, e, if tag == 0x5a { 3 } else { 4 })?;
            }
            _ => self.w.other(c, "Span", SPAN, field, wt, at)?,
        }
        Ok(())
    }

    /// `Status`; a span may carry several, which merge (the last code wins).
    fn status(&self, s: usize, e: usize, code: &mut i32) -> Result<(), DecodeError> {
        let mut c = Cur::new(self.w.buf, s, e);
        while c.more() {
            let (field, wt, at) = self.w.key(&mut c)?;
            match field {
                2 => {
                    expect(wt, LEN, "Status", field, at)?;
                    let (s, e) = self.w.len_range(&mut c)?;
                    self.w.utf8(s, e, "status message")?;
                }
                3 => {
                    expect(wt, VARINT, "Status", field, at)?;
                    *code = self.w.varint(&mut c)? as i32;
                }
                _ => self.w.skip(&mut c, field, wt, at)?,
            }
        }
        Ok(())
    }

    /// One `KeyValue`. The value is looked at only when the key is one the decoder
    /// extracts, or when `all_values` (resource attributes: every string value validated).
    ///
    /// The usual layout (`key` then `value`, each with a one-byte length, the value a
    /// lone `string_value` or `int_value`) is read inline; anything else goes to
    /// [`Self::key_value_general`]. Both check and report the same things in the same
    /// order; a key the decoder extracts (but a `cicd.pipeline.task.*` one) equals an
    /// ASCII literal, so it is valid UTF-8 without a check.
    #[inline(always)]
    fn key_value(
        &self,
        s: usize,
        e: usize,
        attrs: &mut Attrs,
        all_values: bool,
    ) -> Result<(), DecodeError> {
        let Some((bytes, key, value)) = self.w.canonical_pair(s, e) else {
            return self.key_value_general(s, e, attrs, all_values);
        };
        let k = classify(bytes);
        // Every key but those two is exactly an ASCII literal: valid UTF-8 already.
        if k == Key::Other || k == Key::Task {
            self.w.utf8(key.0, key.1, "attribute key")?;
            if k == Key::Other && !all_values {
                // not extracted: a string or an int needs no look; anything else, only
                // its nesting
                if self.w.canonical_any(value.0, value.1).is_none() {
                    self.any_depth(value.0, value.1, 1)?;
                }
                return Ok(());
            }
        }
        let v = match self.w.canonical_any(value.0, value.1) {
            Some(v) => v,
            None => {
                let mut v = Val::None;
                self.any_value(value.0, value.1, &mut v)?;
                v
            }
        };
        if let Val::Str(s, e) = v {
            self.w.utf8(s, e, "attribute value")?;
        }
        attrs.apply(self.w.buf, k, v);
        Ok(())
    }

    /// [`Self::key_value`] for any layout.
    #[inline(never)]
    fn key_value_general(
        &self,
        s: usize,
        e: usize,
        attrs: &mut Attrs,
        all_values: bool,
    ) -> Result<(), DecodeError> {
        let (mut key, mut value, mut values) = ((s, s), (s, s), 0u32);
        let mut c = Cur::new(self.w.buf, s, e);
        while c.more() {
            let (field, wt, at) = self.w.key(&mut c)?;
            match field {
                1 => {
                    expect(wt, LEN, "KeyValue", field, at)?;
                    key = self.w.len_range(&mut c)?;
                    self.w.utf8(key.0, key.1, "attribute key")?;
                }
                2 => {
                    expect(wt, LEN, "KeyValue", field, at)?;
                    let r = self.w.len_range(&mut c)?;
                    if values == 0 {
                        value = r;
                    }
                    values += 1;
                }
                _ => self.w.skip(&mut c, field, wt, at)?,
            }
        }
        let k = classify(self.w.buf.get(key.0..key.1).unwrap_or(b""));
        if k == Key::Other && !all_values {
            return self.kv_depth(s, e, 1);
        }
        let mut v = Val::None;
        if values == 1 {
            self.any_value(value.0, value.1, &mut v)?;
        } else if values > 1 {
            // Several `value` fields merge, like any singular message: fold them in order.
            let mut c = Cur::new(self.w.buf, s, e);
            while c.more() {
                let (field, wt, at) = self.w.key(&mut c)?;
                let (s, e) = match (field, wt) {
                    (2, LEN) => self.w.len_range(&mut c)?,
                    _ => {
                        self.w.skip(&mut c, field, wt, at)?;
                        continue;
                    }
                };
                self.any_value(s, e, &mut v)?;
            }
        }
        if let Val::Str(s, e) = v {
            self.w.utf8(s, e, "attribute value")?;
        }
        attrs.apply(self.w.buf, k, v);
        Ok(())
    }

    /// Folds one `AnyValue` into `v`: the last field of its oneof wins.
    fn any_value(&self, s: usize, e: usize, v: &mut Val) -> Result<(), DecodeError> {
        let mut c = Cur::new(self.w.buf, s, e);
        while c.more() {
            let (field, wt, at) = self.w.key(&mut c)?;
            match field {
                1 => {
                    expect(wt, LEN, "AnyValue", field, at)?;
                    let (s, e) = self.w.len_range(&mut c)?;
                    *v = Val::Str(s, e);
                }
                3 => {
                    expect(wt, VARINT, "AnyValue", field, at)?;
                    *v = Val::Int(self.w.varint(&mut c)? as i64);
                }
                2 | 8 => {
                    expect(wt, VARINT, "AnyValue", field, at)?;
                    self.w.varint(&mut c)?;
                    *v = Val::Other;
                }
                4 => {
                    expect(wt, I64, "AnyValue", field, at)?;
                    self.w.fixed64(&mut c)?;
                    *v = Val::Other;
                }
                5..=7 => {
                    expect(wt, LEN, "AnyValue", field, at)?;
                    let (s, e) = self.w.len_range(&mut c)?;
                    if field != 7 {
                        self.list_depth(field, s, e, 1)?;
                    }
                    *v = Val::Other;
                }
                _ => self.w.skip(&mut c, field, wt, at)?,
            }
        }
        Ok(())
    }
}

/// The nesting check of attribute values the reader does not otherwise read. Recursive,
/// but never deeper than [`MAX_VALUE_DEPTH`] levels of values (three calls each): a
/// hostile nesting is refused long before the stack could matter. Fields other than the
/// nesting ones are skipped as everywhere else.
impl Decoder<'_> {
    /// The `KeyValue` attributes (field `attrs`) of an event, link or scope at `[s, e)`.
    fn attrs_depth(&self, s: usize, e: usize, attrs: u32) -> Result<(), DecodeError> {
        let mut c = Cur::new(self.w.buf, s, e);
        while c.more() {
            let (field, wt, at) = self.w.key(&mut c)?;
            if field == attrs && wt == LEN {
                let (s, e) = self.w.len_range(&mut c)?;
                self.kv_depth(s, e, 1)?;
            } else {
                self.w.skip(&mut c, field, wt, at)?;
            }
        }
        Ok(())
    }

    /// A `KeyValue` whose value (field 2) is at `depth`.
    fn kv_depth(&self, s: usize, e: usize, depth: usize) -> Result<(), DecodeError> {
        let mut c = Cur::new(self.w.buf, s, e);
        while c.more() {
            let (field, wt, at) = self.w.key(&mut c)?;
            if field == 2 && wt == LEN {
                let (s, e) = self.w.len_range(&mut c)?;
                self.any_depth(s, e, depth)?;
            } else {
                self.w.skip(&mut c, field, wt, at)?;
            }
        }
        Ok(())
    }

    /// An `AnyValue` at `depth`.
    fn any_depth(&self, s: usize, e: usize, depth: usize) -> Result<(), DecodeError> {
        if depth > MAX_VALUE_DEPTH {
            return Err(DecodeError::ValueTooDeep { at: s });
        }
        let mut c = Cur::new(self.w.buf, s, e);
        while c.more() {
            let (field, wt, at) = self.w.key(&mut c)?;
            if (field == 5 || field == 6) && wt == LEN {
                let (s, e) = self.w.len_range(&mut c)?;
                self.list_depth(field, s, e, depth)?;
            } else {
                self.w.skip(&mut c, field, wt, at)?;
            }
        }
        Ok(())
    }

    /// The items (field 1) of an `ArrayValue` (`kind` 5: values) or `KeyValueList` (6:
    /// key-values) held by an `AnyValue` at `depth`.
    fn list_depth(&self, kind: u32, s: usize, e: usize, depth: usize) -> Result<(), DecodeError> {
        let mut c = Cur::new(self.w.buf, s, e);
        while c.more() {
            let (field, wt, at) = self.w.key(&mut c)?;
            if field == 1 && wt == LEN {
                let (s, e) = self.w.len_range(&mut c)?;
                if kind == 5 {
                    self.any_depth(s, e, depth + 1)?;
                } else {
                    self.kv_depth(s, e, depth + 1)?;
                }
            } else {
                self.w.skip(&mut c, field, wt, at)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
