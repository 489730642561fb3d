import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel, DebertaV2Config, DebertaV2Model

from twohead.data.batching import LengthGroupedBatchSampler, SortedBatchSampler, make_collate, pad_share
from twohead.model.two_head import TwoHeadModel
from twohead.train.optim import llrd_groups


def tiny_deberta(layers=3, conv=False):
    cfg = DebertaV2Config(vocab_size=50, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                          intermediate_size=32, relative_attention=True, position_buckets=8, max_relative_positions=-1,
                          pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", share_att_key=True,
                          position_biased_input=False, type_vocab_size=0,
                          **({"conv_kernel_size": 3} if conv else {}))
    return DebertaV2Model(cfg)


def group_lr(groups, name_part):
    lrs = {g["lr"] for g in groups if g["name"].startswith(name_part)}
    assert len(lrs) == 1, (name_part, lrs)
    return lrs.pop()


@pytest.mark.parametrize("conv", [False, True])
def test_llrd_groups_deberta_exact_lrs(conv):
    model = TwoHeadModel(tiny_deberta(3, conv), n_categories=5)
    groups, summary = llrd_groups(model, lr=1e-3, llrd=0.5, head_lr_mult=2.0, weight_decay=0.01)
    assert group_lr(groups, "heads+pooler") == pytest.approx(2e-3)
    assert group_lr(groups, "encoder.layer.2") == pytest.approx(1e-3)
    assert group_lr(groups, "encoder.layer.1") == pytest.approx(5e-4)
    assert group_lr(groups, "encoder.layer.0") == pytest.approx(2.5e-4)
    assert group_lr(groups, "encoder.rel_embeddings") == pytest.approx(2.5e-4)
    assert group_lr(groups, "embeddings") == pytest.approx(1.25e-4)
    names = {n for n, _ in model.named_parameters()}
    assert "encoder.encoder.rel_embeddings.weight" in names and "encoder.encoder.LayerNorm.weight" in names
    if conv:
        assert any(n.startswith("encoder.encoder.conv.") for n in names)
    by_id = {id(p): g for g in groups for p in g["params"]}
    for n, p in model.named_parameters():  # every parameter once; no decay on 1-D tensors
        assert id(p) in by_id, n
        assert by_id[id(p)]["weight_decay"] == (0.0 if p.ndim == 1 else 0.01), n
    assert sum(r["n_params"] for r in summary) == sum(p.numel() for p in model.parameters())


def test_llrd_groups_bert_pooler_is_frozen():
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    model = TwoHeadModel(BertModel(cfg), n_categories=3)
    groups, _ = llrd_groups(model, lr=1.0, llrd=0.1, head_lr_mult=1.0, weight_decay=0.0)
    pooler = model.encoder.pooler.dense.weight
    assert not pooler.requires_grad and not any(p is pooler for g in groups for p in g["params"])
    pos = model.encoder.embeddings.position_embeddings.weight
    assert next(g["lr"] for g in groups if any(p is pos for p in g["params"])) == pytest.approx(0.01)
    l0 = model.encoder.encoder.layer[0].attention.self.query.weight
    assert next(g["lr"] for g in groups if any(p is l0 for p in g["params"])) == pytest.approx(0.1)
    l1 = model.encoder.encoder.layer[1].output.dense.weight
    assert next(g["lr"] for g in groups if any(p is l1 for p in g["params"])) == pytest.approx(1.0)


def test_mean_pooling_ignores_padding():
    model = TwoHeadModel(tiny_deberta(1), n_categories=2, pooling="mean")
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [-50.0, 7.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    pooled = model.pool(hidden, mask)
    assert torch.allclose(pooled, torch.tensor([[2.0, 3.0], [5.0, 6.0]]))
    model.pooling = "cls"
    assert torch.allclose(model.pool(hidden, mask), torch.tensor([[1.0, 2.0], [5.0, 6.0]]))


def test_padding_does_not_change_the_prediction():
    torch.manual_seed(0)
    model = TwoHeadModel(tiny_deberta(2), n_categories=4).eval()
    ids = torch.tensor([[1, 7, 8, 9, 2]])
    a1, a2 = model(ids, torch.ones_like(ids))
    padded = torch.tensor([[1, 7, 8, 9, 2, 0, 0, 0]])
    b1, b2 = model(padded, (padded != 0).long())
    assert torch.allclose(a1, b1, atol=1e-5) and torch.allclose(a2, b2, atol=1e-5)


def test_collate_pads_dynamically():
    collate = make_collate(pad_id=0)
    batch = collate([(np.array([1, 5, 2], np.int32), 1, 3, 0), (np.array([1, 2], np.int32), -100, 0, 1)])
    assert batch["input_ids"].tolist() == [[1, 5, 2], [1, 2, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels_task1"].tolist() == [1, -100] and batch["index"].tolist() == [0, 1]


def test_length_grouped_sampler_covers_rows_once_and_is_seeded():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=1000)
    s = LengthGroupedBatchSampler(lengths, batch_size=32, seed=7, group_by_length=True, mega_factor=10)
    e0, e1 = list(s), list(s)
    for batches in (e0, e1):
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1000)) and len(batches) == len(s)
    assert e0 != e1  # a new order every pass
    again = LengthGroupedBatchSampler(lengths, batch_size=32, seed=7, group_by_length=True, mega_factor=10)
    assert list(again) == e0
    plain = LengthGroupedBatchSampler(lengths, batch_size=32, seed=7, group_by_length=False)
    assert pad_share(lengths, e0) < 0.5 * pad_share(lengths, list(plain))
    sorted_b = list(SortedBatchSampler(lengths, 64))
    assert sorted([i for b in sorted_b for i in b]) == list(range(1000))


def test_unknown_encoder_layout_is_a_clear_error():
    from transformers import GPT2Config, GPT2Model

    from twohead.model.checkpoint import CheckpointError

    enc = GPT2Model(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2))
    enc.config.num_hidden_layers = 1
    model = TwoHeadModel(enc, n_categories=2)
    with pytest.raises(CheckpointError, match="'wte.weight' fits no layer-wise LR group"):
        llrd_groups(model, lr=1e-3, llrd=0.8, head_lr_mult=1.0, weight_decay=0.0)
