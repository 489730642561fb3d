"""This project's training loop against Hugging Face's Trainer, side by side, on this machine.

    python benchmarks/bench_trainer.py [--rows 2560] [--layers 4] [--hidden 256] [--repeats 3] [--steps 0]
                                       [--variants A B Bg] [--out benchmarks/results/trainer_cpu.json]

Run after `dvc repro tokenize`. Every variant trains the same randomly initialised DeBERTa-v2 encoder (the
demo encoder's config with --layers / --hidden), the same tokenized demo rows, the same TwoTaskLoss, batch 32,
fp32, the same thread count, from the same seed; each variant × repeat runs in its own process (clean peak
RSS, no shared state); the first --warmup steps are excluded; the median over repeats is reported.

Variants
  A0    the same before the speed work: no windowed attention bias, AdamW not fused on the CPU
  A     this project's path: LLRD AdamW groups (fused AdamW), length-grouped batches, the windowed DeBERTa
        attention bias (``train.fast_attention``), ``train_one_epoch`` (Accelerate)
  Ac    A with ``train.compile: true`` (torch.compile of the encoder, dynamic shapes)
  B     HF Trainer, defaults + DataCollatorWithPadding (what a user would write)
  Bg    HF Trainer with train_sampling_strategy="group_by_length"
Also: eval rows/s of this project's ``predict`` (sorted batches of --eval-batch, inference_mode) vs
``Trainer.predict``, and tokenization rows/s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

LABELS = {"A0": "this project before (no fast_attention, unfused AdamW)",
          "A": "this project, fit path (length-grouped)", "Ac": "this project + train.compile",
          "B": "HF Trainer, defaults + DataCollatorWithPadding", "Bg": "HF Trainer, group_by_length"}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def setup(args):
    from twohead.config.layout import dvc_paths
    from twohead.config.params import load_params
    from twohead.data.batching import TokenizedDataset
    from twohead.data.prepared import read_label_info
    from twohead.model.checkpoint import load_tokenizer

    p = load_params(ROOT / "params.yaml")
    layout = {k: ROOT / v for k, v in dvc_paths(ROOT).items()}
    tok = load_tokenizer(ROOT / p.model.stage1_checkpoint)
    ds = TokenizedDataset(layout["tokenized"] / "train.parquet", tok.pad_token_id).subsample(args.rows, 0)
    return p, layout, tok, ds, read_label_info(layout["prepared"])


def build_model(args, n_cat: int):
    from transformers import DebertaV2Config, DebertaV2Model

    from twohead.model.two_head import TwoHeadModel

    cfg = DebertaV2Config.from_pretrained(str(ROOT / "models" / "demo_encoder"))
    cfg.num_hidden_layers, cfg.hidden_size = args.layers, args.hidden
    cfg.num_attention_heads, cfg.intermediate_size = max(args.hidden // 64, 1), 4 * args.hidden
    torch.manual_seed(0)
    return TwoHeadModel(DebertaV2Model(cfg), n_cat)


def loss_fn(info, device):
    from twohead.train.losses import TwoTaskLoss

    w = info.class_weights
    return TwoTaskLoss(torch.tensor(w["task1"]["weights"], dtype=torch.float32, device=device),
                       torch.tensor(w["task2"]["weights"], dtype=torch.float32, device=device), 0.4, 1.0, 0.0, 0.1)


def run_ours(args, compiled: bool, before: bool = False) -> dict:
    from torch.utils.data import DataLoader

    from twohead.data.batching import LengthGroupedBatchSampler, SortedBatchSampler, make_collate, pad_share
    from twohead.model import fast_attention
    from twohead.train.device import make_accelerator
    from twohead.train.loop import predict_logits, train_one_epoch
    from twohead.train.optim import llrd_groups, make_optimizer, make_scheduler
    from twohead.train.step import StepContext
    from twohead.train.switches import compile_encoder

    p, layout, tok, ds, info = setup(args)
    acc = make_accelerator("cpu", "fp32", 1)
    model = build_model(args, len(info.names))
    groups, _ = llrd_groups(model, 1e-3, 0.8, 1.0, 0.01)
    if before:
        opt = torch.optim.AdamW(groups, lr=1e-3, eps=1e-6)
    else:
        opt = make_optimizer(groups, 1e-3, acc.device.type)
        fast_attention.install(model)
    if compiled:
        compile_encoder(model)
    sampler = LengthGroupedBatchSampler(ds.lengths, args.batch, 0, True)
    collate = make_collate(tok.pad_token_id)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate)
    sched = make_scheduler(opt, "linear", len(loader), 0.06)
    model, opt, loader, sched = acc.prepare(model, opt, loader, sched)
    parts = StepContext(acc, model, opt, sched, loss_fn(info, acc.device), 1.0)
    marks = []
    t0 = time.perf_counter()
    train_one_epoch(parts, loader, 1, 0, refresh=0,
                    on_step=lambda s, a: marks.append((time.perf_counter(), a.n_rows)))
    total = time.perf_counter() - t0
    (t_w, n_w), (t_e, n_e) = marks[args.warmup - 1], marks[-1]
    batches = sampler.batches(0)
    rows = n_e - n_w
    mean_len = float(np.mean(ds.lengths))
    out = {"samples_per_s": rows / (t_e - t_w), "pad_share": pad_share(ds.lengths, batches),
           "tokens_per_s": rows / (t_e - t_w) * mean_len, "first_steps_s": t_w - t0, "train_s": total}
    eval_loader = acc.prepare(DataLoader(ds, batch_sampler=SortedBatchSampler(ds.lengths, args.eval_batch),
                                         collate_fn=collate))
    predict_logits(acc, model, eval_loader, len(ds))  # warm
    t0 = time.perf_counter()
    predict_logits(acc, model, eval_loader, len(ds))
    out["eval_rows_per_s"] = len(ds) / (time.perf_counter() - t0)
    return out


class _Wrapped(torch.nn.Module):
    """TwoHeadModel + TwoTaskLoss behind Trainer's interface (a dict with "loss")."""

    def __init__(self, model, loss):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, input_ids, attention_mask, labels_task1=None, labels_task2=None):
        l1, l2 = self.model(input_ids, attention_mask)
        out = {"logits": (l1, l2)}
        if labels_task1 is not None:
            out["loss"] = self.loss.terms(l1, l2, labels_task1, labels_task2)["total"]
        return out


class _Rows(torch.utils.data.Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        x, y1, y2, _ = self.ds[i]
        return {"input_ids": x.tolist(), "labels_task1": y1, "labels_task2": y2}


def run_trainer(args, grouped: bool) -> dict:
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    p, layout, tok, ds, info = setup(args)
    rows = _Rows(ds)
    marks = []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            marks.append((time.perf_counter(), state.global_step))

    targs = TrainingArguments(output_dir=str(Path(args.tmp) / "trainer"), per_device_train_batch_size=args.batch,
                              per_device_eval_batch_size=args.eval_batch, num_train_epochs=1, learning_rate=1e-3,
                              weight_decay=0.01, warmup_steps=0.06, max_grad_norm=1.0, seed=0, use_cpu=True,
                              report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
                              dataloader_num_workers=0, label_names=["labels_task1", "labels_task2"],
                              train_sampling_strategy="group_by_length" if grouped else "random")
    if grouped:
        rows.lengths = [int(x) for x in ds.lengths]
    model = _Wrapped(build_model(args, len(info.names)), loss_fn(info, "cpu"))
    trainer = Trainer(model=model, args=targs, train_dataset=rows, eval_dataset=rows,
                      data_collator=DataCollatorWithPadding(tok), callbacks=[Clock()])
    pads, toks = 0, 0
    for batch in trainer.get_train_dataloader():
        m = batch["attention_mask"]
        pads, toks = pads + int((m == 0).sum()), toks + m.numel()
    t0 = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t0
    (t_w, s_w), (t_e, s_e) = marks[args.warmup - 1], marks[-1]
    n = min(len(ds), s_e * args.batch) - s_w * args.batch
    mean_len = float(np.mean(ds.lengths))
    out = {"samples_per_s": n / (t_e - t_w), "pad_share": pads / toks, "tokens_per_s": n / (t_e - t_w) * mean_len,
           "first_steps_s": t_w - t0, "train_s": total}
    trainer.predict(rows)  # warm
    t0 = time.perf_counter()
    trainer.predict(rows)
    out["eval_rows_per_s"] = len(ds) / (time.perf_counter() - t0)
    return out


def tokenize_rate(args) -> float:
    from twohead.data.prepared import read_split
    from twohead.data.tokenization import encode

    p, layout, tok, ds, info = setup(args)
    texts = read_split(layout["prepared"], "train")["text"].astype(str).tolist()
    t0 = time.perf_counter()
    encode(tok, texts, p.tokenize.max_length, p.tokenize.batch_size)
    return len(texts) / (time.perf_counter() - t0)


def child(args) -> None:
    torch.set_num_threads(args.threads)
    if args.variant == "tokenize":
        out = {"tokenize_rows_per_s": tokenize_rate(args)}
    elif args.variant in ("A0", "A", "Ac"):
        out = run_ours(args, compiled=args.variant == "Ac", before=args.variant == "A0")
    else:
        out = run_trainer(args, grouped=args.variant == "Bg")
    out.update({"variant": args.variant, "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads()})
    print("RESULT " + json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2560)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--eval-batch", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=5, help="optimiser steps excluded from the timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--variants", nargs="+", default=["A0", "A", "B", "Bg"], choices=list(LABELS))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "trainer_cpu.json"))
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default="/tmp/twohead_bench", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        return child(args)
    base = [sys.executable, __file__, "--rows", str(args.rows), "--layers", str(args.layers), "--hidden",
            str(args.hidden), "--batch", str(args.batch), "--eval-batch", str(args.eval_batch), "--warmup",
            str(args.warmup), "--threads", str(args.threads), "--tmp", args.tmp]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}

    def one(variant: str) -> dict:
        proc = subprocess.run([*base, "--variant", variant], capture_output=True, text=True, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"variant {variant} failed:\n{proc.stderr[-3000:]}")
        return json.loads(lines[-1][len("RESULT "):])

    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    for _ in range(args.repeats):  # interleaved: a change of machine load hits every variant alike
        for v in args.variants:
            runs[v].append(one(v))
            print(f"  {v}: {runs[v][-1]['samples_per_s']:.1f} samples/s", file=sys.stderr, flush=True)
    tok = one("tokenize")["tokenize_rows_per_s"]
    keys = ("samples_per_s", "tokens_per_s", "pad_share", "peak_rss_mb", "eval_rows_per_s", "first_steps_s")
    med = {v: {k: statistics.median(r[k] for r in rs) for k in keys} for v, rs in runs.items()}
    ref = med.get("B", {}).get("samples_per_s")
    result = {"rows": args.rows, "layers": args.layers, "hidden": args.hidden, "batch": args.batch,
              "threads": args.threads, "repeats": args.repeats, "warmup_steps": args.warmup,
              "torch": torch.__version__, "tokenize_rows_per_s": tok, "median": med, "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.layers}L/{args.hidden}H DeBERTa-v2, {args.rows} rows, batch {args.batch}, fp32, {args.threads}"
          f" threads, median of {args.repeats}; tokenize {tok:.0f} rows/s")
    print("| loop | train samples/s | × B | real tokens/s | pad share | peak RSS MB | eval rows/s | eval ÷ train |")
    print("|---|---|---|---|---|---|---|---|")
    for v, m in med.items():
        ratio = f"{m['samples_per_s'] / ref:.2f}" if ref else "-"
        print(f"| {v}: {LABELS[v]} | {m['samples_per_s']:.1f} | {ratio} | {m['tokens_per_s']:.0f} |"
              f" {m['pad_share']:.1%} | {m['peak_rss_mb']:.0f} | {m['eval_rows_per_s']:.0f} |"
              f" {m['eval_rows_per_s'] / m['samples_per_s']:.1f} |")


if __name__ == "__main__":
    main()
