//! The decoded form of an OTLP trace request that the receiver hands to the shards.
//!
//! Nothing here owns a string: every text field is a [`Str`], a byte range into the
//! request buffer (`Bytes`, reference counted), so decoding a span allocates nothing and
//! copies no string. A [`TraceBatch`] holds the buffer plus flat vectors of records;
//! resources own a contiguous range of spans.

use bytes::Bytes;

/// A byte range `[off, off+len)` into a batch buffer. `len == 0` means absent or empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Str {
    /// Offset from the start of the buffer.
    pub off: u32,
    /// Length in bytes.
    pub len: u32,
}

impl Str {
    /// The empty / absent string.
    pub const EMPTY: Str = Str { off: 0, len: 0 };

    /// Whether the range is empty (absent attributes are empty too).
    #[inline]
    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// The bytes of this range in `buf`. Ranges are produced by the decoder over the same
    /// buffer, so they are always in bounds; an out-of-range `Str` yields `b""`.
    #[inline]
    pub fn bytes(self, buf: &[u8]) -> &[u8] {
        buf.get(self.off as usize..(self.off as usize + self.len as usize))
            .unwrap_or(b"")
    }

    /// The text of this range. The decoder validated it as UTF-8; anything else yields "".
    #[inline]
    pub fn as_str(self, buf: &[u8]) -> &str {
        std::str::from_utf8(self.bytes(buf)).unwrap_or("")
    }
}

/// OTLP `Span.SpanKind`.
pub mod kind {
    /// SPAN_KIND_UNSPECIFIED
    pub const UNSPECIFIED: u8 = 0;
    /// SPAN_KIND_INTERNAL
    pub const INTERNAL: u8 = 1;
    /// SPAN_KIND_SERVER
    pub const SERVER: u8 = 2;
    /// SPAN_KIND_CLIENT
    pub const CLIENT: u8 = 3;
    /// SPAN_KIND_PRODUCER
    pub const PRODUCER: u8 = 4;
    /// SPAN_KIND_CONSUMER
    pub const CONSUMER: u8 = 5;
}

/// OTLP `Status.StatusCode`.
pub mod status {
    /// STATUS_CODE_UNSET
    pub const UNSET: u8 = 0;
    /// STATUS_CODE_OK
    pub const OK: u8 = 1;
    /// STATUS_CODE_ERROR
    pub const ERROR: u8 = 2;
}

/// `rpc.status_code` string values (and "absent"), pre-parsed by the decoder so the
/// classifier compares a byte, not a string.
pub mod rpc_code {
    /// attribute absent
    pub const ABSENT: u8 = 0;
    /// a value that is not one of the server-error codes below
    pub const OTHER: u8 = 1;
    /// UNKNOWN
    pub const UNKNOWN: u8 = 2;
    /// DEADLINE_EXCEEDED
    pub const DEADLINE_EXCEEDED: u8 = 3;
    /// UNIMPLEMENTED
    pub const UNIMPLEMENTED: u8 = 4;
    /// INTERNAL
    pub const INTERNAL: u8 = 5;
    /// UNAVAILABLE
    pub const UNAVAILABLE: u8 = 6;
    /// DATA_LOSS
    pub const DATA_LOSS: u8 = 7;
}

/// Flag bits of [`SpanRec::flags`] and [`Ext::flags`].
pub mod flags {
    /// `cicd.pipeline.name` present
    pub const CICD_PIPELINE: u16 = 1 << 0;
    /// some `cicd.pipeline.task.*` attribute present
    pub const CICD_TASK: u16 = 1 << 1;
    /// `cicd.pipeline.result` present
    pub const CICD_RESULT: u16 = 1 << 2;
    /// `deployment.id` or `deployment.status` present
    pub const DEPLOYMENT: u16 = 1 << 3;
    /// `error.type` present
    pub const ERROR_TYPE: u16 = 1 << 4;
    /// the record carries its own `service.name` attribute
    pub const RECORD_SERVICE: u16 = 1 << 5;
    /// set by the router: the span's deployment record names another pair and was sent
    /// to that pair's shard, so the resource's shard leaves it out
    pub const ROUTED: u16 = 1 << 6;
    /// set by the receiver: the span ends before it starts or too far in the future
    pub const INVALID: u16 = 1 << 15;
}

/// The rarely present attributes, stored once per resource and, for a span, only when
/// the span carries at least one of them (`SpanRec::ext`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ext {
    /// [`flags`] bits
    pub flags: u16,
    /// cicd.pipeline.name
    pub pipeline_name: Str,
    /// cicd.pipeline.result
    pub pipeline_result: Str,
    /// cicd.pipeline.run.id (string, or an int rendered by the decoder is not possible
    /// without allocation: int ids are kept as [`Ext::run_id_int`])
    pub run_id: Str,
    /// cicd.pipeline.run.id when it was an int value
    pub run_id_int: Option<i64>,
    /// vcs.ref.head.revision
    pub revision: Str,
    /// deployment.id
    pub deployment_id: Str,
    /// deployment.status
    pub deployment_status: Str,
    /// record-level service.name
    pub service: Str,
    /// record-level service.namespace
    pub namespace: Str,
    /// record-level deployment.environment.name (fallback deployment.environment)
    pub environment: Str,
    /// record-level service.version
    pub version: Str,
}

/// One span, reduced to what the shards need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpanRec {
    /// start_time_unix_nano
    pub start_ns: u64,
    /// end_time_unix_nano
    pub end_ns: u64,
    /// span name
    pub name: Str,
    /// http.route (string attribute)
    pub route: Str,
    /// the whole encoded `Span` message (for the raw-span archive)
    pub raw: Str,
    /// index into [`TraceBatch::ext`], or `u32::MAX` when the span has no rare attribute
    pub ext: u32,
    /// http.response.status_code, else http.status_code (int or numeric string); 0 absent
    pub http_status: u16,
    /// [`flags`] bits (same meaning as in [`Ext`])
    pub flags: u16,
    /// [`kind`]
    pub kind: u8,
    /// [`status`]
    pub status: u8,
    /// rpc.grpc.status_code (int); 255 when absent
    pub grpc_status: u8,
    /// [`rpc_code`]
    pub rpc_code: u8,
}

/// The identity of one `ResourceSpans` plus the range of its spans in the batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceRec {
    /// service.name (empty when absent)
    pub service: Str,
    /// service.namespace
    pub namespace: Str,
    /// deployment.environment.name, else deployment.environment
    pub environment: Str,
    /// service.version
    pub version: Str,
    /// the rare attributes as found on the resource
    pub ext: Ext,
    /// first span index (into [`TraceBatch::spans`])
    pub first_span: u32,
    /// number of spans
    pub span_count: u32,
}

/// A decoded trace request (or the part of one routed to a shard).
#[derive(Clone, Debug, Default)]
pub struct TraceBatch {
    /// The decompressed request bytes every [`Str`] points into.
    pub buf: Bytes,
    /// One entry per `ResourceSpans` (with spans).
    pub resources: Vec<ResourceRec>,
    /// All spans, grouped by resource in order.
    pub spans: Vec<SpanRec>,
    /// Rare-attribute records referenced by `SpanRec::ext`.
    pub ext: Vec<Ext>,
}

impl TraceBatch {
    /// Number of spans in the batch.
    pub fn span_count(&self) -> usize {
        self.spans.len()
    }

    /// The spans of resource `r`.
    pub fn spans_of(&self, r: &ResourceRec) -> &[SpanRec] {
        let a = r.first_span as usize;
        self.spans.get(a..a + r.span_count as usize).unwrap_or(&[])
    }

    /// The rare attributes of a span, if it has any.
    pub fn ext_of(&self, s: &SpanRec) -> Option<&Ext> {
        self.ext.get(s.ext as usize)
    }
}
