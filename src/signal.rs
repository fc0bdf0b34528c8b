//! The OTLP vocabulary every layer shares: the three signals with their gRPC and HTTP
//! paths, the transports, and why a request is refused. This module imports nothing from
//! the rest of the crate.

use std::sync::atomic::AtomicU64;

/// An OTLP signal: what a request body carries, and what `exporters.otlp.forward` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// `ExportTraceServiceRequest` (`/v1/traces`)
    Traces,
    /// `ExportMetricsServiceRequest` (`/v1/metrics`)
    Metrics,
    /// `ExportLogsServiceRequest` (`/v1/logs`)
    Logs,
}

/// The gRPC method path of trace export.
pub const TRACES_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// The gRPC method path of metrics export.
pub const METRICS_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
/// The gRPC method path of logs export.
pub const LOGS_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

impl Signal {
    /// Every signal, in [`Signal::index`] order.
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// A dense index (0, 1, 2) for per-signal arrays; also the signal's byte in the
    /// forward queue's disk segments, so the order must not change.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The signal of an index; None beyond the three.
    pub fn from_index(i: usize) -> Option<Signal> {
        Signal::ALL.get(i).copied()
    }

    /// The config and label name: `traces`, `metrics`, `logs`.
    pub const fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// The OTLP/gRPC method path.
    pub const fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => TRACES_PATH,
            Signal::Metrics => METRICS_PATH,
            Signal::Logs => LOGS_PATH,
        }
    }

    /// The OTLP/HTTP path.
    pub const fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
            Signal::Logs => "/v1/logs",
        }
    }
}

/// Transport label of `momentum_receiver_accepted_spans_total{transport}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC
    Grpc,
    /// OTLP/HTTP
    Http,
}

/// Why a request was refused, with the label value of
/// `momentum_receiver_refused_spans_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// the body does not decode
    Decode,
    /// wire or decompressed size over the limit
    TooLarge,
    /// unsupported Content-Type
    UnsupportedMediaType,
    /// a shard queue is full
    Backpressure,
    /// over the memory limit
    MemoryLimit,
    /// missing or wrong bearer token
    Unauthenticated,
}

impl Reason {
    /// How many reasons there are: the length of per-reason arrays.
    pub const COUNT: usize = 6;
    /// Every reason, in label order ([`Reason::index`]).
    pub const ALL: [Reason; Reason::COUNT] = [
        Reason::Decode,
        Reason::TooLarge,
        Reason::UnsupportedMediaType,
        Reason::Backpressure,
        Reason::MemoryLimit,
        Reason::Unauthenticated,
    ];

    /// The index of per-reason arrays. The match is exhaustive, so a new reason must be
    /// given its own slot here (and in `COUNT` and `ALL`, which a const check and a test
    /// hold to this order) before it compiles: it cannot be counted as another.
    pub const fn index(self) -> usize {
        match self {
            Reason::Decode => 0,
            Reason::TooLarge => 1,
            Reason::UnsupportedMediaType => 2,
            Reason::Backpressure => 3,
            Reason::MemoryLimit => 4,
            Reason::Unauthenticated => 5,
        }
    }

    /// The label value.
    pub const fn label(self) -> &'static str {
        match self {
            Reason::Decode => "decode",
            Reason::TooLarge => "too_large",
            Reason::UnsupportedMediaType => "unsupported_media_type",
            Reason::Backpressure => "backpressure",
            Reason::MemoryLimit => "memory_limit",
            Reason::Unauthenticated => "unauthenticated",
        }
    }

    /// Whether the client should retry (the OTLP retryable answers).
    pub const fn retryable(self) -> bool {
        matches!(self, Reason::Backpressure | Reason::MemoryLimit)
    }
}

// `ALL` lists every slot once, in index order.
const _: () = {
    let mut i = 0;
    while i < Reason::COUNT {
        assert!(Reason::ALL[i].index() == i);
        i += 1;
    }
};

/// Per-reason refusal counters (spans and requests), indexed by [`Reason::index`].
#[derive(Debug, Default)]
pub struct RefusalCounters {
    /// spans refused, by reason
    pub spans: [AtomicU64; Reason::COUNT],
    /// requests refused, by reason
    pub requests: [AtomicU64; Reason::COUNT],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_dense_and_in_order() {
        for (i, s) in Signal::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
            assert_eq!(Signal::from_index(i), Some(*s));
        }
        assert_eq!(Signal::from_index(3), None);
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
        let labels: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Reason::COUNT);
    }
}
