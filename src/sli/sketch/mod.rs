//! A DDSketch for latencies in seconds: mergeable quantiles whose relative error against the
//! nearest-rank quantile is at most `latency_accuracy` (the README's How it works), serialised as DataDog's
//! DDSketch protobuf for the archive's `latency_sketch` column (docs/archive.md).
//!
//! # Why not the `sketches-ddsketch` crate
//!
//! It is mergeable and (with `use_serde`, and since 0.4.1 DataDog Java's own binary layout)
//! serialisable, but it computes `value.ln()` on every insert, keeps `u64` counts (twice our
//! memory per bin), collapses its lowest bins past 2048 (losing the accuracy guarantee there),
//! answers quantiles with rank `q·(n−1)` rather than nearest rank, and cannot write or read the
//! `ddsketch.proto` message that DataDog's Go/Java/Python libraries exchange. Every one of
//! those is a requirement here, so this module is our own, small, implementation.
//!
//! # Mapping (value → bin index)
//!
//! DataDog's *cubically interpolated* mapping (sketches-java `CubicallyInterpolatedMapping`,
//! sketches-go `mapping/cubically_interpolated_mapping.go`). For `v = 2^e·(1+s)`, `s ∈ [0,1)`,
//! read straight from the f64's exponent and mantissa bits (no `ln`):
//!
//! ```text
//! L(v)      = e + ((A·s + B)·s + C)·s        A = 6/35, B = −3/5, C = 10/7   (L(2^e) = e)
//! index(v)  = floor(L(v)·multiplier + indexOffset)        indexOffset = 0
//! value(i)  = L⁻¹((i − indexOffset) / multiplier) · (1 + α)   (L⁻¹ by Cardano's formula)
//! multiplier = 7 / (10·ln((1+α)/(1−α)))       gamma (protobuf) = 2^(1/multiplier)
//! ```
//!
//! Why α holds: `dL/d(ln v) = (1+s)·P'(s) ≥ 10/7` on `[0,1)` (minimum at `s = 0` and `s = 2/3`),
//! so one bin — a step of `1/multiplier` in `L` — spans at most `ln((1+α)/(1−α))` in `ln v`:
//! `upper/lower ≤ (1+α)/(1−α)`. The representative `lower·(1+α)` is therefore within α of
//! every value of the bin, both ends included. The price against the memory-optimal `ln`
//! mapping is `(1/ln 2)/(10/7) − 1 ≈ 1 %` more bins (the linear interpolation costs 44 %): at
//! α = 0.01 there are `multiplier ≈ 35.0` bins per octave, ≈ 116.3 per decade.
//!
//! ## Compatibility with DataDog's libraries
//!
//! The convention above is sketches-java's and sketches-go's, checked against their source:
//! `index = floor(log(v)·multiplier + normalizedIndexOffset)` where `log` is the cubic
//! approximation; `value = logInverse((index − normalizedIndexOffset)/multiplier)·(1+α)`;
//! `gamma = base^(1/multiplier)` with `base = 2`, `indexOffset = normalizedIndexOffset +
//! log(1)·multiplier = 0`; a reader rebuilds `multiplier = 1/log2(gamma)` and
//! `α = 1 − 2/(1 + e^(0.7·log2(gamma)))`, the α we started from. So Go's `ddsketch.FromProto`
//! and Java's protobuf binding read our bins at the same values (up to float rounding of
//! `gamma`). Two deviations, both invisible to a reader: we floor exactly (their `(int)x − 1`
//! puts an exact negative integer one bin low, which still satisfies α), and `L⁻¹` scales by
//! `2^e` instead of splicing bits, so a mantissa that rounds to 2.0 cannot lose an octave.
//!
//! sketches-py does **not** follow this convention for CUBIC: it reads `gamma` as
//! `(1+α)/(1−α)` (a 1 % different multiplier) and uses `ceil` keys (one bin off), so it
//! decodes our sketches — and Go's and Java's — to wrong values. Offline readers in Python
//! must apply the formulas above themselves (they are a dozen lines) or go through momentum.
//!
//! # Inputs
//!
//! - Values `≤ min_indexable` (`f64::MIN_POSITIVE·(1+α)/(1−α)`, ~2.3e-308 s), i.e. durations of
//!   0, go to the zero bucket, whose representative value is 0 (DataDog's `zeroCount`).
//! - Negative finite values are clamped to 0 (a span that ends before it starts is rejected
//!   upstream; a clock step must not poison the sketch) and count in the zero bucket.
//! - NaN and ±∞ are ignored: [`Sketch::add`] returns `false` so the caller can count the drop.
//! - Finite values above `max_indexable` (`f64::MAX/(1+α)`) share the top bin; `max` stays exact.
//!
//! # Store
//!
//! One dense, contiguous `Vec` of counters covering `[offset, offset + len)`, grown in either
//! direction with a [`GROWTH_SLACK`]-bin margin so a spreading distribution reallocates rarely;
//! [`Sketch::clear`] keeps the allocation (a recycled sub-window sketch does not reallocate),
//! [`Sketch::trim`] gives the slack back. Counters are `u32` while the sketch's total count
//! fits in a `u32` — no single bin can then overflow — and the whole store is promoted to
//! `u64` counters the moment it would not (4.29 billion values); nothing saturates or wraps.
//! count (`u64`), sum, min and max are tracked exactly beside the bins.
//!
//! Memory: 80 bytes of header plus 4 bytes per bin in the covered range. A latency spread of 3
//! decades (1 ms … 1 s) covers ≈ 350 bins at α = 0.01: ≈ 1,480 bytes after [`Sketch::trim`], at
//! most 1,608 with growth slack. The widest range durations built from nanosecond timestamps
//! can take (1 ns … 584 years, 19.3 decades) is ≈ 2,240 bins, ≈ 9 KB. Decoding allocates at
//! most the mapping's whole index range (≈ 72,000 bins, 288 KB, at α = 0.01), whatever the
//! bytes claim.
//!
//! # Quantiles
//!
//! Nearest rank: for `n` values and `q ∈ [0,1]`, rank `k = max(1, ⌈q·n⌉)` (see
//! [`nearest_rank`] for the float tolerance); the answer is the representative value of the
//! bin holding the k-th smallest value, clamped to `[min, max]`, with `k = 1` answered by the
//! exact `min` and `k = n` by the exact `max`. Clamping only moves the answer toward the exact
//! quantile, so it stays within α. An empty sketch has no quantiles (`None`, never NaN).
//!
//! # Encoding (`latency_sketch`, version [`ENCODING_VERSION`] = 1)
//!
//! The bytes are one protobuf `DDSketch` message of DataDog's `ddsketch.proto` (sketches-go
//! `ddsketch/pb/ddsketch.proto`, proto3, no package):
//!
//! ```text
//! DDSketch     { IndexMapping mapping = 1; Store positiveValues = 2; Store negativeValues = 3;
//!                double zeroCount = 4;
//!                // momentum extension, skipped as unknown fields by DataDog's readers:
//!                optional uint32 momentumVersion = 1000;  // = 1
//!                optional double sum = 1001; optional double min = 1002; optional double max = 1003; }
//! IndexMapping { double gamma = 1; double indexOffset = 2; Interpolation interpolation = 3; }
//!                // enum Interpolation { NONE = 0; LINEAR = 1; QUADRATIC = 2; CUBIC = 3; }
//! Store        { map<sint32, double> binCounts = 1; repeated double contiguousBinCounts = 2 [packed];
//!                sint32 contiguousBinIndexOffset = 3; }
//! ```
//!
//! We write `mapping = {gamma: 2^(1/multiplier), indexOffset: 0, interpolation: CUBIC}`, the
//! non-empty bins as one contiguous run in `positiveValues` (from the lowest to the highest
//! non-empty bin), an empty `negativeValues` (always present: sketches-go's `FromProto`
//! dereferences it), `zeroCount`, and the extension fields, which carry what the DataDog
//! message cannot: the exact sum, min and max (written only for a non-empty sketch). Counts are
//! whole numbers stored as doubles (exact below 2^53).
//!
//! [`Sketch::decode_ddsketch`] accepts any `DDSketch` message with our mapping (same gamma
//! within 1e-12 relative, indexOffset 0, CUBIC): sparse and contiguous bins (summed where both
//! name a bin), whole non-negative counts, indexes within the mapping's range, no negative
//! values. Without `momentumVersion` (a sketch from a DataDog library) sum, min and max are
//! estimated from the bins (each within α); with it they must be consistent with the bins. A
//! version newer than ours, another mapping, or anything else is an error naming the problem;
//! every [`SketchError`] is permanent (retrying the same bytes or config cannot succeed).

use std::collections::HashMap;

use prost::Message;

/// Default relative accuracy (`sli.latency_accuracy`).
pub const DEFAULT_ACCURACY: f64 = 0.01;
/// Finest accepted relative accuracy: at it a 3-decade sketch already takes 140 KB.
pub const MIN_ACCURACY: f64 = 1e-4;
/// Coarsest accepted relative accuracy: beyond it a quantile says little.
pub const MAX_ACCURACY: f64 = 0.5;
/// Version of the `latency_sketch` encoding written by [`Sketch::encode_ddsketch`].
pub const ENCODING_VERSION: u32 = 1;
/// The index [`Mapping::index`] returns for values that belong to the zero bucket.
pub const ZERO_INDEX: i32 = i32::MIN;
/// Bins added beyond the needed range when the store grows, to make regrowth rare.
pub const GROWTH_SLACK: i64 = 16;

// Coefficients of DataDog's cubic interpolation of log2 between powers of two.
const A: f64 = 6.0 / 35.0;
const B: f64 = -3.0 / 5.0;
const C: f64 = 10.0 / 7.0;
const MANTISSA_MASK: u64 = 0x000f_ffff_ffff_ffff;
const ONE_BITS: u64 = 0x3ff0_0000_0000_0000;
/// Relative tolerance when comparing a decoded mapping with ours (sketches-go uses 1e-12).
const MAPPING_TOLERANCE: f64 = 1e-12;

/// Errors from building a mapping or decoding a sketch; all are permanent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SketchError {
    /// The configured relative accuracy is outside the supported range.
    #[error("latency_accuracy must be within [{MIN_ACCURACY}, {MAX_ACCURACY}], got {0}")]
    InvalidAccuracy(f64),
    /// The bytes are not a protobuf `DDSketch` message.
    #[error("latency sketch is not a DDSketch protobuf message: {0}")]
    Decode(String),
    /// The message was written by a newer momentum.
    #[error("latency sketch encoding version {0} is not supported (this reader knows 1..={ENCODING_VERSION})")]
    UnsupportedVersion(u32),
    /// The message has no `mapping` field.
    #[error("latency sketch has no index mapping")]
    MissingMapping,
    /// The message was built with another index mapping, so its bins are not ours.
    #[error(
        "latency sketch mapping (gamma {gamma}, indexOffset {index_offset}, interpolation {interpolation}) \
         is not ours (gamma {expected_gamma}, indexOffset 0, interpolation 3 = CUBIC); \
         its bins cannot be merged with ours"
    )]
    MappingMismatch {
        /// Decoded gamma.
        gamma: f64,
        /// Decoded indexOffset.
        index_offset: f64,
        /// Decoded interpolation enum value.
        interpolation: i32,
        /// Our gamma.
        expected_gamma: f64,
    },
    /// The message has values in its negative store.
    #[error("latency sketch holds negative values, which latencies never are")]
    NegativeValues,
    /// A count is negative, fractional, not finite or too large.
    #[error("latency sketch count {count} (bin {index:?}; None = zero bucket) is not a whole number in [0, 2^53]")]
    InvalidCount {
        /// Bin index (`None` for the zero bucket).
        index: Option<i64>,
        /// The offending count.
        count: f64,
    },
    /// A bin index is outside the mapping's indexable range.
    #[error("latency sketch bin index {index} is outside the mapping's range [{min}, {max}]")]
    IndexOutOfRange {
        /// Offending index.
        index: i64,
        /// Lowest valid index.
        min: i32,
        /// Highest valid index.
        max: i32,
    },
    /// sum/min/max are missing or contradict the bins.
    #[error("latency sketch summary is inconsistent with its bins: {0}")]
    InvalidSummary(&'static str),
}

/// DataDog's `IndexMapping.Interpolation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Interpolation {
    /// Exact logarithm.
    None = 0,
    /// Linear interpolation of log2 between powers of two.
    Linear = 1,
    /// Quadratic interpolation.
    Quadratic = 2,
    /// Cubic interpolation (ours).
    Cubic = 3,
}

/// Value ↔ bin-index mapping with relative accuracy α; see the module docs for the formulas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mapping {
    alpha: f64,
    multiplier: f64,
    min_indexable: f64,
    max_indexable: f64,
    min_index: i32,
    max_index: i32,
}

impl Mapping {
    /// Builds the cubically interpolated mapping for relative accuracy `alpha`
    /// (within [`MIN_ACCURACY`]..=[`MAX_ACCURACY`]).
    pub fn new(alpha: f64) -> Result<Mapping, SketchError> {
        if !(MIN_ACCURACY..=MAX_ACCURACY).contains(&alpha) {
            return Err(SketchError::InvalidAccuracy(alpha));
        }
        // ln((1+α)/(1−α)) as sketches-go computes it, so gamma round-trips bit-for-bit.
        let multiplier = 7.0 / (10.0 * (2.0 * alpha / (1.0 - alpha)).ln_1p());
        let min_indexable = f64::MIN_POSITIVE * (1.0 + alpha) / (1.0 - alpha);
        let max_indexable = f64::MAX / (1.0 + alpha);
        let raw = |v: f64| floor_to_i32(approx_log2(v) * multiplier);
        Ok(Mapping {
            alpha,
            multiplier,
            min_indexable,
            max_indexable,
            min_index: raw(min_indexable),
            max_index: raw(max_indexable),
        })
    }

    /// The bin index of `v`: [`ZERO_INDEX`] for `v ≤ min_indexable`, negative values and NaN;
    /// values above `max_indexable` (and +∞) share the top bin. No `ln`: a handful of float ops.
    #[inline]
    pub fn index(&self, v: f64) -> i32 {
        if v > self.min_indexable {
            let v = if v < self.max_indexable {
                v
            } else {
                self.max_indexable
            };
            floor_to_i32(approx_log2(v) * self.multiplier)
        } else {
            ZERO_INDEX
        }
    }

    /// The representative value of bin `index`, within α of every value in the bin
    /// (0 for [`ZERO_INDEX`]; indexes beyond the mapping's range are clamped into it).
    pub fn value(&self, index: i32) -> f64 {
        if index == ZERO_INDEX {
            return 0.0;
        }
        self.lower_bound(index) * (1.0 + self.alpha)
    }

    /// The smallest value of bin `index` (0 for [`ZERO_INDEX`]).
    pub fn lower_bound(&self, index: i32) -> f64 {
        if index == ZERO_INDEX {
            return 0.0;
        }
        let index = index.clamp(self.min_index, self.max_index);
        approx_exp2(f64::from(index) / self.multiplier)
    }

    /// The relative accuracy α this mapping guarantees.
    pub fn relative_accuracy(&self) -> f64 {
        self.alpha
    }

    /// DataDog's `gamma`: the base of the logarithm the index approximates, `2^(1/multiplier)`.
    pub fn gamma(&self) -> f64 {
        (1.0 / self.multiplier).exp2()
    }

    /// DataDog's `indexOffset`: always 0 here, as for DataDog's `new(relativeAccuracy)` mappings.
    pub fn index_offset(&self) -> f64 {
        0.0
    }

    /// DataDog's interpolation kind: [`Interpolation::Cubic`].
    pub fn interpolation(&self) -> Interpolation {
        Interpolation::Cubic
    }

    /// Values at or below this go to the zero bucket.
    pub fn min_indexable(&self) -> f64 {
        self.min_indexable
    }

    /// Values above this share the top bin.
    pub fn max_indexable(&self) -> f64 {
        self.max_indexable
    }

    /// The lowest and highest bin index a value can map to.
    pub fn index_range(&self) -> (i32, i32) {
        (self.min_index, self.max_index)
    }

    fn to_proto(self) -> IndexMappingProto {
        IndexMappingProto {
            gamma: self.gamma(),
            index_offset: self.index_offset(),
            interpolation: self.interpolation() as i32,
        }
    }

    fn check_compatible(&self, p: &IndexMappingProto) -> Result<(), SketchError> {
        // Compare what decides the bins, as sketches-go's Equals does: multiplier and offset.
        let multiplier = 1.0 / p.gamma.log2();
        let same = p.interpolation == Interpolation::Cubic as i32
            && p.index_offset.abs() <= MAPPING_TOLERANCE
            && p.gamma > 1.0
            && (multiplier - self.multiplier).abs() <= MAPPING_TOLERANCE * self.multiplier;
        if same {
            Ok(())
        } else {
            Err(SketchError::MappingMismatch {
                gamma: p.gamma,
                index_offset: p.index_offset,
                interpolation: p.interpolation,
                expected_gamma: self.gamma(),
            })
        }
    }
}

/// DataDog's cubic approximation of log2 for a positive normal `v`; exact at powers of two.
#[inline]
fn approx_log2(v: f64) -> f64 {
    let bits = v.to_bits();
    let e = ((bits >> 52) as i64 - 1023) as f64;
    let s = f64::from_bits((bits & MANTISSA_MASK) | ONE_BITS) - 1.0;
    ((A * s + B) * s + C) * s + e
}

/// The exact inverse of [`approx_log2`] (Cardano's formula for the cubic in `s`).
fn approx_exp2(x: f64) -> f64 {
    let e = x.floor();
    let d0 = B * B - 3.0 * A * C;
    let d1 = 2.0 * B * B * B - 9.0 * A * B * C - 27.0 * A * A * (x - e);
    let p = ((d1 - (d1 * d1 - 4.0 * d0 * d0 * d0).sqrt()) / 2.0).cbrt();
    let significand_plus_one = -(B + p + d0 / p) / (3.0 * A) + 1.0;
    // 2^e built from bits is exact for normal exponents; multiplying by it is exact too, and
    // stays right if the significand rounds up to 2.0.
    let e = (e as i64).clamp(-1022, 1023);
    significand_plus_one * f64::from_bits(((e + 1023) as u64) << 52)
}

/// `floor` without libm (baseline x86-64 has no SSE4.1 `roundsd`); `x` is well inside i32.
#[inline]
fn floor_to_i32(x: f64) -> i32 {
    let t = x as i32;
    if f64::from(t) > x {
        t - 1
    } else {
        t
    }
}

pub use super::rank::nearest_rank;

/// A counter width of the dense store.
trait Count: Copy + Default + Eq {
    fn get(self) -> u64;
    /// Adds `n`; callers guarantee the result fits (see "Store" in the module docs).
    fn put(&mut self, n: u64);
}

impl Count for u32 {
    #[inline]
    fn get(self) -> u64 {
        u64::from(self)
    }
    #[inline]
    fn put(&mut self, n: u64) {
        *self += n as u32;
    }
}

impl Count for u64 {
    #[inline]
    fn get(self) -> u64 {
        self
    }
    #[inline]
    fn put(&mut self, n: u64) {
        *self += n;
    }
}

/// The dense counters: `u32` until the sketch's total count outgrows it, then `u64`.
#[derive(Debug, Clone)]
enum Bins {
    Narrow(Vec<u32>),
    Wide(Vec<u64>),
}

/// Runs `$body` with `$b` bound to the counter vector, whichever its width.
macro_rules! with_bins {
    ($bins:expr, $b:ident => $body:expr) => {
        match $bins {
            Bins::Narrow($b) => $body,
            Bins::Wide($b) => $body,
        }
    };
}

/// A DDSketch of non-negative values; see the module docs. All sketches that are merged or
/// queried together must use the same [`Mapping`] (one per process, from the config).
#[derive(Debug, Clone)]
pub struct Sketch {
    bins: Bins,
    /// Bin index of `bins[0]`.
    offset: i32,
    zero_count: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::new()
    }
}

/// Logical equality: same counts per bin, zero bucket, count, sum, min and max — regardless of
/// how much of the store is allocated or of the counter width.
impl PartialEq for Sketch {
    fn eq(&self, other: &Sketch) -> bool {
        self.count == other.count
            && self.zero_count == other.zero_count
            && self.sum == other.sum
            && (self.count == 0 || (self.min == other.min && self.max == other.max))
            && self.bins().eq(other.bins())
    }
}

impl Sketch {
    /// An empty sketch; allocates nothing until the first non-zero value.
    pub const fn new() -> Sketch {
        Sketch {
            bins: Bins::Narrow(Vec::new()),
            offset: 0,
            zero_count: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Adds `v` (seconds). Returns `false`, changing nothing, for NaN and ±∞; negative values
    /// count as 0.
    #[inline]
    pub fn add(&mut self, m: &Mapping, v: f64) -> bool {
        self.add_index(m.index(v), v)
    }

    /// Adds `v` whose bin `index` the caller computed with [`Mapping::index`] — once, for all
    /// the sketches a span lands in. Same return value and rules as [`Sketch::add`]. An index
    /// from anywhere else puts `v` in the wrong bin (and a far-off one allocates up to it).
    #[inline]
    pub fn add_index(&mut self, index: i32, v: f64) -> bool {
        if !v.is_finite() {
            return false;
        }
        let v = if v > 0.0 { v } else { 0.0 };
        self.count += 1;
        self.sum += v;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
        if index == ZERO_INDEX {
            self.zero_count += 1;
            return true;
        }
        let pos = index.wrapping_sub(self.offset) as u32 as usize;
        match &mut self.bins {
            // While the total count fits in a u32, no u32 bin can overflow.
            Bins::Narrow(b) if self.count <= u64::from(u32::MAX) => {
                if let Some(c) = b.get_mut(pos) {
                    *c += 1;
                    return true;
                }
            }
            Bins::Wide(b) => {
                if let Some(c) = b.get_mut(pos) {
                    *c += 1;
                    return true;
                }
            }
            Bins::Narrow(_) => {}
        }
        self.add_to_bin_slow(index, 1);
        true
    }

    /// Growth, promotion to u64 counters, or an already wide store.
    #[cold]
    #[inline(never)]
    fn add_to_bin_slow(&mut self, index: i32, n: u64) {
        self.cover(index, index, GROWTH_SLACK);
        self.widen_if_needed();
        let pos = (i64::from(index) - i64::from(self.offset)) as usize;
        with_bins!(&mut self.bins, b => b[pos].put(n));
    }

    /// Promotes the counters to u64 once the total count no longer fits in a u32.
    fn widen_if_needed(&mut self) {
        if let Bins::Narrow(b) = &self.bins {
            if self.count > u64::from(u32::MAX) {
                self.bins = Bins::Wide(b.iter().map(|&c| u64::from(c)).collect());
            }
        }
    }

    /// Grows the store to cover bin indexes `lo..=hi`, with `slack` spare bins on a side that
    /// grows. Reallocates to the exact new size (no doubling: memory matters more than the
    /// rare regrowth).
    fn cover(&mut self, lo: i32, hi: i32, slack: i64) {
        let len = with_bins!(&self.bins, b => b.len()) as i64;
        let (lo, hi) = (i64::from(lo), i64::from(hi));
        let cur_lo = i64::from(self.offset);
        let cur_hi = cur_lo + len - 1;
        if len > 0 && lo >= cur_lo && hi <= cur_hi {
            return;
        }
        let (new_lo, new_hi) = if len == 0 {
            (lo - slack, hi + slack)
        } else {
            (
                if lo < cur_lo { lo - slack } else { cur_lo },
                if hi > cur_hi { hi + slack } else { cur_hi },
            )
        };
        // Stay clear of ZERO_INDEX and of the i32 range.
        let new_lo = new_lo.max(i64::from(i32::MIN) + 1);
        let new_hi = new_hi.min(i64::from(i32::MAX));
        let new_len = (new_hi - new_lo + 1) as usize;
        let shift = if len == 0 {
            0
        } else {
            (cur_lo - new_lo) as usize
        };
        with_bins!(&mut self.bins, b => {
            let mut grown = Vec::with_capacity(new_len);
            grown.resize(shift, Default::default());
            grown.extend_from_slice(b);
            grown.resize(new_len, Default::default());
            *b = grown;
        });
        self.offset = new_lo as i32;
    }

    /// Positions of the first and last non-empty bins.
    fn nonzero_span(&self) -> Option<(usize, usize)> {
        with_bins!(&self.bins, b => {
            let first = b.iter().position(|c| *c != 0)?;
            let last = b.iter().rposition(|c| *c != 0)?;
            Some((first, last))
        })
    }

    /// Adds every value of `other` to `self`. Both must come from the same [`Mapping`].
    pub fn merge(&mut self, other: &Sketch) {
        if other.count == 0 {
            return;
        }
        self.count += other.count;
        self.zero_count += other.zero_count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        let Some((first, last)) = other.nonzero_span() else {
            return;
        };
        let lo = other.offset + first as i32;
        let hi = other.offset + last as i32;
        self.cover(lo, hi, GROWTH_SLACK);
        self.widen_if_needed();
        let start = (i64::from(lo) - i64::from(self.offset)) as usize;
        let end = start + (last - first) + 1;
        match (&mut self.bins, &other.bins) {
            (Bins::Narrow(d), Bins::Narrow(s)) => add_counts(&mut d[start..end], &s[first..=last]),
            (Bins::Narrow(d), Bins::Wide(s)) => add_counts(&mut d[start..end], &s[first..=last]),
            (Bins::Wide(d), Bins::Narrow(s)) => add_counts(&mut d[start..end], &s[first..=last]),
            (Bins::Wide(d), Bins::Wide(s)) => add_counts(&mut d[start..end], &s[first..=last]),
        }
    }

    /// Empties the sketch, keeping the store's allocation and position for reuse (counters go
    /// back to u32 width).
    pub fn clear(&mut self) {
        match &mut self.bins {
            Bins::Narrow(b) => b.fill(0),
            Bins::Wide(b) => self.bins = Bins::Narrow(vec![0; b.len()]),
        }
        self.zero_count = 0;
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::INFINITY;
        self.max = f64::NEG_INFINITY;
    }

    /// Shrinks the store, in place, to exactly the non-empty bins and frees the rest
    /// (for sketches that are kept but no longer written, e.g. closed sub-windows).
    pub fn trim(&mut self) {
        match self.nonzero_span() {
            None => {
                with_bins!(&mut self.bins, b => *b = Vec::new());
                self.offset = 0;
            }
            Some((first, last)) => {
                with_bins!(&mut self.bins, b => {
                    b.truncate(last + 1);
                    b.drain(..first);
                    b.shrink_to_fit();
                });
                self.offset += first as i32;
            }
        }
    }

    /// Number of values added (the zero bucket included).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Exact sum of the values added (0 when empty).
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Exact smallest value added.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Exact largest value added.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// True when no value was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of values in the zero bucket.
    pub fn zero_count(&self) -> u64 {
        self.zero_count
    }

    /// The non-empty bins as `(index, count)`, lowest index first (zero bucket excluded).
    pub fn bins(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        let len = with_bins!(&self.bins, b => b.len());
        (0..len).filter_map(move |pos| {
            let c = with_bins!(&self.bins, b => b[pos].get());
            (c > 0).then(|| (self.offset + pos as i32, c))
        })
    }

    /// Heap and inline bytes held by this sketch.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Sketch>() + with_bins!(&self.bins, b => heap_bytes(b))
    }

    /// The nearest-rank `q`-quantile within α relative error (see the module docs); `None`
    /// when the sketch is empty or `q` is NaN. `q` outside [0, 1] is clamped.
    pub fn quantile(&self, m: &Mapping, q: f64) -> Option<f64> {
        self.quantiles(m, &[q]).map(|[v]| v)
    }

    /// Several quantiles in one pass over the bins, in the order of `qs` (which need not be
    /// sorted); `None` when the sketch is empty or any `q` is NaN.
    pub fn quantiles<const N: usize>(&self, m: &Mapping, qs: &[f64; N]) -> Option<[f64; N]> {
        if self.count == 0 || qs.iter().any(|q| q.is_nan()) {
            return None;
        }
        let ranks: [u64; N] = std::array::from_fn(|i| nearest_rank(qs[i], self.count));
        let mut order: [usize; N] = std::array::from_fn(|i| i);
        order.sort_unstable_by_key(|&i| ranks[i]);
        let mut out = [0.0; N];
        with_bins!(&self.bins, b => {
            // `cum` values lie in the zero bucket and bins[..next]; `holder` is the last
            // non-empty bucket consumed (None: the zero bucket).
            let mut cum = self.zero_count;
            let mut next = 0usize;
            let mut holder: Option<usize> = None;
            for &i in &order {
                let k = ranks[i];
                while cum < k && next < b.len() {
                    let c = b[next].get();
                    if c > 0 {
                        cum += c;
                        holder = Some(next);
                    }
                    next += 1;
                }
                out[i] = if k <= 1 {
                    self.min
                } else if k >= self.count {
                    self.max
                } else {
                    let v = match holder {
                        None => 0.0,
                        Some(pos) => m.value(self.offset + pos as i32),
                    };
                    v.max(self.min).min(self.max)
                };
            }
        });
        Some(out)
    }

    /// The sketch as DataDog's `DDSketch` protobuf plus momentum's extension fields (encoding
    /// version [`ENCODING_VERSION`]; see the module docs).
    pub fn encode_ddsketch(&self, m: &Mapping) -> Vec<u8> {
        let positive = match self.nonzero_span() {
            None => StoreProto::default(),
            Some((first, last)) => StoreProto {
                bin_counts: HashMap::new(),
                contiguous_bin_counts: with_bins!(&self.bins,
                    b => b[first..=last].iter().map(|c| c.get() as f64).collect()),
                contiguous_bin_index_offset: self.offset + first as i32,
            },
        };
        let has_values = self.count > 0;
        DdSketchProto {
            mapping: Some(m.to_proto()),
            positive_values: Some(positive),
            negative_values: Some(StoreProto::default()),
            zero_count: self.zero_count as f64,
            momentum_version: Some(ENCODING_VERSION),
            sum: has_values.then_some(self.sum),
            min: has_values.then_some(self.min),
            max: has_values.then_some(self.max),
        }
        .encode_to_vec()
    }

    /// Reads a `DDSketch` protobuf written with mapping `m` (by momentum or by a DataDog
    /// library); see the module docs for what is accepted.
    pub fn decode_ddsketch(bytes: &[u8], m: &Mapping) -> Result<Sketch, SketchError> {
        let msg = DdSketchProto::decode(bytes).map_err(|e| SketchError::Decode(e.to_string()))?;
        if let Some(v) = msg.momentum_version {
            if v == 0 || v > ENCODING_VERSION {
                return Err(SketchError::UnsupportedVersion(v));
            }
        }
        m.check_compatible(msg.mapping.as_ref().ok_or(SketchError::MissingMapping)?)?;
        if let Some(neg) = &msg.negative_values {
            if !store_entries(neg, m)?.is_empty() {
                return Err(SketchError::NegativeValues);
            }
        }
        let zero_count = whole_count(msg.zero_count, None)?;
        let entries = match &msg.positive_values {
            Some(store) => store_entries(store, m)?,
            None => Vec::new(),
        };
        let mut count = zero_count;
        for &(_, c) in &entries {
            count = count.checked_add(c).ok_or(SketchError::InvalidCount {
                index: None,
                count: f64::INFINITY,
            })?;
        }
        let mut sketch = Sketch::new();
        sketch.count = count;
        sketch.zero_count = zero_count;
        let lowest = entries.iter().map(|e| e.0).min();
        let highest = entries.iter().map(|e| e.0).max();
        if let (Some(lo), Some(hi)) = (lowest, highest) {
            sketch.cover(lo, hi, 0);
            sketch.widen_if_needed();
            for &(index, c) in &entries {
                let pos = (i64::from(index) - i64::from(sketch.offset)) as usize;
                with_bins!(&mut sketch.bins, b => b[pos].put(c));
            }
        }
        if count == 0 {
            return Ok(sketch);
        }
        if msg.momentum_version.is_some() {
            let (Some(sum), Some(min), Some(max)) = (msg.sum, msg.min, msg.max) else {
                return Err(SketchError::InvalidSummary("sum, min or max missing"));
            };
            // sum may be +∞ (values near f64::MAX overflow it), never NaN or negative.
            if !(sum >= 0.0 && min >= 0.0 && min <= max && max.is_finite()) {
                return Err(SketchError::InvalidSummary("sum, min or max out of range"));
            }
            let low_bucket = if zero_count > 0 {
                Some(ZERO_INDEX)
            } else {
                lowest
            };
            let high_bucket = if highest.is_some() {
                highest
            } else {
                Some(ZERO_INDEX)
            };
            if Some(m.index(min)) != low_bucket || Some(m.index(max)) != high_bucket {
                return Err(SketchError::InvalidSummary(
                    "min or max does not fall in the lowest or highest non-empty bucket",
                ));
            }
            sketch.sum = sum;
            sketch.min = min;
            sketch.max = max;
        } else {
            // A DataDog library's sketch: estimate from the representatives (each within α).
            sketch.sum = sketch.bins().map(|(i, c)| c as f64 * m.value(i)).sum();
            sketch.min = match lowest {
                Some(lo) if zero_count == 0 => m.value(lo),
                _ => 0.0,
            };
            sketch.max = highest.map_or(0.0, |hi| m.value(hi));
        }
        Ok(sketch)
    }
}

fn heap_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * std::mem::size_of::<T>()
}

fn add_counts<D: Count, S: Count>(dst: &mut [D], src: &[S]) {
    for (d, s) in dst.iter_mut().zip(src) {
        d.put(s.get());
    }
}

/// A decoded count: a whole number in [0, 2^53].
fn whole_count(c: f64, index: Option<i64>) -> Result<u64, SketchError> {
    if (0.0..=9_007_199_254_740_992.0).contains(&c) && c.fract() == 0.0 {
        Ok(c as u64)
    } else {
        Err(SketchError::InvalidCount { index, count: c })
    }
}

/// The non-zero `(index, count)` entries of a store, sparse and contiguous, validated.
fn store_entries(store: &StoreProto, m: &Mapping) -> Result<Vec<(i32, u64)>, SketchError> {
    let (min, max) = m.index_range();
    let mut out = Vec::with_capacity(store.contiguous_bin_counts.len() + store.bin_counts.len());
    let sparse = store.bin_counts.iter().map(|(&i, &c)| (i64::from(i), c));
    let base = i64::from(store.contiguous_bin_index_offset);
    let contiguous = (base..).zip(store.contiguous_bin_counts.iter().copied());
    for (index, c) in sparse.chain(contiguous) {
        let c = whole_count(c, Some(index))?;
        if c == 0 {
            continue;
        }
        if index < i64::from(min) || index > i64::from(max) {
            return Err(SketchError::IndexOutOfRange { index, min, max });
        }
        out.push((index as i32, c));
    }
    Ok(out)
}

/// DataDog `ddsketch.proto` `DDSketch`, plus momentum's extension fields (1000–1003).
#[derive(Clone, PartialEq, prost::Message)]
struct DdSketchProto {
    #[prost(message, optional, tag = "1")]
    mapping: Option<IndexMappingProto>,
    #[prost(message, optional, tag = "2")]
    positive_values: Option<StoreProto>,
    #[prost(message, optional, tag = "3")]
    negative_values: Option<StoreProto>,
    #[prost(double, tag = "4")]
    zero_count: f64,
    #[prost(uint32, optional, tag = "1000")]
    momentum_version: Option<u32>,
    #[prost(double, optional, tag = "1001")]
    sum: Option<f64>,
    #[prost(double, optional, tag = "1002")]
    min: Option<f64>,
    #[prost(double, optional, tag = "1003")]
    max: Option<f64>,
}

/// DataDog `ddsketch.proto` `IndexMapping`.
#[derive(Clone, PartialEq, prost::Message)]
struct IndexMappingProto {
    #[prost(double, tag = "1")]
    gamma: f64,
    #[prost(double, tag = "2")]
    index_offset: f64,
    #[prost(enumeration = "Interpolation", tag = "3")]
    interpolation: i32,
}

/// DataDog `ddsketch.proto` `Store`.
#[derive(Clone, PartialEq, prost::Message)]
struct StoreProto {
    #[prost(map = "sint32, double", tag = "1")]
    bin_counts: HashMap<i32, f64>,
    #[prost(double, repeated, tag = "2")]
    contiguous_bin_counts: Vec<f64>,
    #[prost(sint32, tag = "3")]
    contiguous_bin_index_offset: i32,
}

#[cfg(test)]
mod tests;
