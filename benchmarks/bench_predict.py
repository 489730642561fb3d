"""Inference throughput of `twohead predict` (the Predictor) on the demo model, vs training samples/s.

Run after `dvc repro` (it reads models/stage2 and the demo table; paths from dvc.yaml):

    python benchmarks/bench_predict.py [--rows 4000] [--repeats 3] [--batch-size 64] [--device cpu]

Reports rows/s of Predictor.predict (tokenize + batched forward + softmax + top-k; the model load is
timed apart), the median of the repeats, and the ratio to the training samples/s the last train_stage2
run measured (metrics/train_speed.json). Figures vary with machine load: repeat.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from twohead.config.layout import dvc_paths  # noqa: E402
from twohead.config.params import load_params  # noqa: E402
from twohead.data.io import read_json  # noqa: E402
from twohead.data.stream import iter_texts  # noqa: E402
from twohead.predictor import Predictor  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    layout = {k: ROOT / v for k, v in dvc_paths(ROOT).items()}
    p = load_params(ROOT / "params.yaml")
    texts = [t for chunk, _ in iter_texts(ROOT / p.predict.input, p.predict.text_column) for t in chunk]
    texts = texts[: args.rows]
    t0 = time.perf_counter()
    pred = Predictor(layout["stage2_model"], device=args.device, batch_size=args.batch_size)
    load_s = time.perf_counter() - t0
    pred.predict(texts[:256])  # warm-up
    rates = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        pred.predict(texts)
        rates.append(len(texts) / (time.perf_counter() - t0))
    out = {"rows": len(texts), "batch_size": args.batch_size, "device": str(pred.accelerator.device),
           "model_load_s": load_s, "predict_rows_per_s_median": statistics.median(rates),
           "predict_rows_per_s_all": rates}
    speed = layout["train_speed"]
    if speed.is_file():
        train = read_json(speed)["train_samples_per_second_mean"]
        out["train_samples_per_s"] = train
        out["predict_over_train"] = out["predict_rows_per_s_median"] / train
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
