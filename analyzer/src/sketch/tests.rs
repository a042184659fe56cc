use proptest::prelude::*;

use super::*;

fn exact(sorted: &[f64], q: f64) -> f64 {
    sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
}

fn sketch_of(values: &[f64]) -> Sketch {
    let mut s = Sketch::new();
    for v in values {
        s.add(*v);
    }
    s
}

/// Latency-like values: log-uniform from 10 µs to 10 minutes, plus exact zeros.
fn latency() -> impl Strategy<Value = f64> {
    prop_oneof![
        20 => (-2.0f64..5.8).prop_map(|e| 10f64.powf(e)),
        1 => Just(0.0),
    ]
}

const QUANTILES: [f64; 7] = [0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0];

proptest! {
    // A fixed seed: the same cases on every run and in CI (a failure is reproducible).
    #![proptest_config(ProptestConfig {
        cases: 400,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x510),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_quantile_is_within_the_relative_error_bound(values in prop::collection::vec(latency(), 1..3000)) {
        let s = sketch_of(&values);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for q in QUANTILES {
            let want = exact(&sorted, q);
            let got = s.quantile(q).unwrap();
            let tolerance = RELATIVE_ACCURACY * want + MIN_VALUE;
            prop_assert!((got - want).abs() <= tolerance, "q={q}: got {got}, exact {want}");
        }
        prop_assert_eq!(s.count(), values.len() as u64);
    }

    #[test]
    fn merging_is_the_same_as_adding_everything_to_one(a in prop::collection::vec(latency(), 0..500),
                                                        b in prop::collection::vec(latency(), 0..500)) {
        let mut merged = sketch_of(&a);
        merged.merge(&sketch_of(&b));
        let all: Vec<f64> = a.iter().chain(&b).copied().collect();
        let one = sketch_of(&all);
        prop_assert_eq!(merged.count(), one.count());
        for q in QUANTILES {
            prop_assert_eq!(merged.quantile(q), one.quantile(q));
        }
        prop_assert!((merged.sum() - one.sum()).abs() <= 1e-9 * one.sum().abs().max(1.0));
    }

    #[test]
    fn merged_minutes_answer_the_window_within_the_bound(minutes in prop::collection::vec(prop::collection::vec(latency(), 1..200), 1..30)) {
        let mut window = Sketch::new();
        for m in &minutes {
            window.merge(&sketch_of(m));
        }
        let mut sorted: Vec<f64> = minutes.concat();
        sorted.sort_by(f64::total_cmp);
        for q in [0.5, 0.95, 0.99] {
            let want = exact(&sorted, q);
            let got = window.quantile(q).unwrap();
            prop_assert!((got - want).abs() <= RELATIVE_ACCURACY * want + MIN_VALUE);
        }
    }

    #[test]
    fn encoding_round_trips(values in prop::collection::vec(latency(), 0..1000)) {
        let s = sketch_of(&values);
        let mut bytes = Vec::new();
        s.encode(&mut bytes);
        let mut rest = &bytes[..];
        let back = Sketch::decode(&mut rest).unwrap();
        prop_assert!(rest.is_empty());
        prop_assert_eq!(back, s);
    }

    #[test]
    fn decoding_garbage_is_an_error_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut rest = &bytes[..];
        let _ = Sketch::decode(&mut rest);
    }
}

#[test]
fn empty_and_odd_inputs() {
    let mut s = Sketch::new();
    assert_eq!(s.quantile(0.99), None);
    s.add(f64::NAN);
    assert!(s.is_empty());
    s.add(-3.0);
    s.add(1e15);
    assert_eq!(s.count(), 2);
    assert_eq!(s.quantile(0.0), Some(0.0), "a negative value counts as zero");
    let top = s.quantile(1.0).unwrap();
    assert!((top - MAX_VALUE).abs() <= RELATIVE_ACCURACY * MAX_VALUE, "{top}");
}

#[test]
fn bucket_count_is_bounded_whatever_the_range() {
    let mut s = Sketch::new();
    s.add(MIN_VALUE * 1.0001);
    s.add(f64::MAX);
    assert!(s.counts.len() < 2200, "{} buckets", s.counts.len());
}

#[test]
fn a_typical_minute_encodes_small() {
    // 2,000 requests between 200 ms and 20 s.
    let values: Vec<f64> = (0..2000).map(|i| 200.0 * 100f64.powf(i as f64 / 2000.0)).collect();
    let mut bytes = Vec::new();
    sketch_of(&values).encode(&mut bytes);
    assert!(bytes.len() < 700, "{} bytes", bytes.len());
}

#[test]
fn count_at_or_below_follows_the_buckets() {
    let s = sketch_of(&[1.0, 2.0, 3.0, 100.0, 1000.0]);
    assert_eq!(s.count_at_or_below(0.5), 0);
    assert_eq!(s.count_at_or_below(3.1), 3);
    assert_eq!(s.count_at_or_below(5000.0), 5);
}
