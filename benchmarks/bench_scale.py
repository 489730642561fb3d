"""The pipeline at the real data's scale: a synthetic 200k-row table through prepare_labels and tokenize, one
epoch of train_stage2 on a subsample; seconds and peak RSS of each, and the projected wall-clock of the
user's full Stage 1 and Stage 2.

    python benchmarks/bench_scale.py [--rows 200000] [--train-rows 2000] [--stage1-rows 150000]
                                     [--out benchmarks/results/scale_cpu.json]

The table is the demo's 10,000 rows repeated with new ids (and a copy number appended to the text, so the
copies are distinct rows, not cross-split duplicates). Each stage runs as its own process, through its
stage script, with the project's params (paths under a temporary folder); peak RSS is that process's.
Projections: rows × epochs ÷ the measured training samples/s (this machine, this encoder), and, when
benchmarks/results/gpu_h100_deberta_base.json exists, for a DeBERTa-v3-base on an H100 (bf16, seq 256).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from twohead.config.layout import dvc_paths  # noqa: E402
from twohead.pipeline.stage_main import flag  # noqa: E402

WRAP = ("import atexit, resource, runpy, sys; "
        "atexit.register(lambda: print('PEAK_RSS_MB=%.0f' % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss"
        " / 1024), file=sys.stderr)); sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def stage(work: Path, script: str, paths_cls) -> dict:
    layout = dvc_paths(ROOT)
    args = [a for f in dataclasses.fields(paths_cls) for a in (flag(f.name), str(work / layout[f.name]))]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAP, str(ROOT / "stages" / f"{script}.py"), *args], cwd=work,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed:\n{proc.stderr[-3000:]}")
    rss = [ln.split("=")[1] for ln in proc.stderr.splitlines() if ln.startswith("PEAK_RSS_MB=")]
    return {"seconds": seconds, "peak_rss_mb": float(rss[-1]) if rss else None}


def hms(seconds: float) -> str:
    h, rem = divmod(int(seconds), 3600)
    return f"{h}h{rem // 60:02d}m"


def main() -> None:
    from twohead.pipeline.prepare_labels import PreparePaths
    from twohead.pipeline.tokenize import TokenizePaths
    from twohead.pipeline.train_stage2 import TrainPaths

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--train-rows", type=int, default=2000, help="rows of the one measured training epoch")
    ap.add_argument("--stage1-rows", type=int, default=150_000, help="the user's Stage-1 rows, for the projection")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale_cpu.json"))
    args = ap.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    demo = pd.read_csv(ROOT / params["data"]["raw_path"], dtype=str, keep_default_na=False)
    copies = -(-args.rows // len(demo))
    big = pd.concat([demo.assign(id=demo["id"] + f"-r{k}", text=demo["text"] + f" [{k}]") for k in range(copies)])
    big = big.iloc[:args.rows]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        raw = work / "raw.parquet"
        big.to_parquet(raw, index=False)
        params["data"]["raw_path"] = str(raw)
        params["model"]["stage1_checkpoint"] = str(ROOT / params["model"]["stage1_checkpoint"])
        params["train"].update({"max_train_rows": args.train_rows, "epochs": 1})
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        res = {"rows": len(big)}
        res["prepare_labels"] = stage(work, "prepare_labels", PreparePaths)
        res["tokenize"] = stage(work, "tokenize_text", TokenizePaths)
        res["train_one_epoch_subsample"] = stage(work, "train_stage2", TrainPaths)
        layout = dvc_paths(ROOT)
        speed = json.loads((work / layout["train_speed"]).read_text())
        data = json.loads((work / layout["data_metrics"]).read_text())
    sps = speed["train_samples_per_second_mean"]
    train_rows = int(data["splits"]["train"]["rows"])
    s1 = params["stage1"]["epochs"] * args.stage1_rows
    res.update({"train_samples_per_s": sps, "device": speed.get("device"), "stage2_train_rows": train_rows,
                "projection_here": {"stage1_s": s1 / sps, "stage2_s": 5 * train_rows / sps}})
    gpu = ROOT / "benchmarks" / "results" / "gpu_h100_deberta_base.json"
    if gpu.is_file():
        rows = [r for r in json.loads(gpu.read_text())["results"] if r.get("seq") == 256 and r.get("precision")
                == "bf16" and not r.get("compile") and "samples_per_s" in r]
        if rows:
            g = rows[0]["samples_per_s"]
            res["projection_h100_deberta_v3_base_bf16_seq256"] = {"samples_per_s": g, "stage1_s": s1 / g,
                                                                 "stage2_s": 5 * train_rows / g}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"{len(big):,} rows")
    print("| step | seconds | peak RSS MB |\n|---|---|---|")
    for k in ("prepare_labels", "tokenize", "train_one_epoch_subsample"):
        print(f"| {k} | {res[k]['seconds']:.1f} | {res[k]['peak_rss_mb']:.0f} |")
    print(f"training: {sps:.0f} samples/s here ({speed.get('device')}, this project's encoder)")
    p = res["projection_here"]
    print(f"projected here: Stage 1 ({args.stage1_rows:,} rows x {params['stage1']['epochs']} epochs)"
          f" {hms(p['stage1_s'])}, Stage 2 ({train_rows:,} train rows x 5 epochs) {hms(p['stage2_s'])}")
    if "projection_h100_deberta_v3_base_bf16_seq256" in res:
        q = res["projection_h100_deberta_v3_base_bf16_seq256"]
        print(f"projected, DeBERTa-v3-base on one H100 (bf16, seq 256, {q['samples_per_s']:.0f} samples/s): Stage 1"
              f" {hms(q['stage1_s'])}, Stage 2 {hms(q['stage2_s'])}")


if __name__ == "__main__":
    main()
