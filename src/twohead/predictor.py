"""The trained Stage-2 model on new texts: ``Predictor("models/stage2").predict(["text", …])`` → a DataFrame.

Reads everything from the model directory (no ``params.yaml``): tokenizer, ``max_length`` and pooling
as in training, label names. **The decision** (temperatures, Task2 class-prior correction, Decline rule, chosen
on val by the calibrate stage) comes from ``decision.json`` beside the model directory (``models/decision.json``
for ``models/stage2``) or the ``decision`` argument; ``plain=True`` ignores it (raw softmax, Decline when
P(Pick) < 0.5, the argmax: the rule of ``plots/predictions.csv``). Texts are tokenized exactly as the tokenize
stage does, batched by length and run through the same prediction pass as the evaluate stage.

Output columns, in input order: ``id``, ``p_pick``, ``pick`` (Pick / Decline under the rule), ``top1`` …
``top{k}`` with ``p_top1`` … (Task2 categories by probability) and ``combined`` (the top category, or
``Decline``). With a decision the probabilities are the calibrated ones; with a prior correction the Task2
ranking follows the corrected scores and ``p_top*`` are those classes' calibrated probabilities (so they need
not decrease); ``rank_score_top1`` … are then written too: the corrected scores as probabilities (softmax of
z2 / T2 − τ · log prior), which do decrease and are what ranks the categories. An empty text gets no prediction: its
row is kept (so rows line up with the input) with empty fields, and :attr:`Predictor.skipped` counts it.

What the model could not read is counted, not hidden: :attr:`Predictor.truncated` (texts longer than
``max_length`` tokens: the model sees their first ``max_length`` tokens, as in training) and
:attr:`Predictor.unreadable` (texts whose tokens are mostly the tokenizer's unknown token, more than
:data:`UNKNOWN_SHARE`: a script the tokenizer does not cover; their predictions carry no information).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader

from .config.errors import CheckpointError
from .data.batching import SortedBatchSampler, TokenizedDataset, batch_shapes, make_collate, resolve_padding
from .data.labels import IGNORE, visible
from .data.tokenization import encode, to_arrow
from .evaluate.decision import DECISION_FILE, PLAIN, decide, read_decision
from .evaluate.metrics import softmax
from .evaluate.tables import topk_names
from .model.two_head import load_stage2
from .train.device import make_accelerator
from .train.loop import predict_logits

#: a text is counted as unreadable when more than this share of its (non-special) tokens are unknown
UNKNOWN_SHARE = 0.5


def _is_empty(text) -> bool:
    """No text, or only whitespace and invisible format characters (a zero-width-only cell is empty too)."""
    return text is None or (isinstance(text, float) and np.isnan(text)) or not visible(str(text))


class Predictor:
    """A loaded Stage-2 model. ``device``: auto (mps → cuda → cpu) | mps | cuda | cpu; ``padding``: auto | buckets
    | longest (as ``train.padding``); ``shapes``: the (rows, length) batch shapes run so far."""

    def __init__(self, model_dir: str | Path, device: str = "auto", batch_size: int = 64,
                 pick_threshold: float | None = None, decision: str | Path | None = None, plain: bool = False,
                 padding: str = "auto", max_batch_tokens: int = 4096):
        d = Path(model_dir)
        if not d.is_dir():
            raise CheckpointError(f"{d}: model directory not found")
        self.decision, self.decision_path, self.missing_decision, classes = PLAIN, None, None, None
        if not plain:  # read (and its values checked) before the model is loaded
            path = Path(decision) if decision is not None else d.parent / DECISION_FILE
            if decision is not None or path.is_file():
                self.decision, data = read_decision(path)
                self.decision_path, classes = path, data.get("classes")
            else:
                self.missing_decision = path
        if pick_threshold is not None:
            if not 0 < pick_threshold < 1:
                raise CheckpointError(f"pick threshold must be in (0, 1), got {pick_threshold}")
            self.decision = dataclasses.replace(self.decision, pick_threshold=float(pick_threshold))
        self.pick_threshold = self.decision.pick_threshold
        model, self.tokenizer, maps = load_stage2(d)
        if self.decision_path is not None:  # the decision must belong to this model
            self.decision.check_classes(maps["task2"]["names"], classes, str(self.decision_path))
        meta = json.loads((d / "twohead.json").read_text(encoding="utf-8"))
        params = meta.get("params", {})
        self.max_length = int(meta.get("max_length") or params.get("tokenize", {}).get("max_length", 512))
        # long texts cut as in training (models saved before tokenize.truncation kept the head)
        self.truncation = meta.get("truncation", "head") if meta.get("truncation") in ("head", "head_tail") \
            else "head"
        head_share = meta.get("head_share", 0.25)
        self.head_share = float(head_share) if isinstance(head_share, (int, float)) and 0 <= head_share <= 1 \
            else 0.25
        self.names: list[str] = maps["task2"]["names"]
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens   # rows × longest row per batch: bounds memory on long texts
        self.accelerator = make_accelerator(device, "fp32", 1)
        self.model = self.accelerator.prepare(model)
        self.padding = resolve_padding(padding, self.accelerator.device.type)
        self.shapes: set[tuple[int, int]] = set()
        self.skipped = self.truncated = self.unreadable = 0

    def _count_unreadable(self, ids: list[list[int]]) -> int:
        """Texts whose content tokens (special tokens and bare word-boundary marks such as SentencePiece's
        "▁" left out) are mostly the unknown token."""
        unk = self.tokenizer.unk_token_id
        if unk is None:
            return 0
        special = set(self.tokenizer.all_special_ids) - {unk}
        blank: dict[int, bool] = {}

        def is_content(t: int) -> bool:
            if t in special:
                return False
            if t not in blank:
                piece = self.tokenizer.convert_ids_to_tokens(t) or ""
                blank[t] = not piece.strip("▁Ġ #")
            return not blank[t]
        n = 0
        for x in ids:
            content = [t for t in x if is_content(t)]
            if content and sum(t == unk for t in content) > UNKNOWN_SHARE * len(content):
                n += 1
        return n

    def logits(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Both heads' logits per text (float32)."""
        texts = [str(t) for t in texts]
        self.truncated = self.unreadable = 0
        if not texts:
            return np.zeros((0, 2), np.float32), np.zeros((0, len(self.names)), np.float32)
        ids, self.truncated = encode(self.tokenizer, texts, self.max_length, 1000, desc="tokenize",
                                     truncation=self.truncation, head_share=self.head_share)
        self.unreadable = self._count_unreadable(ids)
        rows = pd.DataFrame({"id": np.arange(len(texts)).astype(str), "labels_task1": IGNORE,
                             "labels_task2": IGNORE})
        ds = TokenizedDataset(to_arrow(rows, ids), self.tokenizer.pad_token_id)
        sampler = SortedBatchSampler(ds.lengths, self.batch_size, self.max_batch_tokens)
        self.shapes.update(batch_shapes(ds.lengths, list(sampler), self.padding, self.max_length))
        loader = DataLoader(ds, batch_sampler=sampler,
                            collate_fn=make_collate(self.tokenizer.pad_token_id, self.padding, self.max_length))
        return predict_logits(self.accelerator, self.model, loader, len(ds), desc="predict")

    def predict(self, texts: Sequence[str], ids: Sequence | None = None, top_k: int = 3) -> pd.DataFrame:
        """One row per text, in input order (see the module docstring for the columns)."""
        n = len(texts)
        ids = np.arange(n) if ids is None else np.asarray(ids, dtype=object)
        if len(ids) != n:
            raise ValueError(f"{len(ids)} ids for {n} texts")
        k = max(1, min(top_k, len(self.names)))
        keep = np.array([not _is_empty(t) for t in texts], dtype=bool)
        self.skipped = int((~keep).sum())
        d = decide(self.decision, *self.logits([t for t, ok in zip(texts, keep) if ok]))
        probs1, probs2 = d.p1, d.p2
        out = pd.DataFrame({"id": ids})
        p_pick = np.full(n, np.nan)
        p_pick[keep] = probs1[:, 1]
        out["p_pick"] = p_pick
        declined = np.zeros(n, dtype=bool)
        declined[keep] = d.decline
        pick = np.where(declined, "Decline", "Pick").astype(object)
        pick[~keep] = ""
        out["pick"] = pick
        top_n, top_p = topk_names(probs2, self.names, k, order_by=d.scores)
        corrected = bool(self.decision.tau)
        ranked = topk_names(softmax(d.scores), self.names, k)[1] if corrected else None
        for j in range(k):
            names = np.full(n, "", dtype=object)
            names[keep] = top_n[:, j]
            probs = np.full(n, np.nan)
            probs[keep] = top_p[:, j]
            out[f"top{j + 1}"], out[f"p_top{j + 1}"] = names, probs
        for j in range(k if corrected else 0):   # the order's own scores: descending, unlike p_top* under τ ≠ 0
            score = np.full(n, np.nan)
            score[keep] = ranked[:, j]
            out[f"rank_score_top{j + 1}"] = score
        out["combined"] = np.where(pick == "Decline", "Decline", out["top1"])
        return out

    def start_notices(self) -> list[str]:
        """What to say before scoring: a missing decision file means the plain rule (after a failed calibrate, say)."""
        if self.missing_decision is None:
            return []
        return [f"no decision file at {self.missing_decision} (the calibrate stage writes it): the plain rule applies"
                " (raw softmax, Decline when P(Pick) < 0.5); run `dvc repro calibrate`, or pass --plain to say so"]

    def notices(self) -> list[str]:
        """What the last :meth:`predict` could not fully read, one sentence each (empty when all was read)."""
        out = []
        if self.skipped:
            out.append(f"{self.skipped} row(s) with empty text got no prediction (empty fields)")
        if self.truncated:
            out.append(f"{self.truncated} row(s) longer than {self.max_length} tokens were truncated (the model reads"
                       " their first tokens only, as in training)")
        if self.unreadable:
            out.append(f"{self.unreadable} row(s) are mostly unknown tokens (over {UNKNOWN_SHARE:.0%}): the tokenizer"
                       " does not cover their script, so their predictions carry no information")
        return out


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (the output would overwrite the input)."""
    a, b = Path(a), Path(b)
    if str(a) == "-" or str(b) == "-":
        return False
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def predict_file(predictor: Predictor, chunks, out: str | Path, fmt: str, top_k: int) -> dict:
    """Score (texts, ids) chunks into ``out`` chunk by chunk (memory flat in the number of rows); the output appears
    only when complete. Returns the counts over every chunk: rows, picked, skipped, truncated, unreadable."""
    from .data.stream import table_writer

    counts = {"rows": 0, "picked": 0, "skipped": 0, "truncated": 0, "unreadable": 0}
    with table_writer(out, fmt) as writer:
        for texts, ids in chunks:
            df = predictor.predict(texts, ids=ids, top_k=top_k)
            writer.write(df)
            counts["rows"] += len(df)
            counts["picked"] += int((df["pick"] == "Pick").sum())
            for k in ("skipped", "truncated", "unreadable"):
                counts[k] += getattr(predictor, k)
    predictor.skipped, predictor.truncated, predictor.unreadable = (counts[k] for k in
                                                                    ("skipped", "truncated", "unreadable"))
    return counts
