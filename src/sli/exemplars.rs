//! Exemplars of a per-operation series, for debugging: the trace ids of its slowest
//! requests (the slowest of each of the last five minutes of event time) and of its latest
//! errors. The API lists them per operation; `/metrics` in OpenMetrics attaches the latest
//! error to the errors counters (`# {trace_id="…"} 1 <time>`).
//!
//! Per span this is a compare against the slot of the span's minute; the trace id is read
//! from the span's bytes only when the span is kept (slower than its minute's slowest so
//! far, or an error).

/// Minutes of slowest requests kept (one a minute).
pub const MINUTES: u64 = 5;
/// Latest errors kept.
pub const ERRORS: usize = 3;
const MIN: u64 = 60_000_000_000;

use smallvec::SmallVec;

/// One request kept as an exemplar.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exemplar {
    /// the trace it belongs to
    pub trace_id: [u8; 16],
    /// its end (event time, Unix ns); 0 = none
    pub end_ns: u64,
    /// its latency
    pub latency_ns: u64,
}

impl Exemplar {
    /// The trace id as 32 lowercase hex digits (as W3C trace context writes it).
    pub fn trace_hex(&self) -> String {
        use std::fmt::Write;
        let mut s = String::with_capacity(32);
        for b in self.trace_id {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

/// The exemplars of one series.
#[derive(Clone, Debug, Default)]
pub struct Exemplars {
    /// the slowest request of each minute, indexed by minute % MINUTES
    slowest: [Exemplar; MINUTES as usize],
    /// the latest errors, a ring
    errors: [Exemplar; ERRORS],
    next_error: u8,
}

/// What a view shows of a series' exemplars at its clock (inline: a view is built for
/// every series twice a second).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExemplarsView {
    /// up to 3 of the minutes' slowest requests within the last 5 minutes, slowest first
    pub slowest: SmallVec<[Exemplar; 3]>,
    /// the latest errors within the last 5 minutes, newest first
    pub errors: SmallVec<[Exemplar; ERRORS]>,
}

impl Exemplars {
    /// Offers a request ending at `end_ns` (its Span message in `raw`).
    #[inline]
    pub fn offer(&mut self, end_ns: u64, latency_ns: u64, error: bool, raw: &[u8]) {
        let minute = end_ns / MIN;
        let slot = &mut self.slowest[(minute % MINUTES) as usize];
        let slot_minute = slot.end_ns / MIN;
        let keep = slot.end_ns == 0
            || minute > slot_minute
            || (minute == slot_minute && latency_ns > slot.latency_ns);
        if !keep && !error {
            return;
        }
        let Some(trace_id) = trace_id(raw) else {
            return;
        };
        let e = Exemplar {
            trace_id,
            end_ns,
            latency_ns,
        };
        if keep {
            *slot = e;
        }
        if error {
            self.errors[self.next_error as usize] = e;
            self.next_error = ((self.next_error as usize + 1) % ERRORS) as u8;
        }
    }

    /// The exemplars of the 5 minutes up to `clock_ns`.
    pub fn view(&self, clock_ns: u64) -> ExemplarsView {
        let recent = |e: &&Exemplar| e.end_ns != 0 && e.end_ns + MINUTES * MIN > clock_ns;
        let mut slowest: SmallVec<[Exemplar; MINUTES as usize]> =
            self.slowest.iter().filter(recent).copied().collect();
        slowest.sort_by(|a, b| {
            b.latency_ns
                .cmp(&a.latency_ns)
                .then(b.end_ns.cmp(&a.end_ns))
        });
        let mut errors: SmallVec<[Exemplar; ERRORS]> =
            self.errors.iter().filter(recent).copied().collect();
        errors.sort_by_key(|e| std::cmp::Reverse(e.end_ns));
        ExemplarsView {
            slowest: slowest.into_iter().take(3).collect(),
            errors,
        }
    }
}

/// The `trace_id` (field 1, 16 bytes) of an encoded Span message; None when it is absent
/// or not 16 bytes long (an invalid id is no exemplar).
pub fn trace_id(raw: &[u8]) -> Option<[u8; 16]> {
    let mut i = 0usize;
    while i < raw.len() {
        let (key, n) = varint(&raw[i..])?;
        i += n;
        match (key >> 3, key & 7) {
            (1, 2) => {
                let (len, n) = varint(&raw[i..])?;
                i += n;
                let id: [u8; 16] = raw.get(i..i + len as usize)?.try_into().ok()?;
                return (id != [0; 16]).then_some(id);
            }
            (_, 0) => i += varint(&raw[i..])?.1,
            (_, 1) => i += 8,
            (_, 2) => {
                let (len, n) = varint(&raw[i..])?;
                i += n + len as usize;
            }
            (_, 5) => i += 4,
            _ => return None,
        }
    }
    None
}

fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &x) in b.iter().enumerate().take(10) {
        v |= u64::from(x & 0x7f) << (7 * i);
        if x & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;

    fn raw(id: u8, name_first: bool) -> Vec<u8> {
        let s = Span {
            trace_id: vec![id; 16],
            span_id: vec![1; 8],
            name: "GET /".into(),
            start_time_unix_nano: 5,
            ..Default::default()
        };
        let mut b = s.encode_to_vec();
        if name_first {
            // the same fields in another order: the name (field 5) before the trace id
            let mut other = Span {
                name: "GET /".into(),
                ..Default::default()
            }
            .encode_to_vec();
            other.extend(
                Span {
                    trace_id: vec![id; 16],
                    ..Default::default()
                }
                .encode_to_vec(),
            );
            b = other;
        }
        b
    }

    #[test]
    fn the_trace_id_is_read_wherever_it_is_in_the_span() {
        assert_eq!(trace_id(&raw(7, false)), Some([7; 16]));
        assert_eq!(trace_id(&raw(9, true)), Some([9; 16]));
        assert_eq!(trace_id(&raw(0, false)), None, "all zero: invalid");
        assert_eq!(trace_id(&[]), None);
        assert_eq!(trace_id(&[0x0a, 0x10, 1, 2]), None, "truncated");
        assert_eq!(
            Exemplar {
                trace_id: [0xab; 16],
                ..Default::default()
            }
            .trace_hex(),
            "ab".repeat(16)
        );
    }

    #[test]
    fn the_slowest_of_each_minute_and_the_latest_errors_of_the_last_five_minutes() {
        let mut e = Exemplars::default();
        let t0 = 1_000 * MIN;
        // minute 0: 10 ms, 30 ms (kept), 20 ms
        e.offer(t0 + 1, 10_000_000, false, &raw(1, false));
        e.offer(t0 + 2, 30_000_000, false, &raw(2, false));
        e.offer(t0 + 3, 20_000_000, false, &raw(3, false));
        // minutes 1..=3: 5, 50, 40 ms
        e.offer(t0 + MIN, 5_000_000, false, &raw(4, false));
        e.offer(t0 + 2 * MIN, 50_000_000, true, &raw(5, false));
        e.offer(t0 + 3 * MIN, 40_000_000, true, &raw(6, false));
        let v = e.view(t0 + 3 * MIN + 1);
        let ids: Vec<u8> = v.slowest.iter().map(|x| x.trace_id[0]).collect();
        assert_eq!(ids, [5, 6, 2], "slowest first, three of them");
        let errs: Vec<u8> = v.errors.iter().map(|x| x.trace_id[0]).collect();
        assert_eq!(errs, [6, 5], "newest first");
        // five minutes on, minute 0 has aged out and minute 5 reuses its slot
        e.offer(t0 + 5 * MIN, 1_000_000, false, &raw(7, false));
        let v = e.view(t0 + 5 * MIN + 1);
        let ids: Vec<u8> = v.slowest.iter().map(|x| x.trace_id[0]).collect();
        assert_eq!(ids, [5, 6, 4]);
        // a late span of minute 0 does not take minute 5's slot
        e.offer(t0 + 4, 99_000_000, false, &raw(8, false));
        assert_eq!(e.slowest[0].trace_id[0], 7);
        // more errors than the ring holds: the latest three
        for k in 0..5u8 {
            e.offer(t0 + 5 * MIN + u64::from(k), 1, true, &raw(20 + k, false));
        }
        let errs: Vec<u8> = e
            .view(t0 + 6 * MIN)
            .errors
            .iter()
            .map(|x| x.trace_id[0])
            .collect();
        assert_eq!(errs, [24, 23, 22]);
        // ten minutes later nothing is recent
        assert_eq!(e.view(t0 + 20 * MIN), ExemplarsView::default());
    }
}
