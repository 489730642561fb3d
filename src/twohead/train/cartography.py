"""Dataset cartography (Swayamdipta et al., 2020): training dynamics per training row and task.

Recorded from the **training forward pass** of each epoch (dropout on, weights changing — the
paper's setting), for every row labelled for the task: the gold label's probability and whether the
argmax was right. Stored in device tensors indexed by row and read once at the end of training.

Per row: ``confidence`` = mean gold probability over epochs, ``variability`` = its standard deviation
(population, ddof 0), ``correctness`` = share of epochs whose prediction was right. Regions, by
percentiles within the task: ``ambiguous`` = variability in the top third; otherwise ``hard-to-learn``
= confidence in the bottom third; otherwise ``easy-to-learn`` = confidence in the top third; else
``middle``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .losses import IGNORE


class CartographyRecorder:
    def __init__(self, n_rows: int, epochs: int, device):
        shape = (n_rows, epochs)
        self.prob = [torch.full(shape, float("nan"), device=device) for _ in range(2)]
        self.right = [torch.zeros(shape, dtype=torch.bool, device=device) for _ in range(2)]

    @torch.no_grad()
    def record(self, epoch: int, index: torch.Tensor, logits1: torch.Tensor, logits2: torch.Tensor,
               y1: torch.Tensor, y2: torch.Tensor) -> None:
        for task, (logits, y) in enumerate(((logits1, y1), (logits2, y2))):
            valid = y != IGNORE
            safe = torch.where(valid, y, torch.zeros_like(y))
            p = torch.softmax(logits.float(), dim=-1).gather(1, safe.unsqueeze(1)).squeeze(1)
            self.prob[task][index, epoch] = torch.where(valid, p, torch.full_like(p, float("nan")))
            self.right[task][index, epoch] = (logits.argmax(-1) == y) & valid

    def arrays(self, accelerator=None) -> list[tuple[np.ndarray, np.ndarray]]:
        """(probabilities [rows, epochs], correct [rows, epochs]) per task, merged across processes."""
        out = []
        for prob, right in zip(self.prob, self.right):
            if accelerator is not None and accelerator.num_processes > 1:
                filled = (~prob.isnan()).float()
                total = accelerator.reduce(torch.nan_to_num(prob), "sum")
                count = accelerator.reduce(filled, "sum")
                prob = torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))
                right = accelerator.reduce(right.float(), "sum") > 0
            out.append((prob.cpu().numpy(), right.cpu().numpy()))
        return out


def cartography_table(ids: np.ndarray, prob: np.ndarray, right: np.ndarray, gold: np.ndarray) -> pd.DataFrame:
    """One row per training row labelled for the task: confidence, variability, correctness, region."""
    seen = ~np.isnan(prob)
    keep = seen.all(axis=1)
    p, r = prob[keep], right[keep]
    df = pd.DataFrame({"id": ids[keep], "gold": gold[keep], "confidence": p.mean(1), "variability": p.std(1),
                       "correctness": r.mean(1)})
    if len(df):
        v_hi = np.quantile(df["variability"], 2 / 3)
        c_lo, c_hi = np.quantile(df["confidence"], [1 / 3, 2 / 3])
        df["region"] = np.select(
            [df["variability"] >= v_hi, df["confidence"] <= c_lo, df["confidence"] >= c_hi],
            ["ambiguous", "hard-to-learn", "easy-to-learn"], default="middle")
    else:
        df["region"] = []
    return df


def cartography_tables(arrays: list[tuple[np.ndarray, np.ndarray]], ids: np.ndarray, y1: np.ndarray, y2: np.ndarray,
                       names: list[str], class_band: dict, texts: pd.Series) -> dict[str, pd.DataFrame]:
    """The two per-task tables and the flagged (hard-to-learn / ambiguous) rows with their text.
    ``arrays`` = :meth:`CartographyRecorder.arrays`; ``texts`` is indexed by row id."""
    (p1, r1), (p2, r2) = arrays
    t1 = cartography_table(ids, p1, r1, np.where(y1 == 1, "Pick", np.where(y1 == 0, "Decline", "")))
    gold2 = np.asarray(list(names) + [""], dtype=object)[np.where(y2 == IGNORE, len(names), y2)]
    t2 = cartography_table(ids, p2, r2, gold2)
    t2.insert(2, "band", [class_band.get(c, "") for c in t2["gold"]])
    flagged = pd.concat([t.assign(task=task) for task, t in (("task1", t1), ("task2", t2))])
    flagged = flagged[flagged["region"].isin(["hard-to-learn", "ambiguous"])]
    flagged = flagged.sort_values(["task", "region", "confidence"])
    text = texts.reindex(flagged["id"]).fillna("").astype(str)
    flagged["text"] = [x if len(x) <= 200 else x[:199] + "…" for x in text]
    cols = ["task", "region", "id", "gold", "confidence", "variability", "correctness", "text"]
    return {"task1": t1, "task2": t2, "flagged": flagged[cols]}
