"""Training throughput of this project's loop on a GPU, on a DeBERTa-v3-base-sized random encoder.

    python benchmarks/bench_gpu.py [--seq 128 256] [--batch 32] [--steps 30] [--compile] [--out F.json]

Random config of DeBERTa-v3-base's shape (12 layers, 768 hidden, 12 heads, 3072 FFN, vocab 128,100,
relative attention with 256 position buckets) + the two heads (96 categories); full-length random token
rows (no padding, so tokens/s = samples/s × seq). Each variant runs ``train_one_epoch`` — the project's
own step: fused AdamW (``make_optimizer`` on CUDA), Accelerate autocast, clipping, the non-finite guard —
for a warm-up epoch and then a measured one. Variants: fp32 (TF32 off, PyTorch's default), bf16 autocast,
and with ``--compile`` bf16 + ``torch.compile`` of the encoder.

MFU = model FLOPs per step ÷ step time ÷ device peak. FLOPs per token = 6·N + 12·layers·hidden·seq (PaLM's
estimate for a transformer's forward + backward, N = non-embedding parameters); it ignores DeBERTa's extra
content→position and position→content score matrices, so the MFU shown is a lower bound. Peak: the H100
SXM's dense bf16 989 TFLOP/s for bf16, its FP32 (non-tensor-core) 67 TFLOP/s for fp32; other cards: pass
``--peak-tflops``. With ``--compile`` the compiled variant first compares its logits on one batch with eager
(``compile_max_rel_diff``: max |Δ| ÷ max |logit|).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from twohead.data.batching import LengthGroupedBatchSampler, TokenizedDataset, make_collate  # noqa: E402
from twohead.data.tokenization import to_arrow  # noqa: E402
from twohead.model import fast_attention  # noqa: E402
from twohead.model.two_head import TwoHeadModel  # noqa: E402
from twohead.train.device import make_accelerator  # noqa: E402
from twohead.train.loop import train_one_epoch  # noqa: E402
from twohead.train.losses import TwoTaskLoss  # noqa: E402
from twohead.train.optim import llrd_groups, make_optimizer, make_scheduler  # noqa: E402
from twohead.train.step import StepContext  # noqa: E402
from twohead.train.switches import compile_encoder  # noqa: E402

PEAK = {"bf16": 989e12, "fp32": 67e12}


def encoder(layers: int, hidden: int, vocab: int):
    from transformers import DebertaV2Config, DebertaV2Model

    cfg = DebertaV2Config(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                          num_attention_heads=max(hidden // 64, 1), intermediate_size=4 * hidden,
                          max_position_embeddings=512, relative_attention=True, position_buckets=256,
                          norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"],
                          layer_norm_eps=1e-7, max_relative_positions=-1, position_biased_input=False,
                          type_vocab_size=0)
    return DebertaV2Model(cfg)


def dataset(rows: int, seq: int, vocab: int, n_cat: int) -> TokenizedDataset:
    rng = np.random.default_rng(0)
    ids = [list(rng.integers(5, vocab, seq)) for _ in range(rows)]
    df = pd.DataFrame({"id": np.arange(rows), "labels_task1": rng.integers(0, 2, rows),
                       "labels_task2": rng.integers(0, n_cat, rows)})
    return TokenizedDataset(to_arrow(df, ids), 0)


def run_variant(args, seq: int, precision: str, compiled: bool) -> dict:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)  # one Accelerator per variant (precision is fixed per state)
    GradientState._reset_state()
    torch.manual_seed(0)
    acc = make_accelerator(args.device, precision, 1)
    model = TwoHeadModel(encoder(args.layers, args.hidden, args.vocab), args.categories)
    n_params = sum(p.numel() for p in model.parameters())
    n_emb = model.encoder.embeddings.word_embeddings.weight.numel()
    if args.fast_attention:
        fast_attention.install(model)
    groups, _ = llrd_groups(model, 2e-5, 0.8, 1.0, 0.01)
    opt = make_optimizer(groups, 2e-5, acc.device.type)
    numerics = None
    if compiled:  # train.compile's way: nn.Module.compile in place; numerics vs eager on one batch first
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(5, args.vocab, (8, seq), generator=g).to(acc.device)
        mask = torch.ones_like(ids)
        model.to(acc.device).eval()
        with torch.no_grad(), acc.autocast():
            eager = model(ids, mask)[1].float()
            compile_encoder(model)
            comp = model(ids, mask)[1].float()
        numerics = float((eager - comp).abs().max() / eager.abs().max())
        model.train()
    ds = dataset(args.batch * args.steps, seq, args.vocab, args.categories)
    loader = DataLoader(ds, batch_sampler=LengthGroupedBatchSampler(ds.lengths, args.batch, 0, True),
                        collate_fn=make_collate(0), pin_memory=acc.device.type == "cuda")
    sched = make_scheduler(opt, "linear", 2 * len(loader), 0.06)
    model, opt, loader, sched = acc.prepare(model, opt, loader, sched)
    dev = acc.device
    loss_fn = TwoTaskLoss(torch.ones(2, device=dev), torch.ones(args.categories, device=dev), 0.4, 1.0)
    parts = StepContext(acc, model, opt, sched, loss_fn, 1.0)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    train_one_epoch(parts, loader, 1, 0, refresh=0)  # warm-up (and compilation)
    warm = time.perf_counter() - t0
    fig = train_one_epoch(parts, loader, 2, 0, refresh=0).metrics
    sps = fig["train_samples_per_second"]
    flops_token = 6 * (n_params - n_emb) + 12 * args.layers * args.hidden * seq
    peak = args.peak_tflops * 1e12 if args.peak_tflops else PEAK[precision]
    out = {"seq": seq, "precision": precision, "compile": compiled, "batch": args.batch,
           "samples_per_s": sps, "tokens_per_s": sps * seq, "step_ms": 1000 * args.batch / sps,
           "mfu": sps * seq * flops_token / peak, "warmup_s": warm, "params": n_params,
           "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else None,
           "device": str(dev), "fast_attention": args.fast_attention, "compile_max_rel_diff": numerics}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=128100)
    ap.add_argument("--categories", type=int, default=96)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--compile", action="store_true", help="also bf16 + torch.compile(encoder)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--peak-tflops", type=float, default=0.0)
    ap.add_argument("--no-fast-attention", dest="fast_attention", action="store_false")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    results = []
    for seq in args.seq:
        for prec in args.precisions:
            results.append(run_variant(args, seq, prec, False))
        if args.compile:
            try:
                results.append(run_variant(args, seq, "bf16", True))
            except Exception as exc:  # a compile failure is a finding, not a crash of the benchmark
                results.append({"seq": seq, "precision": "bf16", "compile": True, "error": repr(exc)[:500]})
                print(json.dumps(results[-1]), flush=True)
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"\n{name}, batch {args.batch}, {args.layers}L/{args.hidden}H, vocab {args.vocab},"
          f" fast_attention {'on' if args.fast_attention else 'off'}")
    print("| seq | precision | compile | samples/s | tokens/s | step ms | MFU | peak GB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['seq']} | {r['precision']} | yes | failed: {r['error'][:80]} | | | | |")
            continue
        mem = "-" if r["peak_mem_gb"] is None else f"{r['peak_mem_gb']:.1f}"
        print(f"| {r['seq']} | {r['precision']} | {'yes' if r['compile'] else 'no'} | {r['samples_per_s']:.0f} |"
              f" {r['tokens_per_s']:.0f} | {r['step_ms']:.1f} | {r['mfu']:.1%} | {mem} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"device": name, "results": results}, indent=2))


if __name__ == "__main__":
    main()
