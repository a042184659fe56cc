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

/// `n` requests in a minute spread smoothly up to twice `ms` (its p99 about 1.94x), and
/// `slow` more at 2.25x: a minute with a burst of slow requests.
fn smooth(n: u64, ms: f64, slow: u64) -> Cell {
    let mut c = Cell::default();
    for i in 0..n {
        c.duration.add(ms * (0.5 + 1.5 * (i as f64 / n as f64).powi(4)));
    }
    for _ in 0..slow {
        c.duration.add(ms * 2.25);
    }
    c.count = n + slow;
    c
}

/// The regression of minutes of 2,000 [`smooth`] requests, each `(ms, slow)`.
fn found_smooth(levels: &[(f64, u64)]) -> Option<Found> {
    let minutes: BTreeMap<i64, Cell> =
        levels.iter().enumerate().map(|(i, (ms, slow))| (i as i64 * MINUTE_NS, smooth(2000, *ms, *slow))).collect();
    let s = Series::from_minutes(&minutes);
    let p99 = s.quantiles(0.99, |c| &c.duration);
    find_regression(&s, &p99, &Config::default())
}

/// A long rise is compared with the history's worst stretch as long as it, not with its
/// single slowest minute: 1.18x for 15 minutes is a regression though two minutes of the
/// history had a burst of slow requests that put their own p99 1.16x up (as a scale-down
/// in `hpa-scale-down` was called no change); a stretch of the history as slow as the
/// rise is its normal.
#[test]
fn a_long_small_rise_is_judged_against_stretches_as_long_as_it() {
    let found = found_smooth;
    let mut levels = vec![(400.0, 0); 14];
    levels[3] = (400.0, 30);
    levels[9] = (400.0, 30);
    levels.extend(vec![(472.0, 0); 15]);
    let f = found(&levels).expect("a sustained 1.18x rise");
    assert_eq!((f.point.index, f.ongoing, f.material), (14, true, true));
    // Ten minutes as slow as the rise at the start of a longer history: that stretch is the
    // yardstick (its p99, within the sketch's accuracy), and the rise is no regression.
    let mut normal = vec![(472.0, 0); 10];
    normal.extend(vec![(400.0, 0); 20]);
    normal.extend(vec![(472.0, 0); 15]);
    assert!(found(&normal).is_none(), "{:?}", found(&normal));
    let minutes: BTreeMap<i64, Cell> =
        normal.iter().enumerate().map(|(i, (ms, slow))| (i as i64 * MINUTE_NS, smooth(2000, *ms, *slow))).collect();
    let s = Series::from_minutes(&minutes);
    let p99 = s.quantiles(0.99, |c| &c.duration);
    let slow = p99[0];
    let stretch = worst_stretch(&s, &p99, 30, 15);
    assert!((stretch / slow - 1.0).abs() < 0.02, "{stretch} vs the slow minutes' {slow}");
    // A one-bucket rise is compared with the slowest single bucket.
    assert_eq!(worst_stretch(&s, &p99, 30, 1), p99[..30].iter().copied().fold(f64::MIN, f64::max));
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

#[test]
fn a_small_short_rise_is_watched_until_it_is_large_or_lasts() {
    // 1.15x for two minutes at the end: beyond normal at this traffic, but what a rollout's
    // capacity dip or an autoscaler a step behind does; watched, not a regression.
    let mut levels = vec![(2000, 400.0); 15];
    levels.extend(vec![(2000, 460.0); 2]);
    let f = found(&levels).expect("the rise is seen");
    assert_eq!((f.point.index, f.ongoing, f.material), (15, true, false));
    // The same rise for a third minute is one.
    levels.push((2000, 460.0));
    let f = found(&levels).unwrap();
    assert_eq!((f.point.index, f.material), (15, true));
    // 1.3x is one from its second minute, 1.6x from its first.
    let mut levels = vec![(2000, 400.0); 15];
    levels.push((2000, 520.0));
    assert!(!found(&levels).unwrap().material);
    levels.push((2000, 520.0));
    assert!(found(&levels).unwrap().material);
    let mut levels = vec![(2000, 400.0); 15];
    levels.push((2000, 640.0));
    assert!(found(&levels).unwrap().material);
    // A short small bump that came back down stays watched.
    let mut levels = vec![(2000, 400.0); 15];
    levels.extend(vec![(2000, 460.0); 2]);
    levels.extend(vec![(2000, 400.0); 6]);
    assert!(found(&levels).is_none_or(|f| !f.material), "{:?}", found(&levels));
}

/// Over many shapes (steps, bumps, episodes, in any order), whatever is found keeps its
/// parts in order: a later episode settled back past its baseline's start once sliced
/// out of bounds.
#[test]
fn every_proposal_settles_into_ordered_parts() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |k: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % k
    };
    let mut shapes = Vec::new();
    for _ in 0..1000 {
        let mut levels = Vec::new();
        while levels.len() < 30 {
            let ms = [400.0, 460.0, 520.0, 800.0, 1200.0][next(5) as usize];
            for _ in 0..1 + next(6) {
                let jitter = 0.9 + next(21) as f64 / 100.0;
                levels.push((1000 + 200 * next(10), ms * jitter));
            }
        }
        levels.truncate(30);
        shapes.push(levels);
    }
    // A queue that grows without end (a pool that cannot grow): change points all along
    // the ramp, each later one's run of slow buckets reaching back to the ramp's start.
    let mut ramp = vec![(1400u64, 400.0); 12];
    ramp.extend((0..16).map(|i| (1400u64, 750.0 + 180.0 * i as f64)));
    shapes.push(ramp);
    for levels in shapes {
        if let Some(f) = found(&levels) {
            let ordered = f.baseline.0 <= f.baseline.1
                && f.baseline.1 == f.regressed.0
                && f.regressed.0 < f.regressed.1
                && f.regressed.1 <= levels.len();
            assert!(ordered, "{levels:?}: {f:?}");
        }
    }
}

/// A rise in two steps with a bucket just short between them is one onset; a single
/// minute with a burst of slow requests two minutes before the rise, with a normal one
/// between, is not part of it (`oom-kill-loop` seed 10: 13.0 s at 14:10, 11.3 s at 14:11,
/// then 27-67 s from the first kill at 14:12).
#[test]
fn the_onset_steps_back_over_a_bucket_just_short_but_not_over_a_normal_one() {
    let found = found_smooth;
    let mut levels = vec![(400.0, 0); 12];
    levels.extend([(400.0, 40), (400.0, 10)]);
    levels.extend(vec![(900.0, 0); 4]);
    assert_eq!(found(&levels).map(|f| f.point.index), Some(12), "a step, one just short, the rise: one onset");
    levels[13] = (392.0, 0);
    assert_eq!(found(&levels).map(|f| f.point.index), Some(14), "a normal minute between");
}
