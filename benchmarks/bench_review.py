"""The review stage's estimation at the user's scale, on synthetic probabilities: 100,000 val/test rows × 96
classes (5% planted label errors, one overlapping pair), cleanlab's label issues + per-class noise + the 20 most
confused pairs with their merge-gain bootstrap (2,000 resamples) — timed and its peak memory measured.

    python benchmarks/bench_review.py [--rows 100000] [--classes 96] [--out benchmarks/results/review_cpu.json]

Target (issue 32): ≤ 60 s and ≤ 2 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=96)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "review_cpu.json"))
    args = ap.parse_args()
    from twohead.review.issues import accuracy_without, find_issues
    from twohead.review.pairs import confusable_pairs

    rng = np.random.default_rng(0)
    n, k = args.rows, args.classes
    true = rng.integers(0, k, n)
    probs = rng.dirichlet(np.full(k, 0.1), size=n).astype(np.float32)
    probs[np.arange(n), true] += rng.uniform(1.0, 4.0, size=n).astype(np.float32)
    mixed = np.isin(true, (3, 7))
    avg = (probs[mixed, 3] + probs[mixed, 7]) / 2
    probs[mixed, 3], probs[mixed, 7] = avg, avg * rng.uniform(0.8, 1.2, mixed.sum()).astype(np.float32)
    probs /= probs.sum(1, keepdims=True)
    given = true.copy()
    planted = rng.choice(n, size=n // 20, replace=False)
    given[planted] = (true[planted] + rng.integers(1, k, size=len(planted))) % k
    names = [f"c{i}" for i in range(k)]
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    res = find_issues(given, probs, names)
    t1 = time.perf_counter()
    pred = probs.argmax(1)
    pairs = confusable_pairs(given, pred, probs, names, top=20)
    t2 = time.perf_counter()
    acc_without = accuracy_without(pred == given, res.flagged)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    hits = np.isin(res.flagged, planted)
    out = {"rows": n, "classes": k, "planted": len(planted), "flagged": int(len(res.flagged)),
           "recall_planted": float(hits.sum() / len(planted)), "precision": float(hits.mean()),
           "estimated_wrong": res.estimated_issues, "label_issues_s": round(t1 - t0, 2),
           "pairs_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2), "peak_rss_mb": round(peak),
           "rss_before_mb": round(base_rss), "top_pair": [pairs.iloc[0]["a"], pairs.iloc[0]["b"]],
           "acc": float((pred == given).mean()), "acc_without_flagged": acc_without}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
