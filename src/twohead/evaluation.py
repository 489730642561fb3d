"""The evaluate stage: the Stage-2 model on the test split (and val, for reference).

Writes ``metrics/test.json`` (per split: Task1, Task2, combined "N + Decline" view, consistency),
``metrics/per_class.csv``, ``metrics/bands.json``, ``metrics/worst_k.csv`` (test rows with the highest
Task2 loss, −log p(gold), no weights or smoothing), ``plots/confusion.csv`` and ``plots/predictions.csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support
from torch.utils.data import DataLoader

from .batching import SortedBatchSampler, TokenizedDataset, make_collate
from .device import make_accelerator
from .io import read_json, write_csv, write_json
from .loop import predict
from .metrics import IGNORE, combined_view, consistency, softmax, task1_metrics, task2_metrics
from .model import load_stage2
from .params import Params

TEXT_CUT = 200


def split_metrics(y1, y2, probs1, probs2, n_classes: int, e) -> dict:
    """All summary metrics of one split from its probabilities (``e``: the eval params)."""
    p_pick = probs1[:, 1]
    pred1 = (p_pick >= e.pick_threshold).astype(int)
    pred2 = probs2.argmax(1)
    m1, m2 = task1_metrics(y1, pred1), task2_metrics(y2, pred2)
    return {
        "rows": int(len(y1)),
        "task1": {"acc": m1["acc_task1"], "precision_pick": m1["precision_pick"], "recall_pick": m1["recall_pick"],
                  "f1_pick": m1["f1_pick"], "rows": int((y1 != IGNORE).sum())},
        "task2": {"acc": m2["acc_task2"], "macro_f1": m2["macro_f1_task2"], "weighted_f1": m2["weighted_f1_task2"],
                  "rows": int((y2 != IGNORE).sum())},
        "combined": combined_view(y1, y2, p_pick, pred2, n_classes, e.pick_threshold),
        "consistency": consistency(y1, p_pick, probs2.max(1), e.pick_threshold, e.low_confidence, e.high_confidence),
    }


def per_class_table(y2, pred2, names, class_band, train_support) -> pd.DataFrame:
    m = y2 != IGNORE
    ids = np.arange(len(names))
    p, r, f, s = precision_recall_fscore_support(y2[m], pred2[m], labels=ids, average=None, zero_division=0)
    df = pd.DataFrame({"class": names, "band": [class_band[n] for n in names], "train_support": train_support,
                       "test_support": s, "precision": p, "recall": r, "f1": f})
    df.loc[df["test_support"] == 0, ["recall", "f1"]] = np.nan  # undefined without gold rows
    return df


def band_table(y2, pred2, names, bands: dict, per_class: pd.DataFrame) -> dict:
    out = {}
    for band in bands["names"]:
        members = [i for i, n in enumerate(names) if bands["class_band"][n] == band]
        rows = np.isin(y2, members)
        scored = per_class[(per_class["band"] == band) & (per_class["test_support"] > 0)]
        out[band] = {
            "mean_recall": float(scored["recall"].mean()) if len(scored) else float("nan"),
            "accuracy": float((pred2[rows] == y2[rows]).mean()) if rows.any() else float("nan"),
            "support": int(rows.sum()),
            "n_classes": int(len(members)),
            "n_classes_scored": int(len(scored)),
        }
    return out


def topk_names(probs2: np.ndarray, names: list[str], k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-probs2, axis=1, kind="stable")[:, :k]
    return np.asarray(names, dtype=object)[order], np.take_along_axis(probs2, order, axis=1)


def predictions_table(ids, y1, y2, probs1, probs2, names, e) -> pd.DataFrame:
    name_arr = np.asarray(list(names) + [""], dtype=object)
    p_pick = probs1[:, 1]
    top_n, top_p = topk_names(probs2, names)
    df = pd.DataFrame({
        "id": ids,
        "gold_pick": np.where(y1 == 1, "Pick", np.where(y1 == 0, "Decline", "")),
        "gold_category": name_arr[np.where(y2 == IGNORE, len(names), y2)],
        "p_pick": p_pick,
        "pred_pick": np.where(p_pick >= e.pick_threshold, "Pick", "Decline"),
        "pred_category": top_n[:, 0],
        "combined_pred": np.where(p_pick >= e.pick_threshold, top_n[:, 0], "Decline"),
    })
    for j in range(top_n.shape[1]):
        df[f"top{j + 1}"] = top_n[:, j]
        df[f"p_top{j + 1}"] = top_p[:, j]
    return df


def worst_k_table(ids, texts, y2, probs2, names, k: int) -> pd.DataFrame:
    m = np.nonzero(y2 != IGNORE)[0]
    p_gold = probs2[m, y2[m]]
    loss = -np.log(np.clip(p_gold, 1e-12, 1.0))
    order = m[np.argsort(-loss, kind="stable")[:k]]
    pred = probs2[order].argmax(1)
    return pd.DataFrame({
        "id": ids[order],
        "text": [t if len(t) <= TEXT_CUT else t[:TEXT_CUT - 1] + "…" for t in texts[order]],
        "gold": np.asarray(names, dtype=object)[y2[order]],
        "predicted": np.asarray(names, dtype=object)[pred],
        "p_gold": probs2[order, y2[order]],
        "p_predicted": probs2[order, pred],
        "loss": -np.log(np.clip(probs2[order, y2[order]], 1e-12, 1.0)),
    })


def run_evaluate(p: Params, prepared_dir="data/prepared", tokenized_dir="data/tokenized", model_dir="models/stage2",
                 metrics_path="metrics/test.json", per_class_path="metrics/per_class.csv",
                 bands_path="metrics/bands.json", worst_k_path="metrics/worst_k.csv",
                 confusion_path="plots/confusion.csv", predictions_path="plots/predictions.csv") -> dict:
    e = p.eval
    model, tok, maps = load_stage2(model_dir)
    names = maps["task2"]["names"]
    bands = read_json(Path(prepared_dir) / "bands.json")
    train_support = read_json(Path(prepared_dir) / "class_weights.json")["task2"]["support"]
    accelerator = make_accelerator(p.train.device, "fp32", 1)
    model = accelerator.prepare(model)
    collate = make_collate(tok.pad_token_id)

    results, test = {}, None
    for split in ("test", "val"):
        ds = TokenizedDataset(Path(tokenized_dir) / f"{split}.parquet", tok.pad_token_id)
        loader = accelerator.prepare(DataLoader(ds, batch_sampler=SortedBatchSampler(ds.lengths, p.train.eval_batch_size),
                                                collate_fn=collate))
        logits1, logits2 = predict(accelerator, model, loader, len(ds), desc=f"evaluate {split}")
        probs1, probs2 = softmax(logits1), softmax(logits2)
        results[split] = split_metrics(ds.labels_binary, ds.labels_category, probs1, probs2, len(names), e)
        if split == "test":
            test = (ds, probs1, probs2)

    ds, probs1, probs2 = test
    y1, y2, ids = ds.labels_binary, ds.labels_category, ds.ids
    pred2 = probs2.argmax(1)
    per_class = per_class_table(y2, pred2, names, bands["class_band"], train_support)
    texts = pd.read_parquet(Path(prepared_dir) / "test.parquet", columns=["id", "text"]).set_index("id").loc[ids, "text"].to_numpy()
    m = y2 != IGNORE
    name_arr = np.asarray(names, dtype=object)
    if accelerator.is_main_process:
        write_csv(per_class_path, per_class)
        write_json(bands_path, band_table(y2, pred2, names, bands, per_class))
        write_csv(worst_k_path, worst_k_table(ids, texts, y2, probs2, names, e.worst_k))
        write_csv(confusion_path, pd.DataFrame({"actual": name_arr[y2[m]], "predicted": name_arr[pred2[m]]}))
        write_csv(predictions_path, predictions_table(ids, y1, y2, probs1, probs2, names, e))
        write_json(metrics_path, results)  # last: a failed run leaves no metrics file
    return results
