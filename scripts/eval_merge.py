#!/usr/bin/env python3
"""Merges `slo eval --format json` outputs of runs split by seed (or scenario) into the
table BENCHMARKS.md shows, with the misses listed. Usage: eval_merge.py A.json B.json ...

Two evals over disjoint seeds use both cores of a 2-core machine (the simulation of one
run is single-threaded); the figures are the same as one `slo eval` over them all: top-1
over the runs with a cause at 1, 2, 3, 5 and 10 minutes after the onset and at the end,
false alarms at any moment of a run without a cause, the first right answer (median / p90
seconds after the onset) and flips per run."""
import json
import math
import sys

OFFSETS = [1, 2, 3, 5, 10]


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else None


def at(run, minutes):
    """The answer `minutes` after the onset (the end when the run ended sooner, or None)."""
    t = run["timeline"]
    if minutes is None:
        return t[-1]
    return next((p for p in t if p["offset_s"] >= minutes * 60), t[-1])


def effect(r):
    """Whether the run's fault measurably moved p99 (older outputs: an onset from the data)."""
    return r["has_cause"] and r.get("effect", r["onset_from"] == "data")


def row(name, runs):
    cause = [r for r in runs if effect(r)]
    no_effect = sum(1 for r in runs if r["has_cause"] and not effect(r))
    pct = lambda n: f"{100 * n / len(cause):.0f}%" if cause else "-"
    top1 = [pct(sum(at(r, m)["top1"] for r in cause)) for m in OFFSETS + [None]]
    firsts = sorted(r["first_top1_s"] for r in cause if r["first_top1_s"] is not None)
    p = lambda q: firsts[min(len(firsts), max(1, math.ceil(len(firsts) * q))) - 1]
    first = f"{p(0.5)} / {p(0.9)}" if firsts else "-"
    flips = sum(r["flips"] for r in runs) / len(runs)
    return (f"| {name} | {len(runs)} | " + " | ".join(top1) + f" | {pct(sum(r['top3'] for r in cause))} | "
            f"{sum(r['decoy_first'] for r in runs)} | {sum(r['false_alarm'] for r in runs)} | {no_effect} | {first} | "
            f"{sum(1 for r in cause if r['first_top1_s'] is None)} | {flips:.2f} | "
            f"{median([r['explain_ms'] for r in runs]):.0f} |")


def main():
    runs = [r for path in sys.argv[1:] for r in json.load(open(path))["runs"]]
    names = list(dict.fromkeys(r["scenario"] for r in runs))
    cols = [f"+{m} min" for m in OFFSETS] + ["end"]
    print("| scenario | runs | " + " | ".join(cols) + " | top-3 end | decoy first | false alarm | no effect | "
          "first top-1 s (median / p90) | never | flips/run | explain ms |")
    print("|---" * (len(cols) + 10) + "|")
    for n in names:
        print(row(n, [r for r in runs if r["scenario"] == n]))
    print(row("**all**", runs))
    cause = [r for r in runs if effect(r)]
    quiet = [r for r in runs if not r["has_cause"]]
    print(f"\ntop-1 at the end {sum(r['top1'] for r in cause)} of {len(cause)} runs whose fault moved p99; "
          f"runs without a cause quiet at every moment {sum(not r['false_alarm'] for r in quiet)} of {len(quiet)}")
    levels = []
    for level in ["high", "medium", "low"]:
        ps = [p for r in cause for p in r["timeline"]
              if p["detected"] and p["ranked_first"] and p.get("confidence") == level]
        if ps:
            right = sum(p["top1"] for p in ps)
            levels.append(f"{level} {right} of {len(ps)} ({100 * right / len(ps):.1f}%)")
    if levels:
        print("answers right (top-1) by their confidence, every minute: " + ", ".join(levels))
    for r in runs:
        wrong = [p["offset_s"] // 60 for p in r["timeline"] if (p["detected"] and not p["top1"]) or
                 (effect(r) and not p["detected"])]
        if wrong:
            firsts = sorted({p["ranked_first"] for p in r["timeline"] if p["detected"] and not p["top1"]} - {None})
            print(f"miss: {r['scenario']} seed {r['seed']} at minutes {wrong}: {', '.join(firsts) or 'not detected'}")


if __name__ == "__main__":
    main()
