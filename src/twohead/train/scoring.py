"""The kept Stage-2 model's logits on a tokenized split (shared by the calibrate and evaluate stages)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from ..config.errors import DataError
from ..data.batching import SortedBatchSampler, TokenizedDataset, batch_shapes, make_collate, resolve_padding
from ..model.two_head import load_stage2, read_stage2_meta
from .device import make_accelerator
from .loop import predict_logits


class Scorer:
    """The model of ``stage2_model`` on ``device`` (fp32), ready to score tokenized splits; batches padded as
    ``padding`` says (``train.padding``: auto | buckets | longest); ``shapes`` collects the (rows, length) batch
    shapes scored so far."""

    def __init__(self, stage2_model: str | Path, device: str, batch_size: int, padding: str = "auto"):
        self.model_dir = Path(stage2_model)
        model, self.tokenizer, self.label_maps = load_stage2(stage2_model)
        self.names: list[str] = self.label_maps["task2"]["names"]
        self.accelerator = make_accelerator(device, "fp32", 1)
        self.model = self.accelerator.prepare(model)
        self.batch_size = batch_size
        self.padding = resolve_padding(padding, self.accelerator.device.type)
        self.cap = read_stage2_meta(self.model_dir)[0].get("max_length")
        self.shapes: set[tuple[int, int]] = set()

    def check_classes(self, names: list[str], prepared: Path) -> None:
        """The model was trained on these categories (``prepared``'s label map), or a one-line error."""
        if list(self.names) != list(names):
            raise DataError(f"{self.model_dir}: its {len(self.names)} categories ({', '.join(self.names[:3])}, …) are"
                            f" not those of {prepared} ({len(names)}: {', '.join(names[:3])}, …): the model comes"
                            " from another run; re-run train_stage2 (dvc repro)")

    def split(self, tokenized: Path, split: str) -> tuple[TokenizedDataset, np.ndarray, np.ndarray]:
        """(dataset, Task1 logits, Task2 logits) of ``<tokenized>/<split>.parquet``, rows in file order."""
        ds = TokenizedDataset(Path(tokenized) / f"{split}.parquet", self.tokenizer.pad_token_id)
        sampler = SortedBatchSampler(ds.lengths, self.batch_size)
        self.shapes.update(batch_shapes(ds.lengths, list(sampler), self.padding, self.cap))
        loader = self.accelerator.prepare(DataLoader(ds, batch_sampler=sampler, collate_fn=make_collate(
            self.tokenizer.pad_token_id, self.padding, self.cap)))
        logits1, logits2 = predict_logits(self.accelerator, self.model, loader, len(ds), desc=f"score {split}")
        return ds, logits1, logits2
