"""What the calibrate stage's decisions and the switches buy in Task2 accuracy on test, alone and together, over
seeds.

    python benchmarks/bench_decisions.py --out runs/decisions [--seeds 1 2 3] [--set train.lr=1e-4 ...]
        [--checkpoint DIR] [--json F] [--md F]

Per seed: prepare_labels → tokenize → train_stage2 (in its own folder, the project's params with --set
applied; --checkpoint replaces model.stage1_checkpoint, e.g. the pretrained MiniLM directory), then the kept
model's val and test logits. On val only, each decision is chosen alone and all together (the calibrate
stage's rules: temperature, class-prior correction, Decline rule); on test each is compared with the plain rule
by the paired bootstrap (2,000 resamples). The table: per decision and metric, the mean Δ over seeds with its
95% t-interval over seeds, and the per-seed bootstrap verdicts. Nothing is written outside --out.

Weight averaging (issue 31): with ``--ema 0.99 0.999`` each run also keeps an EMA of the weights per decay
(``switches.ema``); the run's own choice is disabled so the saved model stays the raw one, the averages' final weights
are saved beside it, and the table adds each EMA under the plain rule and "chosen on val" (the highest val Task2
accuracy among raw and the EMAs, as ``train.keep: last`` would keep).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from ablation_runs import set_dotted  # noqa: E402

from twohead.config.layout import dvc_paths  # noqa: E402
from twohead.config.params import DecideParams, load_params  # noqa: E402
from twohead.config.schema import label  # noqa: E402
from twohead.evaluate.decision import choose, decide  # noqa: E402
from twohead.evaluate.metrics import softmax  # noqa: E402
from twohead.experiments.stats import Coded, paired_compare, t_interval  # noqa: E402

VARIANTS = {
    "temperature only": dict(temperature=True, prior_correction=False, fixed_threshold=True),
    "prior correction only (for accuracy, the default)": dict(temperature=False, prior_correction=True,
                                                               fixed_threshold=True),
    "prior correction only (for macro-F1)": dict(temperature=False, prior_correction=True, fixed_threshold=True,
                                                 prior_objective="macro_f1"),
    "Decline threshold only": dict(temperature=False, prior_correction=False, fixed_threshold=False),
    "all three (the calibrate stage)": dict(temperature=True, prior_correction=True, fixed_threshold=False),
    "prior correction both ways (tau_min -2, for accuracy)": dict(temperature=False, prior_correction=True,
                                                                fixed_threshold=True, tau_min=-2.0),
    "all three, tau both ways": dict(temperature=True, prior_correction=True, fixed_threshold=False, tau_min=-2.0),
    "all three, rule pick_or_maxprob": dict(temperature=True, prior_correction=True, fixed_threshold=False,
                                            rule="pick_or_maxprob"),
    # issue 41: the same choices without the noise guard (each adopted however small its val gain), as before
    "Decline threshold only, unguarded": dict(temperature=False, prior_correction=False, fixed_threshold=False,
                                              noise_guard=False),
    "all three, rule pick_or_maxprob, unguarded": dict(temperature=True, prior_correction=True,
                                                       fixed_threshold=False, rule="pick_or_maxprob",
                                                       noise_guard=False),
}
SHOWN = ("task2_acc", "task2_macro_f1", "band_Low_recall", "band_Mid_recall", "task2_ece", "task1_acc",
         "decline_recall", "decline_precision", "combined_acc", "combined_macro_f1")


def train_one(seed: int, out: Path, sets: dict, checkpoint: str | None) -> tuple[Path, object]:
    from twohead.pipeline import prepare_labels, tokenize, train_stage2

    folder = out / f"s{seed}"
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    set_dotted(raw, "train.seed", seed)
    for k, v in sets.items():
        set_dotted(raw, k, v)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    p = load_params(folder / "params.yaml")
    ckpt = checkpoint or str(ROOT / p.model.stage1_checkpoint)
    p = dataclasses.replace(p, model=dataclasses.replace(p.model, stage1_checkpoint=ckpt),
                            data=dataclasses.replace(p.data, raw_path=str(ROOT / p.data.raw_path)))
    layout = dvc_paths(ROOT)

    def paths(cls):
        return cls(**{f.name: folder / layout[f.name] for f in dataclasses.fields(cls)})

    if not (folder / layout["train_metrics"]).is_file():
        if p.switches.ema:
            keep_raw_and_save_averages(folder)
        t0 = time.perf_counter()
        prepare_labels.run(p, paths(prepare_labels.PreparePaths))
        tokenize.run(p, paths(tokenize.TokenizePaths))
        train_stage2.run(p, paths(train_stage2.TrainPaths))
        print(f"seed {seed}: trained in {time.perf_counter() - t0:.0f}s", flush=True)
    return folder, p


def effects(folder: Path, p) -> dict:
    from twohead.data.prepared import read_label_info
    from twohead.train.scoring import Scorer

    layout = dvc_paths(ROOT)
    scorer = Scorer(folder / layout["stage2_model"], p.train.device, p.train.eval_batch_size)
    info = read_label_info(folder / layout["prepared"])
    names, bands = scorer.names, info.bands
    val, v1, v2 = scorer.split(folder / layout["tokenized"], "val")
    test, t1, t2 = scorer.split(folder / layout["tokenized"], "test")
    members = {b: [i for i, n in enumerate(names) if bands["class_band"][n] == b] for b in bands["names"]}
    p1, p2 = softmax(t1), softmax(t2)
    plain = Coded.from_arrays(test.labels_task1, p1[:, 1] < 0.5, test.labels_task2, p2.argmax(1), p2.max(1),
                              len(names))
    out = {}
    for name, v in VARIANTS.items():
        s = DecideParams(temperature=v["temperature"], prior_correction=v["prior_correction"],
                         prior_objective=v.get("prior_objective", "acc"), tau_min=v.get("tau_min", 0.0),
                         rule=v.get("rule", "pick_threshold"), pick_threshold=0.5 if v["fixed_threshold"] else "val",
                         noise_guard=v.get("noise_guard", True))
        dec, report = choose(v1, v2, val.labels_task1, val.labels_task2, info.class_weights["task2"]["support"], s)
        d = decide(dec, t1, t2)
        d2, dpred2, ddecline = d.p2, d.pred2, d.decline
        other = Coded.from_arrays(test.labels_task1, ddecline, test.labels_task2, dpred2,
                                  d2[np.arange(len(dpred2)), dpred2], len(names))
        out[name] = {"decision": {k: val_ for k, val_ in dec.to_dict().items() if k != "log_prior"},
                     "guard": report["guard"],
                     "metrics": paired_compare(plain, other, members, resamples=2000, seed=0)}
    out.update(averaging_effects(folder, scorer, val, v2, test, plain, names, members))
    return out


def averaging_effects(folder: Path, scorer, val, v2, test, plain, names, members) -> dict:
    """Each saved EMA under the plain rule, and the val-chosen weights (raw or an EMA), against the raw model."""
    import torch

    saved = sorted(folder.glob("ema*.pt"))
    if not saved:
        return {}
    layout = dvc_paths(ROOT)
    model = scorer.accelerator.unwrap_model(scorer.model)
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    y2v = val.labels_task2
    val_acc = {"raw": float((v2.argmax(1) == y2v)[y2v >= 0].mean())}
    coded = {"raw": plain}
    for f in saved:
        model.load_state_dict(torch.load(f, weights_only=True))
        _, a1, a2 = scorer.split(folder / layout["tokenized"], "val")
        val_acc[f.stem] = float((a2.argmax(1) == y2v)[y2v >= 0].mean())
        _, b1, b2 = scorer.split(folder / layout["tokenized"], "test")
        q1, q2 = softmax(b1), softmax(b2)
        coded[f.stem] = Coded.from_arrays(test.labels_task1, q1[:, 1] < 0.5, test.labels_task2, q2.argmax(1),
                                          q2.max(1), len(names))
    model.load_state_dict(raw)
    chosen = max(val_acc, key=lambda k: (val_acc[k], k == "raw"))
    out = {f"{k} (always)": {"val_acc_task2": val_acc[k], "metrics": paired_compare(plain, coded[k], members,
                                                                                  resamples=2000, seed=0)}
           for k in coded if k != "raw"}
    out["weight averaging, chosen on val"] = {"chosen": chosen, "val_acc_task2": val_acc,
                                              "metrics": paired_compare(plain, coded[chosen], members,
                                                                        resamples=2000, seed=0)}
    return out


def keep_raw_and_save_averages(folder: Path):
    """Patch the run so that the raw weights are kept and each EMA's final weights are saved in ``folder``."""
    import torch

    import twohead.pipeline.train_stage2 as ts
    from twohead.train import averaging

    real_fit = ts.fit

    def fit(*args, **kw):
        orig = averaging.WeightAverages.choose
        averaging.WeightAverages.choose = lambda self, keep, raw_score, raw_epoch: ("raw", raw_epoch, None)
        try:
            res = real_fit(*args, **kw)
        finally:
            averaging.WeightAverages.choose = orig
        for c in res.averages.candidates:
            torch.save({k: v.detach().cpu() for k, v in c.model.module.state_dict().items()}, folder / f"{c.name}.pt")
        return res

    ts.fit = fit


def table(results: dict[int, dict]) -> str:
    seeds = sorted(results)
    lines = [f"Decided − plain on test, points: mean over {len(seeds)} seed(s) [95% t-interval over seeds];"
             " per-seed paired-bootstrap verdicts (▲ better, ▼ worse, ≈ within noise).", "",
             "| decision | " + " | ".join(label(m) for m in SHOWN) + " |", "|---|" + "---|" * len(SHOWN)]
    mark = {"better": "▲", "worse": "▼", "within noise": "≈", "undefined": "?"}
    plain_row = []
    for m in SHOWN:
        vals = [results[s]["all three (the calibrate stage)"]["metrics"][m]["base"] for s in seeds]
        plain_row.append(f"{np.mean(vals):.3f}")
    lines.append("| plain (absolute) | " + " | ".join(plain_row) + " |")
    for name in [*VARIANTS, *(k for k in results[seeds[0]] if k not in VARIANTS)]:
        cells = []
        for m in SHOWN:
            d = [100 * results[s][name]["metrics"][m]["delta"] for s in seeds]
            mean, _, low, high = t_interval(d)
            ci = "" if np.isnan(low) else f" [{low:+.1f}, {high:+.1f}]"
            verdicts = "".join(mark[results[s][name]["metrics"][m]["verdict"]] for s in seeds)
            cells.append(f"{mean:+.1f}{ci} {verdicts}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--checkpoint", help="model.stage1_checkpoint for every run (e.g. a pretrained encoder dir)")
    ap.add_argument("--ema", type=float, nargs="*", default=[], help="switches.ema decays to keep beside raw weights")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--md", type=Path)
    args = ap.parse_args()
    sets = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    if args.ema:
        sets["switches.ema"] = list(args.ema)
    results = {}
    for seed in args.seeds:
        folder, p = train_one(seed, args.out, sets, args.checkpoint)
        results[seed] = effects(folder, p)
    text = table(results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"seeds": args.seeds, "set": sets, "checkpoint": args.checkpoint,
                                         "results": results}, indent=2, default=float) + "\n")
    if args.md:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
