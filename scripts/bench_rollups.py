"""Per-minute p99 by (service, model): slo's rollups against DuckDB over the same Parquet
segments, exact (quantile_cont) and approximate (approx_quantile, a t-digest), in one run.

usage: bench_rollups.py DATA_DIR OURS.csv OURS_JSON
Prints each one's time, the time ratios, and the relative error of ours and of DuckDB's
approximation against DuckDB's exact p99 (median and max over all cells).
"""
import json
import sys
import time

import duckdb


def main(data_dir, ours_csv, ours_json):
    ours_t = json.loads(ours_json)["median_s"]
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    src = f"read_parquet('{data_dir}/requests/**/*.parquet', hive_partitioning = false)"
    q = """SELECT service, model, epoch_ns(date_trunc('minute', "time")) AS minute_ns, {agg} AS p99
           FROM {src} GROUP BY ALL"""

    def run(agg, runs=3):
        times, out = [], None
        for _ in range(runs):
            t = time.perf_counter()
            out = con.execute(q.format(agg=agg, src=src)).fetchall()
            times.append(time.perf_counter() - t)
        return sorted(times)[len(times) // 2], {(r[0], r[1], r[2]): r[3] for r in out}

    exact_t, exact = run("quantile_cont(duration_ms, 0.99)")
    approx_t, approx = run("approx_quantile(duration_ms, 0.99)")
    ours = {}
    with open(ours_csv) as f:
        next(f)
        for line in f:
            s, m, minute, p = line.rstrip("\n").rsplit(",", 3)
            ours[(s, m, int(minute))] = float(p)

    def errors(got):
        e = sorted(abs(got[k] - v) / v for k, v in exact.items() if k in got and v > 0)
        return e[len(e) // 2], e[-1], len(e)

    missing = [k for k in exact if k not in ours]
    print(f"cells: {len(exact)} (ours {len(ours)}, missing {len(missing)})")
    print(f"slo rollups (merge + p99 of every cell): {ours_t:.3f} s")
    print(f"DuckDB quantile_cont (exact):           {exact_t:.3f} s   ratio slo/exact  {ours_t / exact_t:.4f}")
    print(f"DuckDB approx_quantile (t-digest):      {approx_t:.3f} s   ratio slo/approx {ours_t / approx_t:.4f}")
    m, x, n = errors(ours)
    print(f"slo relative error vs exact:    median {m:.5f}  max {x:.5f}  ({n} cells)")
    m, x, n = errors(approx)
    print(f"DuckDB approx error vs exact:   median {m:.5f}  max {x:.5f}  ({n} cells)")
    over = sum(1 for k, v in exact.items() if k in ours and v > 0 and abs(ours[k] - v) / v > 0.01)
    print(f"slo cells more than 1% from exact: {over} ({over / max(len(exact), 1):.4f})")

    # The worst cell against the two order statistics quantile_cont interpolates between:
    # the sketch promises 1% of the value at its rank, not of an interpolation.
    s, m, minute = max((k for k in exact if k in ours and exact[k] > 0), key=lambda k: abs(ours[k] - exact[k]) / exact[k])
    vals = [r[0] for r in con.execute(
        f"""SELECT duration_ms FROM {src} WHERE service = ? AND model = ?
            AND epoch_ns(date_trunc('minute', "time")) = ? ORDER BY 1""", [s, m, minute]).fetchall()]
    r = 0.99 * (len(vals) - 1)
    lo, hi = vals[int(r)], vals[min(int(r) + 1, len(vals) - 1)]
    near = min(abs(ours[(s, m, minute)] - lo) / lo, abs(ours[(s, m, minute)] - hi) / hi)
    print(f"worst cell {s}/{m} at {minute}: {len(vals)} requests, exact {exact[(s, m, minute)]:.1f} "
          f"between order statistics {lo:.1f} and {hi:.1f}; slo {ours[(s, m, minute)]:.1f}, "
          f"{near:.5f} from the nearer one")


if __name__ == "__main__":
    main(*sys.argv[1:4])
