"""The evaluate stage: the Stage-2 model on the test split (and val, for reference).

Writes the test/val summary metrics (Task1, Task2, combined "N + Decline" view, consistency), the
per-class table, the per-band figures, the test rows with the highest Task2 loss, the confusion pairs
and the per-row predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader

from ..config.params import Params
from ..data.batching import SortedBatchSampler, TokenizedDataset, make_collate
from ..data.io import write_csv, write_json
from ..evaluate.metrics import IGNORE, softmax
from ..evaluate.tables import band_table, per_class_table, predictions_table, split_metrics, worst_k_table
from ..model.two_head import load_stage2
from ..train.device import make_accelerator
from ..train.loop import predict
from .prepared import read_label_info, texts_by_id


@dataclass(frozen=True)
class EvaluatePaths:
    """Inputs: prepared labels, tokenized splits, the Stage-2 model. Outputs: test metrics and tables."""

    prepared: Path
    tokenized: Path
    stage2_model: Path
    test_metrics: Path
    band_metrics: Path
    per_class: Path
    worst_k: Path
    confusion: Path
    predictions: Path


def run(p: Params, paths: EvaluatePaths) -> dict:
    e = p.eval
    model, tok, maps = load_stage2(paths.stage2_model)
    names = maps["task2"]["names"]
    info = read_label_info(paths.prepared)
    bands, train_support = info.bands, info.class_weights["task2"]["support"]
    accelerator = make_accelerator(p.train.device, "fp32", 1)
    model = accelerator.prepare(model)
    collate = make_collate(tok.pad_token_id)

    results, test = {}, None
    for split in ("test", "val"):
        ds = TokenizedDataset(paths.tokenized / f"{split}.parquet", tok.pad_token_id)
        batches = SortedBatchSampler(ds.lengths, p.train.eval_batch_size)
        loader = accelerator.prepare(DataLoader(ds, batch_sampler=batches, collate_fn=collate))
        logits1, logits2 = predict(accelerator, model, loader, len(ds), desc=f"evaluate {split}")
        probs1, probs2 = softmax(logits1), softmax(logits2)
        results[split] = split_metrics(ds.labels_binary, ds.labels_category, probs1, probs2, len(names), e)
        if split == "test":
            test = (ds, probs1, probs2)

    ds, probs1, probs2 = test
    y1, y2, ids = ds.labels_binary, ds.labels_category, ds.ids
    pred2 = probs2.argmax(1)
    per_class = per_class_table(y2, pred2, names, bands["class_band"], train_support)
    texts = texts_by_id(paths.prepared, "test").loc[ids].to_numpy()
    m = y2 != IGNORE
    name_arr = np.asarray(names, dtype=object)
    if accelerator.is_main_process:
        write_csv(paths.per_class, per_class)
        write_json(paths.band_metrics, band_table(y2, pred2, names, bands, per_class))
        write_csv(paths.worst_k, worst_k_table(ids, texts, y2, probs2, names, e.worst_k))
        write_csv(paths.confusion, pd.DataFrame({"actual": name_arr[y2[m]], "predicted": name_arr[pred2[m]]}))
        write_csv(paths.predictions, predictions_table(ids, y1, y2, probs1, probs2, names, e))
        write_json(paths.test_metrics, results)  # last: a failed run leaves no metrics file
    return results
