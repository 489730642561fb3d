"""The train_stage2 stage: the plain two-head recipe, end to end, on one screen.

Reads ``data/prepared`` (label maps, class weights, bands) and ``data/tokenized``; writes
``models/stage2/``, ``plots/train_history.csv``, ``plots/band_recall.csv``, ``logs/steps.jsonl``,
``metrics/train.json`` (deterministic figures of the last epoch) and ``metrics/train_speed.json``
(timings, which differ run to run). Everything is written at the end, atomically; while training, the
history so far is in ``plots/train_history.csv.partial`` for watching a long run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from .batching import LengthGroupedBatchSampler, SortedBatchSampler, TokenizedDataset, make_collate, pad_share
from .device import make_accelerator
from .evaluation import worst_k_table
from .io import atomic_path, read_json, write_csv, write_json, write_text
from .losses import TwoTaskLoss
from .loop import predict, train_one_epoch
from .cartography import CartographyRecorder, cartography_table
from .metrics import band_recall, consistency, softmax, task1_metrics, task2_metrics
from .checkpoint import load_encoder, validate_checkpoint
from .model import TwoHeadModel, save_stage2
from .optim import format_groups, llrd_groups, make_optimizer, make_scheduler
from .params import HierParams, LossParams, Params, TrainParams, to_dict


class TrainingError(RuntimeError):
    """Training could not start or went wrong in a way the user can act on."""


def eval_figures(logits1: np.ndarray, logits2: np.ndarray, y1: np.ndarray, y2: np.ndarray, loss_fn: TwoTaskLoss,
                 prefix: str = "val", confidence: tuple[float, float] = (0.5, 0.9)) -> dict[str, float]:
    """Loss (the training objective, over the whole split) and sklearn metrics of one split's logits,
    plus the two gold-label consistency rates (``confidence`` = low and high Task2 max-prob thresholds)."""
    cpu_loss = dataclasses.replace(loss_fn, weight_task1=loss_fn.weight_task1.cpu(), weight_task2=loss_fn.weight_task2.cpu())
    with torch.no_grad():
        parts = cpu_loss.parts(torch.from_numpy(logits1), torch.from_numpy(logits2), torch.from_numpy(y1), torch.from_numpy(y2))
    loss = cpu_loss.combine([float(parts[k]) for k in ("num1", "den1", "num2", "den2", "hpn", "hpd", "hdn", "hdd")])
    m1 = task1_metrics(y1, logits1.argmax(1))
    m2 = task2_metrics(y2, logits2.argmax(1))
    probs1, probs2 = softmax(logits1), softmax(logits2)
    c = consistency(y1, probs1[:, 1], probs2.max(1), 0.5, confidence[0], confidence[1])
    return {
        f"{prefix}_loss_total": loss["total"], f"{prefix}_loss_task1": loss["task1"],
        f"{prefix}_loss_task2": loss["task2"], f"{prefix}_loss_hier": loss["hier"],
        f"{prefix}_acc_task1": m1["acc_task1"], f"{prefix}_acc_task2": m2["acc_task2"],
        f"{prefix}_macro_f1_task2": m2["macro_f1_task2"], f"{prefix}_weighted_f1_task2": m2["weighted_f1_task2"],
        f"{prefix}_precision_pick": m1["precision_pick"], f"{prefix}_recall_pick": m1["recall_pick"],
        f"{prefix}_f1_pick": m1["f1_pick"],
        f"{prefix}_gold_pick_low_conf": c["gold_pick_low_conf"], f"{prefix}_gold_decline_high_conf": c["gold_decline_high_conf"],
    }


HISTORY_COLUMNS = [
    "epoch", "train_loss_total", "train_loss_task1", "train_loss_task2", "train_loss_hier", "val_loss_total",
    "val_loss_task1", "val_loss_task2", "val_loss_hier", "train_acc_task1", "train_acc_task2", "val_acc_task1", "val_acc_task2",
    "val_macro_f1_task2", "val_weighted_f1_task2", "val_precision_pick", "val_recall_pick", "val_f1_pick",
    "val_gold_pick_low_conf", "val_gold_decline_high_conf", "lambda_task1", "lambda_task2", "lr", "grad_norm_mean", "grad_norm_max", "epoch_seconds",
    "train_samples_per_second",
]
SPEED_KEYS = ("epoch_seconds", "train_samples_per_second")


def _smoke_check(accelerator, model, batch, loss_fn: TwoTaskLoss, optimizer) -> None:
    """One forward + backward on the chosen device before the real run, with a clear message if the
    device cannot run the model (e.g. DeBERTa's relative-position ops on an old MPS build)."""
    try:
        logits1, logits2 = model(batch["input_ids"], batch["attention_mask"])
        parts = loss_fn.parts(logits1, logits2, batch["labels_binary"], batch["labels_category"])
        accelerator.backward(parts["total"])
        if not torch.isfinite(parts["total"]).item():
            raise TrainingError(f"the first batch's loss is {parts['total'].item()} on {accelerator.device}")
    except TrainingError:
        raise
    except Exception as exc:
        hint = ""
        if accelerator.device.type == "mps":
            hint = (" DeBERTa's relative-position code has used int64 ops that some torch/macOS MPS builds reject;"
                    " update torch/macOS, or run with train.device=cpu. PYTORCH_ENABLE_MPS_FALLBACK=1 does not fix dtype errors.")
        raise TrainingError(f"one forward+backward step failed on {accelerator.device}: {exc}.{hint}") from exc
    finally:
        optimizer.zero_grad(set_to_none=True)


@dataclass
class FitResult:
    history: list[dict]
    band_rows: list[dict]
    step_log: list[dict]
    best_epoch: int
    best_score: float
    kept_epoch: int
    model: TwoHeadModel
    accelerator: object
    cartography: list | None = None  # [(prob, correct)] per task, arrays [rows, epochs]


def fit(t: TrainParams, loss_cfg: LossParams, model: TwoHeadModel, train_ds: TokenizedDataset, val_ds: TokenizedDataset,
        weights_task1: list[float], weights_task2: list[float], pad_id: int, tag: str, select: str = "val_acc_task2",
        bands: dict | None = None, names: list[str] | None = None, partial_path: Path | None = None,
        hier: HierParams | None = None, confidence: tuple[float, float] = (0.5, 0.9), cartography: bool = False,
        on_epoch=None) -> FitResult:
    """Train ``model`` for ``t.epochs`` epochs with the plain recipe; evaluate on ``val_ds`` after each.

    Shared by Stage 1 (Task1 only: λ2 = 0 and no category labels) and Stage 2. ``select`` names the
    history column that decides the best epoch (kept when ``t.keep == "best"``).
    """
    accelerator = make_accelerator(t.device, t.precision, t.grad_accum)
    device = accelerator.device
    collate = make_collate(pad_id)
    train_sampler = LengthGroupedBatchSampler(train_ds.lengths, t.batch_size, t.seed, t.group_by_length)
    train_loader = DataLoader(train_ds, batch_sampler=train_sampler, collate_fn=collate, num_workers=t.num_workers)
    val_loader = DataLoader(val_ds, batch_sampler=SortedBatchSampler(val_ds.lengths, t.eval_batch_size),
                            collate_fn=collate, num_workers=t.num_workers)
    groups, group_summary = llrd_groups(model, t.lr, t.llrd, t.head_lr_mult, t.weight_decay)
    optimizer = make_optimizer(groups, t.lr, device.type)
    steps_per_epoch = math.ceil(len(train_loader) / t.grad_accum)
    scheduler = make_scheduler(optimizer, t.scheduler, steps_per_epoch * t.epochs, t.warmup_ratio)
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, val_loader, scheduler)
    loss_fn = TwoTaskLoss(
        weight_task1=torch.tensor(weights_task1, dtype=torch.float32, device=device),
        weight_task2=torch.tensor(weights_task2, dtype=torch.float32, device=device),
        lambda_task1=loss_cfg.lambda_task1, lambda_task2=loss_cfg.lambda_task2,
        smoothing_task1=loss_cfg.label_smoothing_task1, smoothing_task2=loss_cfg.label_smoothing,
        **({} if hier is None else {"hier_pick_weight": hier.pick_consistency_weight,
                                    "hier_pick_type": hier.pick_consistency_type,
                                    "hier_decline_weight": hier.decline_uniform_weight}),
    )
    recorder = CartographyRecorder(len(train_ds), t.epochs, device) if cartography else None
    log = accelerator.print
    n_params = sum(x.numel() for x in model.parameters())
    log(f"[{tag}] device {device} ({accelerator.num_processes} process(es)), precision {t.precision}, "
        f"{n_params:,} parameters; {len(train_ds)} train / {len(val_ds)} val rows; {steps_per_epoch} steps/epoch")
    log(f"[{tag}] optimizer groups (LLRD):\n" + format_groups(group_summary))
    log(f"[{tag}] training-batch padding share (first epoch's batches): "
        f"{pad_share(train_ds.lengths, train_sampler.batches(0)):.1%}")
    smoke = collate([train_ds[i] for i in range(min(4, len(train_ds)))])
    _smoke_check(accelerator, model, {k: v.to(device) for k, v in smoke.items()}, loss_fn, optimizer)

    history, band_rows, step_log = [], [], []
    best_epoch, best_score, best_state = 0, -math.inf, None
    step = 0
    y1_val, y2_val = val_ds.labels_binary, val_ds.labels_category
    for epoch in range(1, t.epochs + 1):
        figures, steps = train_one_epoch(accelerator, model, train_loader, loss_fn, optimizer, scheduler,
                                         t.max_grad_norm, epoch, step, recorder=recorder)
        step = figures.pop("steps")
        step_log.extend(steps)
        logits1, logits2 = predict(accelerator, model, val_loader, len(val_ds), desc=f"val {epoch}")
        figures.update(eval_figures(logits1, logits2, y1_val, y2_val, loss_fn, confidence=confidence))
        if on_epoch is not None:
            on_epoch(epoch, logits1, logits2)
        figures.update({"epoch": epoch, "lambda_task1": loss_cfg.lambda_task1, "lambda_task2": loss_cfg.lambda_task2})
        history.append({k: figures[k] for k in HISTORY_COLUMNS})
        if bands is not None:
            for row in band_recall(y2_val, logits2.argmax(1), bands["class_band"], names, bands["names"]):
                band_rows.append({"epoch": epoch, **row})
        if partial_path is not None and accelerator.is_main_process:
            write_csv(partial_path, pd.DataFrame(history, columns=HISTORY_COLUMNS))
        log(f"[{tag}] epoch {epoch}/{t.epochs} | train loss {figures['train_loss_total']:.4f} "
            f"(t1 {figures['train_loss_task1']:.4f}, t2 {figures['train_loss_task2']:.4f}) | val loss t1 "
            f"{figures['val_loss_task1']:.4f} t2 {figures['val_loss_task2']:.4f} | val acc t1 {figures['val_acc_task1']:.4f} "
            f"t2 {figures['val_acc_task2']:.4f} | t2 macro-F1 {figures['val_macro_f1_task2']:.4f} | "
            f"{figures['train_samples_per_second']:.1f} samples/s, {figures['epoch_seconds']:.1f}s")
        score = figures[select]
        if score > best_score:  # NaN never wins
            best_epoch, best_score = epoch, score
            if t.keep == "best":
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in accelerator.unwrap_model(model).state_dict().items()}

    accelerator.wait_for_everyone()
    final = accelerator.unwrap_model(model)
    kept_epoch = t.epochs
    if t.keep == "best" and best_state is not None:
        final.load_state_dict(best_state)
        kept_epoch = best_epoch
    carto = recorder.arrays(accelerator) if recorder is not None else None
    return FitResult(history, band_rows, step_log, best_epoch, best_score, kept_epoch, final, accelerator, carto)


def speed_summary(res: FitResult, t: TrainParams) -> dict:
    return {"train_samples_per_second_mean": float(np.mean([h["train_samples_per_second"] for h in res.history])),
            "epoch_seconds_mean": float(np.mean([h["epoch_seconds"] for h in res.history])),
            "device": str(res.accelerator.device), "precision": t.precision, "processes": res.accelerator.num_processes}


def cartography_tables(res: FitResult, train_ds: TokenizedDataset, names: list[str], class_band: dict,
                       texts: pd.Series) -> dict[str, pd.DataFrame]:
    """The two per-task cartography tables and the flagged (hard-to-learn / ambiguous) rows."""
    (p1, r1), (p2, r2) = res.cartography
    y1, y2 = train_ds.labels_binary, train_ds.labels_category
    ids = train_ds.ids
    t1 = cartography_table(ids, p1, r1, np.where(y1 == 1, "Pick", np.where(y1 == 0, "Decline", "")))
    t2 = cartography_table(ids, p2, r2, np.asarray(list(names) + [""], dtype=object)[np.where(y2 == -100, len(names), y2)])
    t2.insert(2, "band", [class_band.get(c, "") for c in t2["gold"]])
    flagged = pd.concat([t.assign(task=task) for task, t in (("task1", t1), ("task2", t2))])
    flagged = flagged[flagged["region"].isin(["hard-to-learn", "ambiguous"])].sort_values(["task", "region", "confidence"])
    flagged["text"] = [x if len(x) <= 200 else x[:199] + "…" for x in texts.reindex(flagged["id"]).fillna("").astype(str)]
    cols = ["task", "region", "id", "gold", "confidence", "variability", "correctness", "text"]
    return {"task1": t1, "task2": t2, "flagged": flagged[cols]}


def run_train(p: Params, prepared_dir="data/prepared", tokenized_dir="data/tokenized", model_dir="models/stage2",
              history_path="plots/train_history.csv", bands_path="plots/band_recall.csv", steps_path="logs/steps.jsonl",
              metrics_path="metrics/train.json", speed_path="metrics/train_speed.json",
              cartography_dir="metrics") -> dict:
    from accelerate.utils import set_seed

    t = p.train
    set_seed(t.seed)
    label_maps = read_json(Path(prepared_dir) / "label_maps.json")
    weights = read_json(Path(prepared_dir) / "class_weights.json")
    bands = read_json(Path(prepared_dir) / "bands.json")
    names = label_maps["task2"]["names"]
    tokenizer, _ = validate_checkpoint(p.model.stage1_checkpoint)
    pad_id = tokenizer.pad_token_id
    train_ds = TokenizedDataset(Path(tokenized_dir) / "train.parquet", pad_id).subsample(t.max_train_rows, t.seed)
    val_ds = TokenizedDataset(Path(tokenized_dir) / "val.parquet", pad_id)
    if int(train_ds.labels_category.max(initial=-100)) >= len(names):
        raise TrainingError(f"{tokenized_dir}: category ids exceed label_maps.json ({len(names)} classes); re-run prepare_labels and tokenize")
    model = TwoHeadModel(load_encoder(p.model.stage1_checkpoint), len(names), p.model.pooling, p.model.head_dropout)
    partial = Path(str(history_path) + ".partial")
    val_texts = pd.read_parquet(Path(prepared_dir) / "val.parquet", columns=["id", "text"]).set_index("id")["text"]
    val_texts = val_texts.reindex(val_ds.ids).fillna("").astype(str).to_numpy(dtype=object)
    worst = []

    def keep_worst(epoch: int, logits1: np.ndarray, logits2: np.ndarray) -> None:
        table = worst_k_table(val_ds.ids, val_texts, val_ds.labels_category, softmax(logits2), names, p.eval.worst_k)
        worst.append(table.assign(epoch=epoch, rank=np.arange(1, len(table) + 1)))

    res = fit(t, p.loss, model, train_ds, val_ds, weights["task1"]["weights"], weights["task2"]["weights"], pad_id,
              "train_stage2", "val_acc_task2", bands, names, partial, hier=p.hier,
              confidence=(p.eval.low_confidence, p.eval.high_confidence), cartography=True, on_epoch=keep_worst)

    metrics = {k: v for k, v in res.history[-1].items() if k not in SPEED_KEYS}
    metrics.update({"kept_epoch": res.kept_epoch, "best_epoch": res.best_epoch, "best_val_acc_task2": res.best_score,
                    "train_rows": len(train_ds), "val_rows": len(val_ds)})
    if res.accelerator.is_main_process:
        with atomic_path(model_dir, is_dir=True) as tmp:
            save_stage2(res.model, tmp, tokenizer, label_maps, extra={
                "stage1_checkpoint": p.model.stage1_checkpoint, "kept_epoch": res.kept_epoch, "params": to_dict(p)})
        write_csv(history_path, pd.DataFrame(res.history, columns=HISTORY_COLUMNS))
        write_csv(bands_path, pd.DataFrame(res.band_rows, columns=["epoch", "band", "recall", "n_classes"]))
        write_text(steps_path, "".join(json.dumps(r) + "\n" for r in res.step_log))
        texts = pd.read_parquet(Path(prepared_dir) / "train.parquet", columns=["id", "text"]).set_index("id")["text"]
        for name, table in cartography_tables(res, train_ds, names, bands["class_band"], texts).items():
            write_csv(Path(cartography_dir) / f"cartography_{name}.csv", table)
        write_json(speed_path, speed_summary(res, t))
        worst_cols = ["epoch", "rank", "id", "gold", "predicted", "p_gold", "p_predicted", "loss", "text"]
        write_csv(Path(cartography_dir) / "val_worst_k.csv", pd.concat(worst)[worst_cols])
        write_json(metrics_path, metrics)  # last: a failed run leaves no metrics file
        partial.unlink(missing_ok=True)
    return metrics
