"""Generates the change-point benchmark series and compares slo with ruptures on it.

generate OUT.csv: 10,000 per-minute p99s (ms) with steps at 2500 (+40%), 6000 (+25%) and
a bump 8000-8200 (x2.5), log-normal noise (sd 8%), seed 42.
compare SERIES.csv OURS_JSON: runs ruptures' Binseg (l2 cost, BIC-like penalty) and prints
both timings, the change points and how far each of ours is from theirs. (ruptures' PELT
took 412 s on this series on these 2 cores, so it is left out.)
"""
import json
import sys
import time

import numpy as np
import ruptures as rpt

TRUE = [2500, 6000, 8000, 8200]


def generate(path):
    rng = np.random.default_rng(42)
    n = 10_000
    level = np.full(n, 420.0)
    level[2500:] *= 1.40
    level[6000:] *= 1.25
    level[8000:8200] *= 2.5
    x = level * np.exp(rng.normal(0.0, 0.08, n))
    np.savetxt(path, x, fmt="%.4f")


def timed(f, runs=5):
    times = []
    out = None
    for _ in range(runs):
        t = time.perf_counter()
        out = f()
        times.append((time.perf_counter() - t) * 1e3)
    return sorted(times)[len(times) // 2], out


def compare(path, ours_json):
    x = np.loadtxt(path)
    ours = json.loads(ours_json)
    sigma = np.std(np.diff(x)) / np.sqrt(2)
    pen = 2 * np.log(len(x)) * sigma**2 * 3
    binseg_ms, binseg = timed(lambda: rpt.Binseg(model="l2", min_size=3, jump=1).fit(x).predict(pen=pen)[:-1])

    def dist(a, b):
        return [min(abs(p - q) for q in b) if b else None for p in a]

    print(f"points: {len(x)}  true change points: {TRUE}")
    print(f"slo E-Divisive + t-test: {ours['median_ms']:.1f} ms  -> {ours['change_points']}")
    print(f"ruptures Binseg (l2):     {binseg_ms:.1f} ms  -> {binseg}")
    print(f"time ratio slo/Binseg: {ours['median_ms'] / binseg_ms:.3f}")
    print(f"distance of each slo point to the nearest Binseg point: {dist(ours['change_points'], binseg)}")
    print(f"distance of each true point to the nearest slo point:   {dist(TRUE, ours['change_points'])}")


if __name__ == "__main__":
    if sys.argv[1] == "generate":
        generate(sys.argv[2])
    else:
        compare(sys.argv[2], sys.argv[3])
