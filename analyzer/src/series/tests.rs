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
    let f = found(&levels).unwrap();
    assert_eq!(f.point.index, 15);
    assert!(f.ongoing);
    assert_eq!(f.regressed, (15, 30));
}

#[test]
fn a_bump_that_recovered_is_found_and_steady_traffic_is_not() {
    let mut levels = vec![(2000, 400.0); 12];
    levels.extend(vec![(2000, 1200.0); 4]);
    levels.extend(vec![(2000, 400.0); 14]);
    let f = found(&levels).unwrap();
    assert_eq!((f.point.index, f.regressed), (12, (12, 16)));
    assert!(!f.ongoing);
    assert!(found(&vec![(2000, 400.0); 30]).is_none());
}

fn found(levels: &[(u64, f64)]) -> Option<Found> {
    let s = Series::from_minutes(&minutes(levels));
    let p99 = s.quantiles(0.99, |c| &c.duration);
    find_regression(&s, &p99, &Config::default())
}

#[test]
fn two_minutes_of_a_doubled_p99_are_a_regression_going_on() {
    let mut levels = vec![(2000, 400.0); 15];
    levels.extend(vec![(2000, 800.0); 2]);
    // Too few buckets after the step for a change point; the requests settle it.
    let s = Series::from_minutes(&minutes(&levels));
    let p99 = s.quantiles(0.99, |c| &c.duration);
    assert!(changepoint::detect(&p99, &Config::default()).is_empty());
    let f = edge::find_ongoing(&s, &p99, &Config::default()).unwrap();
    assert_eq!((f.point.index, f.ongoing), (15, true));
    let f = found(&levels).unwrap();
    assert_eq!((f.point.index, f.regressed, f.ongoing), (15, (15, 17), true));
    // One minute is enough at this traffic.
    assert_eq!(found(&levels[..16]).map(|f| f.point.index), Some(15));
}

#[test]
fn peaks_the_history_already_had_are_not_a_regression() {
    // A burst minute every four minutes, 1.5x the p99; the newest minute is one of them.
    let levels: Vec<(u64, f64)> = (0..21).map(|i| if i % 4 == 0 { (3000, 600.0) } else { (2000, 400.0) }).collect();
    assert!(found(&levels).is_none(), "{:?}", found(&levels));
    // The same without the earlier bursts: the last minute is new, and found.
    let mut calm = vec![(2000, 400.0); 20];
    calm.push((3000, 600.0));
    assert_eq!(found(&calm).map(|f| f.point.index), Some(20));
}

#[test]
fn a_service_that_got_faster_has_no_regression() {
    // Slow for 15 minutes (with a slower rollout minute at its end), then fast.
    let mut levels = vec![(2000, 800.0); 14];
    levels.push((2000, 880.0));
    levels.extend(vec![(2000, 400.0); 15]);
    assert!(found(&levels).is_none(), "{:?}", found(&levels));
    let s = Series::from_minutes(&minutes(&levels));
    let p99 = s.quantiles(0.99, |c| &c.duration);
    let (at, before, after) = find_improvement(&p99, &Config::default()).unwrap();
    assert_eq!(at, 15);
    assert!(after < before * 0.6, "{before} -> {after}");
}

#[test]
fn an_earlier_episode_is_the_onset_and_a_later_one_keeps_it_going() {
    // Bump at 12-15, recovery, then a second rise still on at the end.
    let mut levels = vec![(2000, 400.0); 12];
    levels.extend(vec![(2000, 1200.0); 4]);
    levels.extend(vec![(2000, 400.0); 6]);
    levels.extend(vec![(2000, 1200.0); 3]);
    let f = found(&levels).unwrap();
    assert_eq!((f.point.index, f.ongoing, f.regressed), (12, true, (12, 25)));
}
