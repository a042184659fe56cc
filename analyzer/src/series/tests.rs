use std::collections::BTreeMap;

use super::*;
use crate::changepoint::Config;

/// `n` requests in a minute whose durations spread around `ms` (1 in 50 at 3x).
fn minute(n: u64, ms: f64) -> Cell {
    let mut c = Cell::default();
    for i in 0..n {
        let v = if i % 50 == 0 { ms * 3.0 } else { ms * (0.8 + 0.4 * (i % 7) as f64 / 6.0) };
        c.duration.add(v);
        c.count += 1;
    }
    c
}

fn minutes(levels: &[(u64, f64)]) -> BTreeMap<i64, Cell> {
    levels.iter().enumerate().map(|(i, (n, ms))| (i as i64 * MINUTE_NS, minute(*n, *ms))).collect()
}

#[test]
fn thin_traffic_widens_the_buckets_and_may_be_too_little() {
    // 30 requests a minute: a minute's p99 would be its maximum; 5-minute buckets hold 150.
    let s = Series::from_minutes(&minutes(&vec![(30, 400.0); 60]));
    assert_eq!(s.width, 5 * MINUTE_NS);
    assert_eq!(s.buckets.len(), 12);
    // 3 requests a minute for half an hour: even hour buckets are thin, and there are few.
    let s = Series::from_minutes(&minutes(&vec![(3, 400.0); 30]));
    assert!(s.buckets.len() < MIN_BUCKETS, "{} buckets of {} min", s.buckets.len(), s.width / MINUTE_NS);
}

#[test]
fn partial_buckets_at_the_edges_are_dropped() {
    let mut levels = vec![(20, 9000.0)];
    levels.extend(vec![(2000, 400.0); 20]);
    levels.push((500, 400.0));
    let s = Series::from_minutes(&minutes(&levels));
    assert_eq!(s.buckets.len(), 20);
    assert_eq!(s.buckets[0].start, MINUTE_NS);
}

#[test]
fn a_step_that_stays_is_an_ongoing_regression() {
    let mut levels = vec![(2000, 400.0); 15];
    levels.extend(vec![(2000, 1400.0); 15]);
    let s = Series::from_minutes(&minutes(&levels));
    let p99 = s.quantiles(0.99, |c| &c.duration);
    let f = find_regression(&s, &p99, &Config::default()).unwrap();
    assert_eq!(f.point.index, 15);
    assert!(f.ongoing);
    assert_eq!(f.regressed, (15, 30));
}

#[test]
fn a_bump_that_recovered_is_found_and_steady_traffic_is_not() {
    let mut levels = vec![(2000, 400.0); 12];
    levels.extend(vec![(2000, 1200.0); 4]);
    levels.extend(vec![(2000, 400.0); 14]);
    let s = Series::from_minutes(&minutes(&levels));
    let p99 = s.quantiles(0.99, |c| &c.duration);
    let f = find_regression(&s, &p99, &Config::default()).unwrap();
    assert_eq!((f.point.index, f.regressed), (12, (12, 16)));
    assert!(!f.ongoing);
    let flat = Series::from_minutes(&minutes(&vec![(2000, 400.0); 30]));
    let p99 = flat.quantiles(0.99, |c| &c.duration);
    assert!(find_regression(&flat, &p99, &Config::default()).is_none());
}
