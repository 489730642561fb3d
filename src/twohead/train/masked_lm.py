"""The masked-LM objective: what the MLM phase (``pretrain_mlm``) plugs into the one training run.

The phase trains with :func:`~twohead.train.fit.fit` like Stage 1 and Stage 2 — the same AdamW + LLRD groups, warmup
schedule, clipping, non-finite guard, resumable state, progress lines and speed file. Three things differ, and
:class:`MaskedLMObjective` is where each one lives:

* **the batches** (:meth:`~MaskedLMObjective.mask`): the usual padded batch, then transformers'
  ``DataCollatorForLanguageModeling.torch_mask_tokens`` picks ``mlm.mask_prob`` (15%) of the real tokens (never
  padding or special tokens) and replaces 80% of them with the mask token, 10% with a random token, 10% unchanged.
  The masks come from the phase's own generator (seeded by ``mlm.seed``), saved with the training state (the
  objective is also a :class:`~twohead.train.callbacks.Callback`), so a resumed run draws the same ones;
* **the forward and loss** (:meth:`~MaskedLMObjective.hook`): vocabulary logits at the masked positions, and the
  same masked cross-entropy as Task1's (:class:`~twohead.train.losses.TwoTaskLoss` with unit class weights over the
  vocabulary, no smoothing, λ2 = 0): the loss is the mean over masked tokens, as transformers' own;
* **validation** (:meth:`~MaskedLMObjective.validate`): the MLM loss and masked-token accuracy on the val split's
  texts, masked with a fixed seed, so every epoch is scored on the same masks (held out: val texts are never
  trained on unless ``mlm.transductive``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import torch

from ..config.schema import HISTORY_COLUMNS
from ..data.batching import TokenizedDataset, bucket_width
from ..data.prepared import read_split
from ..data.stream import iter_texts
from ..data.tokenization import encode, to_arrow
from ..model.masked_lm import IGNORE
from .callbacks import Callback
from .losses import LossAccumulator, TwoTaskLoss


class MaskedLMObjective(Callback):
    def __init__(self, tokenizer, mask_prob: float, seed: int):
        from transformers import DataCollatorForLanguageModeling

        self.masker = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=mask_prob)
        self.masker.generator = torch.Generator().manual_seed(seed)   # the training masks' stream
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        self.seed = seed
        self.buckets = False   # set by hook(): pad the masked positions to the bucket ladder

    def state_dict(self) -> dict:
        """Where the mask stream stands: a resumed run draws exactly the masks an uninterrupted one would."""
        return {"masks": self.masker.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.masker.generator.set_state(state["masks"])

    def mask(self, batch: dict) -> None:
        """Mask a padded batch in place: ``input_ids`` masked, ``mlm_positions`` = the masked tokens' flat indices
        (row-major) and ``labels_task1`` = their labels, as the epoch's accuracy counts expect. With bucketed shapes
        (``train.padding`` on MPS / CUDA) both are padded to the bucket ladder (label -100: no loss, not counted),
        so the head sees a short ladder of shapes, not one per batch. Drawn here, at the step (not in the loader,
        which Accelerate runs a batch ahead), so the stream's saved state is exactly the steps taken."""
        ids = batch["input_ids"]
        cpu = ids.cpu()
        special = (batch["attention_mask"].cpu() == 0) | torch.isin(cpu, self.special)
        masked, labels = self.masker.torch_mask_tokens(cpu.clone(), special_tokens_mask=special)
        flat = labels.reshape(-1)
        positions = (flat != IGNORE).nonzero().squeeze(1)
        y = flat[positions]
        if self.buckets:
            extra = bucket_width(len(positions)) - len(positions)
            positions = torch.cat([positions, positions.new_zeros(extra)])
            y = torch.cat([y, y.new_full((extra,), IGNORE)])
        batch.update({"input_ids": masked.to(ids.device), "mlm_positions": positions.to(ids.device),
                      "labels_task1": y.to(ids.device), "labels_task2": torch.full_like(y, IGNORE).to(ids.device)})

    def hook(self, loss_fn: TwoTaskLoss, padding: str = "longest"):
        """The step's forward + loss: mask the batch (:meth:`mask`), then ``(logits at the masked positions, an
        empty Task2, loss terms)``. ``padding``: the run's resolved ``train.padding``."""
        self.buckets = padding == "buckets"

        def forward_and_loss(model, batch):
            if "mlm_positions" not in batch:   # a batch is masked once
                self.mask(batch)
            logits = model(batch["input_ids"], batch["attention_mask"], batch["mlm_positions"])
            y = batch["labels_task1"]
            none = logits.new_zeros((logits.shape[0], 1))
            return logits, none, loss_fn.terms(logits, none, y, torch.full_like(y, IGNORE))

        return forward_and_loss

    @torch.inference_mode()
    def validate(self, accelerator, model, loader, loss_fn: TwoTaskLoss) -> dict[str, float]:
        """The val MLM loss (``val_loss_task1`` = ``val_loss_total``) and masked-token accuracy (``val_acc_task1``)
        under the history's column names (the rest NaN); the masks come from a generator seeded by ``seed`` each
        time, the training mask stream is left where it was."""
        model.eval()
        sums = LossAccumulator(accelerator.device)
        counts = torch.zeros(2, device=accelerator.device)
        forward = self.hook(loss_fn, "buckets" if self.buckets else "longest")
        training = self.masker.generator
        self.masker.generator = torch.Generator().manual_seed(self.seed)
        try:
            for batch in loader:
                logits, _, terms = forward(model, batch)
                sums.add(terms)
                y = batch["labels_task1"]
                counts += torch.stack([((logits.argmax(-1) == y) & (y != IGNORE)).sum(), (y != IGNORE).sum()])
        finally:
            self.masker.generator = training
        if accelerator.num_processes > 1:
            counts, sums.sums = accelerator.reduce(counts, "sum"), accelerator.reduce(sums.sums, "sum")
        loss = loss_fn.combine(sums.sums.tolist())
        correct, n = counts.tolist()
        out = dict.fromkeys((c for c in HISTORY_COLUMNS if c.startswith("val_")), float("nan"))
        out.update({"val_loss_total": loss["total"], "val_loss_task1": loss["task1"], "val_loss_hier": 0.0,
                    "val_acc_task1": correct / n if n else float("nan")})
        return out



def _table(texts: list[str], ids: list, tokenizer, p) -> pa.Table:
    t = p.tokenize
    tok_ids, _ = encode(tokenizer, [str(x) for x in texts], t.max_length, t.batch_size, desc="tokenize mlm",
                        truncation=t.truncation, head_share=t.head_share)
    frame = pd.DataFrame({"id": [str(i) for i in ids], "labels_task1": IGNORE, "labels_task2": IGNORE})
    return to_arrow(frame, tok_ids)


def mlm_datasets(p, prepared: Path, tokenizer) -> tuple[TokenizedDataset, TokenizedDataset, dict[str, int]]:
    """The phase's texts, tokenized as every stage tokenizes (``tokenize.*``): to train on, every **train-split**
    text (labelled or not), the unlabelled pool ``data.unlabeled_path`` (streamed in chunks; ids prefixed
    ``pool:``) and, only with ``mlm.transductive``, the val and test texts; to validate on, the val texts. Returns
    both datasets and the count of texts from each source."""
    tables, counts = [], {}
    names = ("train", "val", "test") if p.mlm.transductive else ("train",)
    for name in names:
        df = read_split(prepared, name, ["id", "text"])
        tables.append(_table(df["text"].tolist(), df["id"].tolist(), tokenizer, p))
        counts[f"{name}_texts"] = len(df)
    counts["pool_texts"] = 0
    if p.data.unlabeled_path:
        for texts, ids in iter_texts(p.data.unlabeled_path, p.data.text_column, None, p.data.encoding,
                                     encoding_hint="set data.encoding", allow_empty=True):
            tables.append(_table(texts, [f"pool:{i}" for i in ids], tokenizer, p))
            counts["pool_texts"] += len(texts)
    val = read_split(prepared, "val", ["id", "text"])
    train = TokenizedDataset(pa.concat_tables(tables), tokenizer.pad_token_id)
    val_ds = TokenizedDataset(_table(val["text"].tolist(), val["id"].tolist(), tokenizer, p), tokenizer.pad_token_id)
    return train, val_ds, counts
