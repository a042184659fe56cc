#!/usr/bin/env python3
"""Merges `slo eval --format json` outputs of runs split by seed (or scenario) into the
table BENCHMARKS.md shows, with the misses listed. Usage: eval_merge.py A.json B.json ...

Two evals over disjoint seeds use both cores of a 2-core machine (the simulation of one
run is single-threaded); the figures are the same as one `slo eval` over them all."""
import json
import sys


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else None


def row(name, runs):
    cause = [r for r in runs if r["has_cause"]]
    pct = lambda k: f"{100 * sum(r[k] for r in cause) / len(cause):.0f}%" if cause else "-"
    onset = median([r["onset_error_s"] for r in runs if r["onset_error_s"] is not None])
    return (f"| {name} | {len(runs)} | {sum(r['detected'] for r in runs)} | {pct('top1')} | {pct('top3')} | "
            f"{sum(r['decoy_first'] for r in runs)} | {sum(1 for r in runs if not r['has_cause'] and r['detected'])} | "
            f"{'-' if onset is None else f'{onset:.0f}'} | {median([r['explain_ms'] for r in runs]):.0f} |")


def main():
    runs = [r for path in sys.argv[1:] for r in json.load(open(path))["runs"]]
    names = list(dict.fromkeys(r["scenario"] for r in runs))
    print("| scenario | runs | detected | top-1 | top-3 | decoy first | false alarm | median onset error s | median explain ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in names:
        print(row(n, [r for r in runs if r["scenario"] == n]))
    print(row("**all**", runs))
    cause = [r for r in runs if r["has_cause"]]
    print(f"\ntop-1 {sum(r['top1'] for r in cause)} of {len(cause)} runs with a cause; "
          f"control quiet {sum(1 for r in runs if not r['has_cause'] and not r['detected'])} of "
          f"{sum(1 for r in runs if not r['has_cause'])}")
    for r in runs:
        if (r["has_cause"] and not r["top1"]) or (not r["has_cause"] and r["detected"]):
            print(f"miss: {r['scenario']} seed {r['seed']}: first {r['ranked_first']}")


if __name__ == "__main__":
    main()
