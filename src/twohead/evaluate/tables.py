"""Evaluation tables from probabilities: split metrics, per-class and per-band tables, predictions,
worst-K rows (the highest Task2 loss, −log p(gold), no weights or smoothing). Arrays in, tables out;
the evaluate stage (:mod:`twohead.pipeline.evaluate`) decides where they go."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config.schema import report_tree
from .calibration import ece
from .metrics import IGNORE, combined_view, consistency, task1_metrics, task2_metrics, topk_metrics

TEXT_CUT = 200


def split_metrics(y1, y2, probs1, probs2, n_classes: int, e, decline=None, pred2=None, scores2=None) -> dict:
    """All summary metrics of one split from its probabilities (``e``: the eval params). ``decline`` / ``pred2``:
    the decided Decline mask and Task2 prediction (default: the plain rule, P(Pick) < 0.5 and the argmax);
    ``scores2``: what ranks the categories for top-k (default ``probs2``; the prior-corrected scores when decided);
    the consistency rates use ``probs2`` as given (raw, or the decided probabilities)."""
    p_pick = probs1[:, 1]
    decline = p_pick < 0.5 if decline is None else decline
    pred2 = probs2.argmax(1) if pred2 is None else pred2
    pred1 = (~decline).astype(int)
    combined = combined_view(y1, y2, decline, pred2, n_classes)
    values = {**task1_metrics(y1, pred1), **task2_metrics(y2, pred2), **combined,
              **topk_metrics(y2, probs2 if scores2 is None else scores2),
              "task1_ece": ece(probs1, y1, pred=pred1), "task2_ece": ece(probs2, y2, pred=pred2),
              **consistency(y1, decline, probs2.max(1), e.low_confidence, e.high_confidence)}
    tree = report_tree(values, ("task1", "task2", "combined", "consistency"))
    tree["task1"]["rows"] = int((y1 != IGNORE).sum())
    tree["task2"]["rows"] = int((y2 != IGNORE).sum())
    tree["combined"]["rows"] = combined["combined_rows"]
    return {"rows": int(len(y1)), **tree}


def per_class_table(y2, pred2, names, class_band, train_support) -> pd.DataFrame:
    from sklearn.metrics import precision_recall_fscore_support  # lazy: predict loads no sklearn
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


def topk_names(probs2: np.ndarray, names: list[str], k: int = 3,
               order_by: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k best classes per row (by ``order_by``, default the probabilities) and their probabilities."""
    order = np.argsort(-(probs2 if order_by is None else order_by), axis=1, kind="stable")[:, :k]
    return np.asarray(names, dtype=object)[order], np.take_along_axis(probs2, order, axis=1)


def predictions_table(ids, y1, y2, probs1, probs2, names) -> pd.DataFrame:
    """Per test row: gold labels, P(Pick), the plain rule's answers (Decline when P(Pick) < 0.5), Task2 top-3."""
    name_arr = np.asarray(list(names) + [""], dtype=object)
    p_pick = probs1[:, 1]
    top_n, top_p = topk_names(probs2, names)
    df = pd.DataFrame({
        "id": ids,
        "gold_pick": np.where(y1 == 1, "Pick", np.where(y1 == 0, "Decline", "")),
        "gold_category": name_arr[np.where(y2 == IGNORE, len(names), y2)],
        "p_pick": p_pick,
        "pred_pick": np.where(p_pick >= 0.5, "Pick", "Decline"),
        "pred_category": top_n[:, 0],
        "combined_pred": np.where(p_pick >= 0.5, top_n[:, 0], "Decline"),
    })
    for j in range(top_n.shape[1]):
        df[f"top{j + 1}"] = top_n[:, j]
        df[f"p_top{j + 1}"] = top_p[:, j]
    return df


def worst_k_table(ids, texts, y2, probs2, names, k: int) -> pd.DataFrame:
    safe = np.where(y2 != IGNORE, y2, 0)
    pred = probs2.argmax(1)
    return worst_k_rows(ids, texts, y2, probs2[np.arange(len(y2)), safe], pred, probs2[np.arange(len(y2)), pred],
                        names, k)


def worst_k_rows(ids, texts, y2, p_gold, pred, p_pred, names, k: int) -> pd.DataFrame:
    """The ``k`` labelled rows with the highest Task2 loss −log P(gold), worst first, from per-row arrays: the gold
    class's probability, the predicted class and its probability."""
    m = np.nonzero(y2 != IGNORE)[0]
    loss = -np.log(np.clip(p_gold[m], 1e-12, 1.0))
    order = m[np.argsort(-loss, kind="stable")[:k]]
    return pd.DataFrame({
        "id": ids[order],
        "text": [t if len(t) <= TEXT_CUT else t[:TEXT_CUT - 1] + "…" for t in texts[order]],
        "gold": np.asarray(names, dtype=object)[y2[order]],
        "predicted": np.asarray(names, dtype=object)[pred[order]],
        "p_gold": p_gold[order],
        "p_predicted": p_pred[order],
        "loss": -np.log(np.clip(p_gold[order], 1e-12, 1.0)),
    })


#: ``metrics/val_worst_k.csv``: the val worst-k of every epoch.
VAL_WORST_COLUMNS = ["epoch", "rank", "id", "gold", "predicted", "p_gold", "p_predicted", "loss", "text"]


def val_epoch_reports(epochs: pd.DataFrame, val: pd.DataFrame, names, low: float, high: float,
                      k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From what training recorded per epoch and val row (``metrics/val_epochs.parquet``: epoch, id, p_pick,
    pred_task2, p_pred_task2, p_gold_task2) and the val rows (id-indexed: text, labels_task1, labels_task2): the
    hierarchy-consistency rates per epoch under ``eval.low_confidence`` / ``high_confidence`` and the ``k`` val rows
    with the highest Task2 loss per epoch (``eval.worst_k``)."""
    from .metrics import consistency

    curve, worst = [], []
    for epoch, d in epochs.groupby("epoch", sort=True):
        rows = val.loc[d["id"].to_numpy()]
        y1, y2 = rows["labels_task1"].to_numpy(), rows["labels_task2"].to_numpy()
        c = consistency(y1, d["p_pick"].to_numpy() < 0.5, d["p_pred_task2"].to_numpy(), low, high)
        curve.append({"epoch": int(epoch), "gold_pick_low_conf": c["gold_pick_low_conf"],
                      "gold_decline_high_conf": c["gold_decline_high_conf"]})
        t = worst_k_rows(d["id"].to_numpy(dtype=object), rows["text"].fillna("").astype(str).to_numpy(dtype=object),
                         y2, d["p_gold_task2"].to_numpy(), d["pred_task2"].to_numpy(), d["p_pred_task2"].to_numpy(),
                         names, k)
        worst.append(t.assign(epoch=int(epoch), rank=np.arange(1, len(t) + 1)))
    table = pd.concat(worst)[VAL_WORST_COLUMNS] if worst else pd.DataFrame(columns=VAL_WORST_COLUMNS)
    return pd.DataFrame(curve, columns=["epoch", "gold_pick_low_conf", "gold_decline_high_conf"]), table
