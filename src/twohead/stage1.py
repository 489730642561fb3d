"""The pretrain_stage1 stage: Pick/Decline pretraining of a base encoder, the Stage-1 recipe.

Data: every prepared row with a Pick/Decline label (categories are not used): train split to train,
val split to validate, tokenized here with the *base model's* tokenizer. The model is the Stage-2
model with its Task2 loss switched off (λ1 = 1, λ2 = 0, no category labels), trained by the same
``fit`` (pooling, LLRD, warmup, Task1 class weights, Accelerate loop); ``stage1.*`` sets its own
epochs / lr / batch size, everything else follows ``train.*``.

Output: ``stage1.output_dir`` in the same layout as the base directory (encoder ``config.json`` +
``model.safetensors``, the base's tokenizer files copied unchanged), plus ``stage1_head.safetensors``
(the Pick/Decline head, for reference; Stage 2 starts its heads fresh) and ``stage1.json``.

When ``model.stage1_checkpoint`` points somewhere else (your own Stage-1 checkpoint), the stage trains
nothing: it writes ``SKIPPED.json`` in the output directory and a metrics file saying so, in milliseconds.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd

from .batching import TokenizedDataset
from .checkpoint import WEIGHT_FILES, load_encoder, validate_checkpoint
from .data import IGNORE
from .io import atomic_path, read_json, write_csv, write_json
from .model import TwoHeadModel
from .params import Params, to_dict
from .tokenization import encode, read_prepared, to_arrow
from .train import SPEED_KEYS, fit

STAGE1_COLUMNS = ["epoch", "train_loss", "val_loss", "train_acc", "val_acc", "val_precision_pick", "val_recall_pick",
                  "val_f1_pick", "lr", "grad_norm_mean", "grad_norm_max", "epoch_seconds", "train_samples_per_second"]
_FROM_HISTORY = {"train_loss": "train_loss_task1", "val_loss": "val_loss_task1", "train_acc": "train_acc_task1",
                 "val_acc": "val_acc_task1"}


def stage1_is_used(p: Params) -> bool:
    return Path(p.model.stage1_checkpoint).resolve() == Path(p.stage1.output_dir).resolve()


def copy_tokenizer_files(src: Path, dst: Path) -> None:
    skip = set(WEIGHT_FILES) | {"config.json", "generation_config.json"}
    for f in src.iterdir():
        if f.is_file() and f.name not in skip and f.suffix not in (".safetensors", ".bin", ".pt", ".h5", ".msgpack"):
            shutil.copy(f, dst / f.name)


def pick_rows_dataset(df: pd.DataFrame, tokenizer, max_length: int, batch_size: int) -> TokenizedDataset:
    rows = df[df["labels_binary"] != IGNORE].copy()
    rows["labels_category"] = IGNORE
    ids, _ = encode(tokenizer, rows["text"].astype(str).tolist(), max_length, batch_size, desc="tokenize stage1")
    return TokenizedDataset(to_arrow(rows, ids), tokenizer.pad_token_id)


def run_stage1(p: Params, prepared_dir="data/prepared", history_path="plots/stage1_history.csv",
               metrics_path="metrics/stage1.json") -> dict:
    from accelerate.utils import set_seed

    s = p.stage1
    out = Path(s.output_dir)
    if not stage1_is_used(p):
        with atomic_path(out, is_dir=True) as tmp:
            (tmp / "SKIPPED.json").write_text(json.dumps(
                {"reason": "model.stage1_checkpoint points at another checkpoint", "stage1_checkpoint": p.model.stage1_checkpoint},
                indent=2) + "\n", encoding="utf-8")
        write_csv(history_path, pd.DataFrame(columns=STAGE1_COLUMNS))
        result = {"trained": False, "stage1_checkpoint": p.model.stage1_checkpoint}
        write_json(metrics_path, result)
        return result

    t = dataclasses.replace(p.train, lr=s.lr, epochs=s.epochs, batch_size=s.batch_size, llrd=s.llrd,
                            warmup_ratio=s.warmup_ratio, weight_decay=s.weight_decay, seed=s.seed, keep="last",
                            max_train_rows=s.max_train_rows)
    loss_cfg = dataclasses.replace(p.loss, lambda_task1=1.0, lambda_task2=0.0, label_smoothing_task1=s.label_smoothing,
                                   label_smoothing=0.0)
    set_seed(t.seed)
    base = Path(s.base_model)
    tokenizer, _ = validate_checkpoint(base)
    prepared = read_prepared(prepared_dir)
    train_ds = pick_rows_dataset(prepared["train"], tokenizer, p.tokenize.max_length, p.tokenize.batch_size)
    train_ds = train_ds.subsample(t.max_train_rows, t.seed)
    val_ds = pick_rows_dataset(prepared["val"], tokenizer, p.tokenize.max_length, p.tokenize.batch_size)
    weights = read_json(Path(prepared_dir) / "class_weights.json")["task1"]["weights"]
    model = TwoHeadModel(load_encoder(base), 1, p.model.pooling, p.model.head_dropout)
    res = fit(t, loss_cfg, model, train_ds, val_ds, weights, [1.0], tokenizer.pad_token_id, "pretrain_stage1",
              select="val_acc_task1")

    history = pd.DataFrame(res.history).rename(columns={v: k for k, v in _FROM_HISTORY.items()})
    history = history[STAGE1_COLUMNS]
    last = history.iloc[-1].to_dict()
    metrics = {k: v for k, v in last.items() if k not in SPEED_KEYS}
    metrics.update({"trained": True, "epoch": int(last["epoch"]), "train_rows": len(train_ds), "val_rows": len(val_ds),
                    "base_model": str(base)})
    if res.accelerator.is_main_process:
        from safetensors.torch import save_file

        with atomic_path(out, is_dir=True) as tmp:
            res.model.encoder.save_pretrained(str(tmp), safe_serialization=True)
            copy_tokenizer_files(base, tmp)
            head = {k: v.detach().cpu().contiguous() for k, v in res.model.head_task1.state_dict().items()}
            save_file(head, str(tmp / "stage1_head.safetensors"))
            (tmp / "stage1.json").write_text(json.dumps({"base_model": str(base), "metrics": metrics,
                                                         "stage1": to_dict(s), "pooling": p.model.pooling},
                                                        indent=2) + "\n", encoding="utf-8")
        write_csv(history_path, history)
        write_json(metrics_path, metrics)
    return metrics
