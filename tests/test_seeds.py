"""train.seed varies what it should (head init, dropout, batch order) and nothing it should not (the split)."""

import numpy as np
import torch
from accelerate.utils import set_seed

from conftest import ROOT
from twohead.data.batching import LengthGroupedBatchSampler
from twohead.model.two_head import TwoHeadModel


def test_seed_changes_batch_order_and_head_init(demo_encoder_dir):
    from twohead.model.checkpoint import load_encoder

    lengths = np.arange(200) % 17 + 3
    a = LengthGroupedBatchSampler(lengths, 16, seed=1).batches(0)
    b = LengthGroupedBatchSampler(lengths, 16, seed=2).batches(0)
    assert a != b and sorted(sum(a, [])) == sorted(sum(b, []))
    assert LengthGroupedBatchSampler(lengths, 16, seed=1).batches(0) == a  # and is reproducible
    heads = []
    for seed in (1, 2, 1):
        set_seed(seed)
        heads.append(TwoHeadModel(load_encoder(demo_encoder_dir), 5).head_task2.weight.detach().clone())
    assert not torch.equal(heads[0], heads[1]) and torch.equal(heads[0], heads[2])
    set_seed(1)
    drop = torch.nn.Dropout(0.5)
    x = drop(torch.ones(100))
    set_seed(2)
    assert not torch.equal(x, drop(torch.ones(100)))


def test_the_split_does_not_read_train_seed():
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in ("prepare_labels", "tokenize"):
        params = [str(x) for x in stages[name]["params"]]
        assert not any(x == "train" or x.startswith("train.") for x in params), name
    assert "split" in stages["prepare_labels"]["params"]
