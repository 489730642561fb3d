"""Bounded batch shapes (few distinct (rows, length) inputs per epoch, for MPS's per-shape graph cache and
``torch.compile``) and the device-memory figures / cache clearing of ``train.empty_cache_steps``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twohead.data.batching import (
    AUTO_PADDING,
    LengthGroupedBatchSampler,
    SortedBatchSampler,
    TokenizedDataset,
    batch_shapes,
    bucket_width,
    make_collate,
    pad_share,
    resolve_padding,
)
from twohead.train import memory


def test_the_ladder_is_short_and_never_pads_much():
    widths = sorted({bucket_width(n, 256) for n in range(1, 257)})
    assert widths == [16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256]
    assert all(bucket_width(n) >= n for n in range(1, 5000))
    assert max(bucket_width(n) / n for n in range(33, 5000)) <= 1.25   # at most a quarter more above 32 tokens
    assert bucket_width(190, cap=200) == 192 and bucket_width(195, cap=200) == 200   # never past max_length


@pytest.mark.parametrize("kind", ["mps", "cuda"])
def test_default_padding_bounds_the_shapes_of_every_epoch(kind):
    """Lengths spread over the whole range up to max_length 256, a last batch of another size: on MPS and CUDA the
    default gives ≤ 16 shapes per epoch in training and in evaluation; padding to the longest row gives ~100 (the
    CPU's default: no per-shape cost there, and the buckets' pads measured 5% slower)."""
    assert resolve_padding("auto", "cpu") == "longest" and resolve_padding("buckets", "cpu") == "buckets"
    lengths = np.random.default_rng(0).integers(5, 257, size=3001)
    padding = resolve_padding("auto", kind)
    assert padding == AUTO_PADDING[kind] == "buckets"
    sampler = LengthGroupedBatchSampler(lengths, 32, seed=1)
    for epoch in range(3):
        batches = sampler.batches(epoch)
        assert len(batch_shapes(lengths, batches, padding, 256)) <= 16
        assert len(batch_shapes(lengths, batches, "longest")) > 50
    assert len(batch_shapes(lengths, list(SortedBatchSampler(lengths, 64)), padding, 256)) <= 16
    assert pad_share(lengths, sampler.batches(0), padding, 256) < 0.15   # length grouping keeps padding low


def test_collate_pads_to_the_bucket_and_masks_the_pads():
    rows = [(np.arange(1, 34, dtype=np.int32), 1, 3, 0), (np.arange(1, 6, dtype=np.int32), 0, -100, 1)]
    b = make_collate(0, "buckets", 256)(rows)
    assert b["input_ids"].shape == (2, 40) and b["attention_mask"].sum().item() == 33 + 5
    assert b["input_ids"][0, 33:].eq(0).all() and b["attention_mask"][1, 5:].eq(0).all()
    assert make_collate(0, "longest")(rows)["input_ids"].shape == (2, 33)
    with pytest.raises(ValueError, match="resolve 'auto' first"):
        make_collate(0, "auto")


def test_bucketed_batches_score_the_same_as_longest(tiny_data):
    """The pads are masked: the logits of the same rows agree within float noise (rows cut to 5…60 tokens, so the
    buckets add pads that padding to the longest row does not)."""
    from twohead.train.recipe import Inputs, recipe

    data_dir, p = tiny_data
    r = recipe(p, "stage2", Inputs(data_dir / "prepared", data_dir / "tokenized"))
    model = r.build().eval()
    ds: TokenizedDataset = r.data.val
    cut = np.random.default_rng(0).integers(5, 61, size=48)
    items = [(ds[i][0][:k], *ds[i][1:]) for i, k in enumerate(cut)]
    order = np.argsort(-cut, kind="stable")
    out, added = {}, 0
    for padding in ("buckets", "longest"):
        collate = make_collate(r.data.pad_id, padding, r.data.max_length)
        l2 = []
        with torch.inference_mode():
            for j in range(0, len(order), 8):
                x = collate([items[i] for i in order[j:j + 8]])
                added += int(x["input_ids"].shape[1]) * (1 if padding == "buckets" else -1)
                l2.append(model(x["input_ids"], x["attention_mask"])[1])
        out[padding] = torch.cat(l2)
    assert added > 0   # the buckets really padded more
    assert torch.allclose(out["buckets"], out["longest"], atol=1e-5)


def test_memory_watch_clears_the_cache_every_n_steps_and_keeps_the_high_water_marks(monkeypatch):
    """A faked MPS device: allocated / driver-reserved read from torch.mps, the cache emptied every 3 steps."""
    figures = iter([100, 300, 200, 50])
    cleared = []
    monkeypatch.setattr(torch.mps, "current_allocated_memory", lambda: next(figures) * memory.MB)
    monkeypatch.setattr(torch.mps, "driver_allocated_memory", lambda: 900 * memory.MB)
    monkeypatch.setattr(torch.mps, "empty_cache", lambda: cleared.append(1))
    watch = memory.MemoryWatch(torch.device("mps"), every=3)
    for step in range(1, 8):
        watch.after_step(step)
    assert len(cleared) == 2 and watch.cleared == 2   # steps 3 and 6
    assert memory.format_memory(watch.sample()) == "mem 100/900 MB"
    watch.sample(), watch.sample()
    assert watch.summary() == {"max_allocated_mb": 300.0, "max_reserved_mb": 900.0, "cache_clears": 2}
    assert memory.MemoryWatch(torch.device("cpu"), every=1).summary()["max_peak_rss_mb"] > 50
    cpu = memory.MemoryWatch(torch.device("cpu"), every=1)
    cpu.after_step(1)
    assert cpu.cleared == 0   # nothing to clear on the CPU


def test_a_token_budget_bounds_every_batch_and_keeps_short_rows_together():
    """predict's batches hold at most max_batch_tokens padded tokens (rows x longest row): 1,000 texts of 20 KB
    among 100,000 rows peaked at 1.05 GiB with plain batches of 64, 0.86 GiB with the default budget."""
    from twohead.data.batching import SortedBatchSampler

    lengths = np.array([256] * 40 + [40] * 200 + [8] * 5)
    batches = list(SortedBatchSampler(lengths, 64, max_tokens=4096))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) * lengths[b].max() <= 4096 for b in batches)
    assert [len(b) for b in batches] == [16, 16, 16, 64, 64, 64, 5]   # 256-token rows: 16 a batch
    assert max(len(b) for b in batches) == 64                 # short rows: the full batch size
    assert [len(b) for b in SortedBatchSampler(lengths, 64)] == [64, 64, 64, 53]   # no budget: as before
