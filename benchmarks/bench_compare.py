"""`twohead compare` at the real user's scale: 16,000 test rows × 96 classes × 3 frequency bands, 2,000 paired
bootstrap resamples (the paired comparison plus the detectable-difference interval, as the command runs them).

    python benchmarks/bench_compare.py [--rows 16000] [--classes 96] [--resamples 2000] [--json F]

Prints wall-clock seconds and the process's peak RSS (MB); the target is ≤ 10 s and ≤ 500 MB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from twohead.experiments.stats import MISSING, Coded, detectable_difference, paired_compare  # noqa: E402


def synthetic(n: int, k: int, seed: int) -> tuple[Coded, Coded]:
    """Zipf-like class frequencies, 10% Decline rows, two runs at ~80% and ~81% Task2 accuracy."""
    rng = np.random.default_rng(seed)
    freq = 1 / np.arange(1, k + 1)
    y2 = rng.choice(k, size=n, p=freq / freq.sum())
    y1 = (rng.random(n) > 0.1).astype(np.int64)
    y2 = np.where(y1 == 0, MISSING, y2)

    def run(acc, s):
        r = np.random.default_rng(s)
        p2 = np.where(r.random(n) < acc, y2, r.integers(0, k, n)).clip(0)
        p1 = np.where(r.random(n) < 0.95, y1, 1 - y1)
        yc = np.where(y1 == 0, k, y2)
        pc = np.where(p1 == 0, k, p2)
        conf = np.clip(np.where(p2 == y2, 0.8, 0.4) + r.normal(0, 0.1, n), 0, 1)
        return Coded(y1, p1, y2, p2, yc, pc, k, conf)

    return run(0.80, seed + 1), run(0.81, seed + 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16000)
    ap.add_argument("--classes", type=int, default=96)
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    base, other = synthetic(args.rows, args.classes, 0)
    bands = {b: list(range(i, args.classes, 3)) for i, b in enumerate(("High", "Mid", "Low"))}
    t0 = time.perf_counter()
    res = paired_compare(base, other, bands, args.resamples, seed=0)
    half = detectable_difference(base, args.resamples, seed=0)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
           "rows": args.rows, "classes": args.classes, "bands": 3, "resamples": args.resamples,
           "seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb, 1),
           "task2_acc_delta": res["task2_acc"]["delta"], "task2_acc_ci": [res["task2_acc"]["ci_low"],
                                                                          res["task2_acc"]["ci_high"]],
           "detectable_task2_acc": half}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
