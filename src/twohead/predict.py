"""The trained Stage-2 model on new texts: ``Predictor("models/stage2").predict(["text", …])`` → a DataFrame.

Reads everything from the model directory (no ``params.yaml``): tokenizer, ``max_length`` and pooling
as in training, label names, and the Pick threshold the model was evaluated with. Texts are tokenized
exactly as the tokenize stage does, batched by length (least padding) and run in inference mode through
the same prediction pass as the evaluate stage, so the probabilities agree with ``plots/predictions.csv``.

Output columns, in input order: ``id``, ``p_pick``, ``pick`` (Pick / Decline at the threshold),
``top1`` … ``top{k}`` with ``p_top1`` … (Task2 categories by probability) and ``combined`` (the top
category, or ``Decline`` when P(Pick) is below the threshold). An empty text gets no prediction: its
row is kept (so rows line up with the input) with empty fields, and :attr:`Predictor.skipped` counts it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader

from .config.errors import CheckpointError
from .data.batching import SortedBatchSampler, TokenizedDataset, make_collate
from .data.labels import IGNORE
from .data.tokenization import encode, to_arrow
from .evaluate.metrics import softmax
from .evaluate.tables import topk_names
from .model.two_head import load_stage2
from .train.device import make_accelerator
from .train.loop import predict as predict_logits


def _is_empty(text) -> bool:
    return text is None or (isinstance(text, float) and np.isnan(text)) or not str(text).strip()


class Predictor:
    """A loaded Stage-2 model. ``device``: auto (mps → cuda → cpu) | mps | cuda | cpu."""

    def __init__(self, model_dir: str | Path, device: str = "auto", batch_size: int = 64,
                 pick_threshold: float | None = None):
        d = Path(model_dir)
        if not d.is_dir():
            raise CheckpointError(f"{d}: model directory not found")
        model, self.tokenizer, maps = load_stage2(d)
        meta = json.loads((d / "twohead.json").read_text(encoding="utf-8"))
        params = meta.get("params", {})
        self.max_length = int(meta.get("max_length") or params.get("tokenize", {}).get("max_length", 512))
        stored = meta.get("pick_threshold", params.get("eval", {}).get("pick_threshold", 0.5))
        self.pick_threshold = float(stored if pick_threshold is None else pick_threshold)
        if not 0 < self.pick_threshold < 1:
            raise CheckpointError(f"pick threshold must be in (0, 1), got {self.pick_threshold}")
        self.names: list[str] = maps["task2"]["names"]
        self.batch_size = batch_size
        self.accelerator = make_accelerator(device, "fp32", 1)
        self.model = self.accelerator.prepare(model)
        self.skipped = 0

    def predict_proba(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """P(Decline), P(Pick) per text ``[n, 2]`` and the Task2 probabilities ``[n, N]`` (float32)."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, 2), np.float32), np.zeros((0, len(self.names)), np.float32)
        ids, _ = encode(self.tokenizer, texts, self.max_length, 1000, desc="tokenize")
        rows = pd.DataFrame({"id": np.arange(len(texts)).astype(str), "labels_binary": IGNORE,
                             "labels_category": IGNORE})
        ds = TokenizedDataset(to_arrow(rows, ids), self.tokenizer.pad_token_id)
        loader = DataLoader(ds, batch_sampler=SortedBatchSampler(ds.lengths, self.batch_size),
                            collate_fn=make_collate(self.tokenizer.pad_token_id))
        logits1, logits2 = predict_logits(self.accelerator, self.model, loader, len(ds), desc="predict")
        return softmax(logits1), softmax(logits2)

    def predict(self, texts: Sequence[str], ids: Sequence | None = None, top_k: int = 3) -> pd.DataFrame:
        """One row per text, in input order (see the module docstring for the columns)."""
        n = len(texts)
        ids = np.arange(n) if ids is None else np.asarray(ids, dtype=object)
        if len(ids) != n:
            raise ValueError(f"{len(ids)} ids for {n} texts")
        k = max(1, min(top_k, len(self.names)))
        keep = np.array([not _is_empty(t) for t in texts], dtype=bool)
        self.skipped = int((~keep).sum())
        probs1, probs2 = self.predict_proba([t for t, ok in zip(texts, keep) if ok])
        out = pd.DataFrame({"id": ids})
        p_pick = np.full(n, np.nan)
        p_pick[keep] = probs1[:, 1]
        out["p_pick"] = p_pick
        pick = np.where(p_pick >= self.pick_threshold, "Pick", "Decline").astype(object)
        pick[~keep] = ""
        out["pick"] = pick
        top_n, top_p = topk_names(probs2, self.names, k)
        for j in range(k):
            names = np.full(n, "", dtype=object)
            names[keep] = top_n[:, j]
            probs = np.full(n, np.nan)
            probs[keep] = top_p[:, j]
            out[f"top{j + 1}"], out[f"p_top{j + 1}"] = names, probs
        out["combined"] = np.where(pick == "Decline", "Decline", out["top1"])
        return out
