use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

const QS: [f64; 5] = [0.5, 0.9, 0.95, 0.99, 0.999];

fn mapping() -> Mapping {
    Mapping::new(DEFAULT_ACCURACY).unwrap()
}

fn sketch_of(m: &Mapping, values: &[f64]) -> Sketch {
    let mut s = Sketch::new();
    for &v in values {
        assert!(s.add(m, v));
    }
    s
}

/// The exact nearest-rank quantile of `values` (none negative).
fn exact_quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[nearest_rank(q, sorted.len() as u64) as usize - 1]
}

fn assert_within(estimate: f64, exact: f64, alpha: f64, what: &str) {
    let tolerance = alpha * exact * (1.0 + 1e-9);
    assert!(
        (estimate - exact).abs() <= tolerance,
        "{what}: estimate {estimate} vs exact {exact}: relative error {} > {alpha}",
        (estimate - exact).abs() / exact
    );
}

/// Same bins, zero bucket, count, min and max; sum equal up to float summation order.
fn assert_same_contents(a: &Sketch, b: &Sketch) {
    assert_eq!(a.bins().collect::<Vec<_>>(), b.bins().collect::<Vec<_>>());
    assert_eq!(a.zero_count(), b.zero_count());
    assert_eq!(a.count(), b.count());
    assert_eq!(a.min(), b.min());
    assert_eq!(a.max(), b.max());
    assert!((a.sum() - b.sum()).abs() <= 1e-9 * a.sum().max(b.sum()));
}

/// Latencies log-uniform over 1 µs ..= 1000 s.
fn log_uniform() -> impl Strategy<Value = f64> {
    (-6.0f64..=3.0).prop_map(|e| 10f64.powf(e))
}

/// Log-uniform sets; few distinct values repeated, with zeros; narrow unimodal sets.
fn latency_values() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        vec(log_uniform(), 1..2000),
        (vec(log_uniform(), 1..8), vec(0usize..9, 1..2000)).prop_map(|(pool, picks)| {
            picks
                .iter()
                .map(|&i| pool.get(i).copied().unwrap_or(0.0))
                .collect()
        }),
        (log_uniform(), vec(-1.0f64..1.0, 1..2000))
            .prop_map(|(center, u)| u.iter().map(|x| center * (1.0 + 0.3 * x)).collect()),
    ]
}

fn accuracy() -> impl Strategy<Value = f64> {
    prop_oneof![Just(DEFAULT_ACCURACY), MIN_ACCURACY..=MAX_ACCURACY]
}

proptest! {
    #[test]
    fn quantiles_are_within_alpha_of_exact_nearest_rank(
        values in latency_values(),
        q in 0.0f64..=1.0,
        alpha in accuracy(),
    ) {
        let m = Mapping::new(alpha).unwrap();
        let s = sketch_of(&m, &values);
        let qs = [QS[0], QS[1], QS[2], QS[3], QS[4], q, 0.0, 1.0];
        let one_pass = s.quantiles(&m, &qs).unwrap();
        for (i, &q) in qs.iter().enumerate() {
            let exact = exact_quantile(&values, q);
            let estimate = s.quantile(&m, q).unwrap();
            prop_assert_eq!(estimate, one_pass[i]);
            if exact == 0.0 {
                prop_assert_eq!(estimate, 0.0);
            } else {
                assert_within(estimate, exact, alpha, &format!("q={q} n={}", values.len()));
            }
        }
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        prop_assert_eq!(one_pass[6], min);
        prop_assert_eq!(one_pass[7], max);
    }

    #[test]
    fn mapping_representative_is_within_alpha_of_its_bin(
        exponent in -9.0f64..10.0,
        alpha in accuracy(),
    ) {
        let m = Mapping::new(alpha).unwrap();
        let v = 10f64.powf(exponent);
        let i = m.index(v);
        let (lower, upper) = (m.lower_bound(i), m.lower_bound(i + 1));
        prop_assert!(lower <= v * (1.0 + 1e-12) && v < upper * (1.0 + 1e-12), "{v} not in [{lower}, {upper})");
        prop_assert!(upper / lower <= (1.0 + alpha) / (1.0 - alpha) * (1.0 + 1e-12));
        assert_within(m.value(i), v, alpha, "value(index(v))");
        // Both ends of the bin are within α of its representative too.
        assert_within(m.value(i), lower, alpha, "bin lower bound");
        assert_within(m.value(i), upper, alpha, "bin upper bound");
    }

    #[test]
    fn merge_of_halves_equals_whole(values in latency_values(), cut in 0.0f64..=1.0) {
        let m = mapping();
        let at = (values.len() as f64 * cut) as usize;
        let (left, right) = values.split_at(at);
        let whole = sketch_of(&m, &values);
        let mut a = sketch_of(&m, left);
        a.merge(&sketch_of(&m, right));
        assert_same_contents(&a, &whole);
        let mut b = sketch_of(&m, right);
        b.merge(&sketch_of(&m, left));
        assert_same_contents(&b, &whole);
        prop_assert_eq!(a.quantiles(&m, &QS), whole.quantiles(&m, &QS));
    }

    #[test]
    fn merge_is_associative_and_commutative(
        x in latency_values(),
        y in latency_values(),
        z in latency_values(),
    ) {
        let m = mapping();
        let (a, b, c) = (sketch_of(&m, &x), sketch_of(&m, &y), sketch_of(&m, &z));
        let mut ab_c = a.clone();
        ab_c.merge(&b);
        ab_c.merge(&c);
        let mut bc = b.clone();
        bc.merge(&c);
        let mut a_bc = a.clone();
        a_bc.merge(&bc);
        let mut cb_a = c.clone();
        cb_a.merge(&b);
        cb_a.merge(&a);
        assert_same_contents(&ab_c, &a_bc);
        assert_same_contents(&ab_c, &cb_a);
        // Merging an empty sketch, either way round, changes nothing.
        let mut e = Sketch::new();
        e.merge(&a);
        assert_same_contents(&e, &a);
        let mut a2 = a.clone();
        a2.merge(&Sketch::new());
        prop_assert_eq!(&a2, &a);
    }

    #[test]
    fn encode_decode_round_trip_is_identical(values in latency_values(), alpha in accuracy()) {
        let m = Mapping::new(alpha).unwrap();
        let s = sketch_of(&m, &values);
        let bytes = s.encode_ddsketch(&m);
        let back = Sketch::decode_ddsketch(&bytes, &m).unwrap();
        prop_assert_eq!(&back, &s);
        prop_assert_eq!(back.encode_ddsketch(&m), bytes);
    }

    #[test]
    fn add_index_into_several_sketches_equals_add(values in latency_values()) {
        let m = mapping();
        let (mut a, mut b) = (Sketch::new(), Sketch::new());
        for &v in &values {
            let i = m.index(v);
            a.add_index(i, v);
            b.add_index(i, v);
        }
        let direct = sketch_of(&m, &values);
        prop_assert_eq!(&a, &direct);
        prop_assert_eq!(&b, &direct);
    }
}

#[test]
fn mapping_rejects_out_of_range_accuracy() {
    for alpha in [
        0.0,
        -0.01,
        0.5001,
        1.0,
        MIN_ACCURACY / 2.0,
        f64::NAN,
        f64::INFINITY,
    ] {
        assert!(
            matches!(Mapping::new(alpha), Err(SketchError::InvalidAccuracy(_))),
            "{alpha} accepted"
        );
    }
    assert!(Mapping::new(MIN_ACCURACY).is_ok());
    assert!(Mapping::new(MAX_ACCURACY).is_ok());
}

#[test]
fn mapping_matches_datadog_conventions() {
    for alpha in [MIN_ACCURACY, 0.001, 0.01, 0.05, MAX_ACCURACY] {
        let m = Mapping::new(alpha).unwrap();
        let multiplier = 7.0 / (10.0 * ((1.0 + alpha) / (1.0 - alpha)).ln());
        // gamma as sketches-java/go write it, and what their readers rebuild from it.
        let gamma = m.gamma();
        assert!((gamma - (1.0 / multiplier).exp2()).abs() <= 1e-14 * gamma);
        let read_multiplier = 1.0 / gamma.log2();
        let read_alpha = 1.0 - 2.0 / (1.0 + (0.7 * gamma.log2()).exp());
        assert!((read_multiplier - multiplier).abs() <= 1e-12 * multiplier);
        assert!((read_alpha - alpha).abs() <= 1e-14);
        assert_eq!(m.index_offset(), 0.0);
        assert_eq!(m.interpolation(), Interpolation::Cubic);
        // index = floor(L(v)·multiplier) with L exact at powers of two.
        assert_eq!(m.index(1.0), 0);
        assert_eq!(m.index(1.0 - 1e-12), -1);
        for k in [-30i32, -10, -1, 1, 5, 30] {
            let v = 2f64.powi(k);
            assert_eq!(
                m.index(v),
                (f64::from(k) * m.multiplier).floor() as i32,
                "2^{k}"
            );
        }
        // value(i) = L⁻¹(i/multiplier)·(1+α): bin 0 starts at 1.
        assert!((m.value(0) - (1.0 + alpha)).abs() <= 1e-12);
        let (lo, hi) = m.index_range();
        assert!(lo > ZERO_INDEX && hi < i32::MAX);
        assert_eq!(m.index(f64::MAX), hi);
        assert_eq!(m.index(m.min_indexable() * 1.000_001), lo);
    }
}

#[test]
fn mapping_index_and_value_round_trip() {
    let m = mapping();
    let (lo, hi) = m.index_range();
    for i in (lo..=hi).step_by(7).chain(-3000..3000) {
        assert_eq!(m.index(m.value(i)), i, "index(value({i}))");
        // The lowest bin starts below min_indexable, in the zero bucket's range.
        if i > lo {
            assert_eq!(
                m.index(m.lower_bound(i) * (1.0 + 1e-13)),
                i,
                "lower_bound({i})"
            );
        }
    }
    for i in -3000..3000 {
        assert!(
            m.lower_bound(i) < m.lower_bound(i + 1),
            "bins {i}, {} out of order",
            i + 1
        );
    }
}

#[test]
fn mapping_zero_bucket_and_non_finite_indexes() {
    let m = mapping();
    for v in [
        0.0,
        -0.0,
        -1.0,
        f64::NEG_INFINITY,
        f64::NAN,
        1e-310,
        m.min_indexable(),
    ] {
        assert_eq!(m.index(v), ZERO_INDEX, "{v}");
    }
    assert_eq!(m.value(ZERO_INDEX), 0.0);
    assert_eq!(m.index(f64::INFINITY), m.index_range().1);
    assert!(m.value(m.index_range().1).is_finite());
}

#[test]
fn nearest_rank_is_ceil_of_q_n_with_decimal_intent() {
    assert_eq!(nearest_rank(0.07, 100), 7);
    assert_eq!(nearest_rank(0.57, 100), 57);
    assert_eq!(nearest_rank(0.999, 1000), 999);
    assert_eq!(nearest_rank(0.5, 4), 2);
    assert_eq!(nearest_rank(0.51, 4), 3);
    assert_eq!(nearest_rank(0.0, 10), 1);
    assert_eq!(nearest_rank(1e-9, 10), 1);
    assert_eq!(nearest_rank(1.0, 10), 10);
    assert_eq!(nearest_rank(2.0, 10), 10);
    assert_eq!(nearest_rank(-1.0, 10), 1);
    assert_eq!(nearest_rank(0.5, 1), 1);
    assert_eq!(nearest_rank(0.5, 0), 0);
}

#[test]
fn empty_sketch_has_no_quantiles_and_round_trips() {
    let m = mapping();
    let s = Sketch::new();
    assert!(s.is_empty());
    assert_eq!(s.count(), 0);
    assert_eq!(s.sum(), 0.0);
    assert_eq!((s.min(), s.max()), (None, None));
    assert_eq!(s.quantile(&m, 0.5), None);
    assert_eq!(s.quantiles(&m, &QS), None);
    assert_eq!(s.bins().count(), 0);
    let back = Sketch::decode_ddsketch(&s.encode_ddsketch(&m), &m).unwrap();
    assert_eq!(back, s);
    assert!(back.is_empty());
    // Empty after clear, too.
    let mut t = sketch_of(&m, &[0.1, 0.2]);
    t.clear();
    assert_eq!(t.quantile(&m, 0.5), None);
    assert_eq!(t, s);
}

#[test]
fn single_value_is_every_quantile_exactly() {
    let m = mapping();
    for v in [0.0, 1e-9, 0.0123, 1.0, 86_400.0] {
        let s = sketch_of(&m, &[v]);
        assert_eq!(s.quantiles(&m, &[0.0, 0.5, 0.99, 1.0]), Some([v; 4]));
        assert_eq!(
            (s.min(), s.max(), s.sum(), s.count()),
            (Some(v), Some(v), v, 1)
        );
    }
}

#[test]
fn all_zero_durations_live_in_the_zero_bucket() {
    let m = mapping();
    let s = sketch_of(&m, &[0.0; 1000]);
    assert_eq!(s.zero_count(), 1000);
    assert_eq!(s.bins().count(), 0);
    assert_eq!(s.quantiles(&m, &QS), Some([0.0; 5]));
    assert_eq!(s.memory_bytes(), std::mem::size_of::<Sketch>());
    let back = Sketch::decode_ddsketch(&s.encode_ddsketch(&m), &m).unwrap();
    assert_eq!(back, s);
    // Zeros below a few large values: low quantiles 0, high ones the large value.
    let mut values = vec![0.0; 990];
    values.extend([2.5; 10]);
    let s = sketch_of(&m, &values);
    assert_eq!(s.quantile(&m, 0.99), Some(0.0));
    assert_eq!(s.quantile(&m, 0.995), Some(2.5));
}

#[test]
fn huge_and_tiny_values_keep_exact_extremes() {
    let m = mapping();
    let values = [5e-324, 1e-300, 1e-9, 1.0, 1e300, f64::MAX];
    let s = sketch_of(&m, &values);
    assert_eq!(s.quantile(&m, 0.0), Some(5e-324));
    assert_eq!(s.quantile(&m, 1.0), Some(f64::MAX));
    // Indexable values in between stay within α.
    for (q, exact) in [
        (2.0 / 6.0, 1e-300),
        (0.5, 1e-9),
        (4.0 / 6.0, 1.0),
        (5.0 / 6.0, 1e300),
    ] {
        assert_within(s.quantile(&m, q).unwrap(), exact, DEFAULT_ACCURACY, "q");
    }
    let back = Sketch::decode_ddsketch(&s.encode_ddsketch(&m), &m).unwrap();
    assert_eq!(back, s);
    // f64::MAX + 1e300 overflows: the sum saturates at +∞ (and round-trips as such).
    assert_eq!(s.sum(), f64::INFINITY);
}

#[test]
fn q_zero_and_one_are_exact_min_and_max() {
    let m = mapping();
    // 0.0123 and 0.0456 are not bin representatives: the answers must be the inputs.
    let s = sketch_of(&m, &[0.0456, 0.0123, 0.03, 0.0301]);
    assert_eq!(s.quantile(&m, 0.0), Some(0.0123));
    assert_eq!(s.quantile(&m, 1.0), Some(0.0456));
    assert_eq!(s.quantile(&m, -3.0), Some(0.0123));
    assert_eq!(s.quantile(&m, 7.0), Some(0.0456));
    assert_eq!(s.quantile(&m, f64::NAN), None);
    assert_eq!(s.quantiles(&m, &[0.5, f64::NAN]), None);
}

#[test]
fn negative_and_non_finite_inputs() {
    let m = mapping();
    let mut s = Sketch::new();
    assert!(!s.add(&m, f64::NAN));
    assert!(!s.add(&m, f64::INFINITY));
    assert!(!s.add(&m, f64::NEG_INFINITY));
    assert!(s.is_empty());
    assert!(s.add(&m, -0.5));
    assert!(s.add(&m, -0.0));
    assert!(s.add(&m, 0.25));
    assert_eq!((s.count(), s.zero_count(), s.sum()), (3, 2, 0.25));
    assert_eq!(s.min(), Some(0.0));
    assert!(s.min().unwrap().is_sign_positive());
    assert_eq!(s.quantile(&m, 0.5), Some(0.0));
}

#[test]
fn store_grows_both_ways_to_the_same_contents() {
    let m = mapping();
    let ascending: Vec<f64> = (0..2000).map(|i| 1e-5 * 1.01f64.powi(i)).collect();
    let descending: Vec<f64> = ascending.iter().rev().copied().collect();
    let mut inside_out = Vec::new();
    for i in 0..1000 {
        inside_out.push(ascending[1000 + i]);
        inside_out.push(ascending[999 - i]);
    }
    let a = sketch_of(&m, &ascending);
    assert_same_contents(&a, &sketch_of(&m, &descending));
    assert_same_contents(&a, &sketch_of(&m, &inside_out));
    assert_eq!(a.bins().map(|(_, c)| c).sum::<u64>(), 2000);
}

#[test]
fn counters_promote_to_u64_instead_of_overflowing() {
    let m = mapping();
    let i = m.index(0.2);
    let near_full = DdSketchProto {
        mapping: Some(m.to_proto()),
        positive_values: Some(StoreProto {
            bin_counts: HashMap::new(),
            contiguous_bin_counts: vec![f64::from(u32::MAX - 1)],
            contiguous_bin_index_offset: i,
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let mut s = Sketch::decode_ddsketch(&near_full, &m).unwrap();
    assert!(matches!(s.bins, Bins::Narrow(_)));
    s.add(&m, 0.2);
    s.add(&m, 0.2);
    s.add(&m, 0.2);
    assert!(matches!(s.bins, Bins::Wide(_)));
    let expected = u64::from(u32::MAX) + 2;
    assert_eq!(s.bins().collect::<Vec<_>>(), vec![(i, expected)]);
    assert_eq!(s.count(), expected);
    // Merging two big sketches also widens, and nothing is lost.
    let mut t = Sketch::decode_ddsketch(&near_full, &m).unwrap();
    let u = Sketch::decode_ddsketch(&near_full, &m).unwrap();
    t.merge(&u);
    assert_eq!(
        t.bins().collect::<Vec<_>>(),
        vec![(i, 2 * u64::from(u32::MAX - 1))]
    );
    // A wide sketch round-trips, and clear() goes back to u32 counters.
    let back = Sketch::decode_ddsketch(&s.encode_ddsketch(&m), &m).unwrap();
    assert_eq!(back.bins().collect::<Vec<_>>(), vec![(i, expected)]);
    assert_eq!(back.count(), expected);
    s.clear();
    assert!(matches!(s.bins, Bins::Narrow(_)));
    assert!(s.is_empty());
}

#[test]
fn clear_keeps_the_allocation() {
    let m = mapping();
    let values: Vec<f64> = (0..1000).map(|i| 0.001 * 1.007f64.powi(i)).collect();
    let mut s = sketch_of(&m, &values);
    let bytes = s.memory_bytes();
    s.clear();
    assert!(s.is_empty());
    assert_eq!(s.memory_bytes(), bytes);
    for &v in &values {
        s.add(&m, v);
    }
    assert_eq!(s.memory_bytes(), bytes);
    assert_eq!(s, sketch_of(&m, &values));
}

#[test]
fn trim_keeps_contents_and_frees_slack() {
    let m = mapping();
    let mut s = sketch_of(&m, &[0.01, 0.02, 0.5, 0.0]);
    let before = s.clone();
    s.trim();
    assert_eq!(s, before);
    let bins: Vec<_> = s.bins().collect();
    let span = (bins[bins.len() - 1].0 - bins[0].0 + 1) as usize;
    assert_eq!(s.memory_bytes(), std::mem::size_of::<Sketch>() + 4 * span);
    // Still writable after a trim, in both directions.
    s.add(&m, 1e-6);
    s.add(&m, 100.0);
    let mut expected = before.clone();
    expected.add(&m, 1e-6);
    expected.add(&m, 100.0);
    assert_eq!(s, expected);
    let mut empty = sketch_of(&m, &[0.3]);
    empty.clear();
    empty.trim();
    assert_eq!(empty.memory_bytes(), std::mem::size_of::<Sketch>());
}

#[test]
fn three_decades_cost_the_documented_memory() {
    let m = mapping();
    assert_eq!(std::mem::size_of::<Sketch>(), 80);
    // 1 ms ..= 1 s, log-uniform, in arrival (not sorted) order.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut s = Sketch::new();
    for _ in 0..100_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        s.add(&m, 10f64.powf(-3.0 + 3.0 * u));
    }
    let bins: Vec<_> = s.bins().collect();
    let span = bins[bins.len() - 1].0 - bins[0].0 + 1;
    assert!((345..=355).contains(&span), "3 decades span {span} bins");
    assert!(s.memory_bytes() <= 80 + 4 * (span as usize + 2 * GROWTH_SLACK as usize));
    s.trim();
    assert_eq!(s.memory_bytes(), 80 + 4 * span as usize);
}

/// The DataDog message without momentum's extension, as a DataDog reader sees our bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct DataDogView {
    #[prost(message, optional, tag = "1")]
    mapping: Option<IndexMappingProto>,
    #[prost(message, optional, tag = "2")]
    positive_values: Option<StoreProto>,
    #[prost(message, optional, tag = "3")]
    negative_values: Option<StoreProto>,
    #[prost(double, tag = "4")]
    zero_count: f64,
}

#[test]
fn encoding_is_the_datadog_message() {
    let m = mapping();
    let s = sketch_of(&m, &[0.0, 0.0, 0.010, 0.011, 0.3]);
    let bytes = s.encode_ddsketch(&m);
    assert_eq!(
        bytes[0], 0x0a,
        "field 1 (mapping), length-delimited, comes first"
    );
    let dd = DataDogView::decode(bytes.as_slice()).unwrap();
    let mapping = dd.mapping.unwrap();
    assert_eq!(mapping.gamma, m.gamma());
    assert_eq!(mapping.index_offset, 0.0);
    assert_eq!(mapping.interpolation, 3);
    assert_eq!(dd.zero_count, 2.0);
    assert_eq!(dd.negative_values, Some(StoreProto::default()));
    let positive = dd.positive_values.unwrap();
    assert!(positive.bin_counts.is_empty());
    let first = positive.contiguous_bin_index_offset;
    assert_eq!(first, m.index(0.010));
    assert_eq!(
        positive.contiguous_bin_counts.len() as i32,
        m.index(0.3) - first + 1
    );
    let read: Vec<(i32, u64)> = (first..)
        .zip(&positive.contiguous_bin_counts)
        .filter(|(_, c)| **c > 0.0)
        .map(|(i, c)| (i, *c as u64))
        .collect();
    assert_eq!(read, s.bins().collect::<Vec<_>>());
    // A DataDog reader's value for each bin (gamma → multiplier, α) is ours.
    let multiplier = 1.0 / mapping.gamma.log2();
    let alpha = 1.0 - 2.0 / (1.0 + (0.7 * mapping.gamma.log2()).exp());
    for (i, _) in read {
        let theirs = approx_exp2(f64::from(i) / multiplier) * (1.0 + alpha);
        assert!((theirs - m.value(i)).abs() <= 1e-12 * m.value(i));
    }
    // Extension fields carry the exact summary.
    let ours = DdSketchProto::decode(bytes.as_slice()).unwrap();
    assert_eq!(ours.momentum_version, Some(ENCODING_VERSION));
    assert_eq!(
        (ours.sum, ours.min, ours.max),
        (Some(s.sum()), Some(0.0), Some(0.3))
    );
}

#[test]
fn decode_accepts_a_datadog_library_sketch() {
    let m = mapping();
    let (i, j) = (m.index(0.05), m.index(0.8));
    let foreign = DdSketchProto {
        mapping: Some(m.to_proto()),
        positive_values: Some(StoreProto {
            bin_counts: HashMap::from([(i, 2.0), (j, 1.0)]),
            contiguous_bin_counts: vec![3.0, 0.0, 1.0],
            contiguous_bin_index_offset: i,
        }),
        negative_values: None,
        zero_count: 0.0,
        ..Default::default()
    }
    .encode_to_vec();
    let s = Sketch::decode_ddsketch(&foreign, &m).unwrap();
    assert_eq!(
        s.bins().collect::<Vec<_>>(),
        vec![(i, 5), (i + 2, 1), (j, 1)]
    );
    assert_eq!(s.count(), 7);
    assert_eq!(s.min(), Some(m.value(i)));
    assert_eq!(s.max(), Some(m.value(j)));
    let exact_sum = 5.0 * m.value(i) + m.value(i + 2) + m.value(j);
    assert!((s.sum() - exact_sum).abs() <= 1e-12 * exact_sum);
    assert_within(s.quantile(&m, 0.5).unwrap(), 0.05, DEFAULT_ACCURACY, "p50");
}

#[test]
fn decode_rejects_what_it_cannot_merge() {
    let m = mapping();
    let s = sketch_of(&m, &[0.01, 0.2, 3.0]);
    let good = DdSketchProto::decode(s.encode_ddsketch(&m).as_slice()).unwrap();
    let decode = |msg: DdSketchProto| Sketch::decode_ddsketch(&msg.encode_to_vec(), &m);

    assert!(matches!(
        Sketch::decode_ddsketch(b"\xff\xff\xff", &m),
        Err(SketchError::Decode(_))
    ));
    let other = Mapping::new(0.02).unwrap();
    assert!(matches!(
        Sketch::decode_ddsketch(&sketch_of(&other, &[1.0]).encode_ddsketch(&other), &m),
        Err(SketchError::MappingMismatch { .. })
    ));
    let mut msg = good.clone();
    msg.mapping.as_mut().unwrap().interpolation = Interpolation::None as i32;
    assert!(matches!(
        decode(msg),
        Err(SketchError::MappingMismatch { .. })
    ));
    let mut msg = good.clone();
    msg.mapping.as_mut().unwrap().index_offset = 1.0;
    assert!(matches!(
        decode(msg),
        Err(SketchError::MappingMismatch { .. })
    ));
    let mut msg = good.clone();
    msg.mapping = None;
    assert_eq!(decode(msg), Err(SketchError::MissingMapping));
    let mut msg = good.clone();
    msg.momentum_version = Some(ENCODING_VERSION + 1);
    assert_eq!(
        decode(msg),
        Err(SketchError::UnsupportedVersion(ENCODING_VERSION + 1))
    );
    let mut msg = good.clone();
    msg.negative_values
        .as_mut()
        .unwrap()
        .bin_counts
        .insert(3, 1.0);
    assert_eq!(decode(msg), Err(SketchError::NegativeValues));
    for bad in [0.5, -1.0, f64::NAN, f64::INFINITY, 1e300] {
        let mut msg = good.clone();
        msg.positive_values.as_mut().unwrap().contiguous_bin_counts[0] = bad;
        assert!(
            matches!(decode(msg), Err(SketchError::InvalidCount { .. })),
            "{bad}"
        );
    }
    let mut msg = good.clone();
    msg.zero_count = 0.25;
    assert!(matches!(
        decode(msg),
        Err(SketchError::InvalidCount { index: None, .. })
    ));
    let mut msg = good.clone();
    msg.positive_values
        .as_mut()
        .unwrap()
        .bin_counts
        .insert(i32::MAX - 1, 1.0);
    assert!(matches!(
        decode(msg),
        Err(SketchError::IndexOutOfRange { .. })
    ));
    let mut msg = good.clone();
    msg.min = Some(0.02);
    assert!(matches!(decode(msg), Err(SketchError::InvalidSummary(_))));
    let mut msg = good.clone();
    msg.max = None;
    assert!(matches!(decode(msg), Err(SketchError::InvalidSummary(_))));
    let mut msg = good;
    msg.sum = Some(f64::NAN);
    assert!(matches!(decode(msg), Err(SketchError::InvalidSummary(_))));
}
