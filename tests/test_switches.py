"""The switches: each formula on fixed tensors, "off" = the plain loss and gradients,
AWP restores the weights exactly, the class-weight schemes, and a tiny run with every switch on."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import replace, train_in
from twohead.config.errors import ParamsError
from twohead.config.params import LossParams, params_from_dict
from twohead.config.switches import ABLATION, OFF, active, label, queue_commands
from twohead.data.weights import task2_weights
from twohead.train.losses import SUM_KEYS, TwoTaskLoss, rdrop_sums
from twohead.train.optim import llrd_groups
from twohead.train.switches import AWP
from twohead.train.switches import SwitchedForward as Objective

IGN = -100


def _loss(**kw) -> TwoTaskLoss:
    kw = {"lambda_task1": 0.4, "lambda_task2": 1.0, "label_smoothing": 0.1, **kw}
    return TwoTaskLoss(weight_task1=torch.tensor([1.0, 2.0]), weight_task2=torch.tensor([1.0, 0.5, 3.0]), **kw)


def _fixed(seed=0, n=6):
    g = torch.Generator().manual_seed(seed)
    l1, l2 = torch.randn(n, 2, generator=g), torch.randn(n, 3, generator=g)
    y1 = torch.tensor([1, 0, 1, IGN, 1, 0])[:n]
    y2 = torch.tensor([2, IGN, 0, 1, IGN, IGN])[:n]
    return l1, l2, y1, y2


class TinyEncoder(torch.nn.Module):
    """Stands in for a HF encoder: embeddings + one layer + config, so TwoHeadModel and AWP see a real layout."""

    def __init__(self, vocab=50, hidden=8):
        super().__init__()
        self.config = type("C", (), {"hidden_size": hidden, "initializer_range": 0.02, "num_hidden_layers": 1})()
        self.embeddings = torch.nn.Embedding(vocab, hidden)
        self.encoder = torch.nn.Module()
        self.encoder.layer = torch.nn.ModuleList([torch.nn.Linear(hidden, hidden)])

    def forward(self, input_ids, attention_mask):
        h = torch.tanh(self.encoder.layer[0](self.embeddings(input_ids)))
        return type("O", (), {"last_hidden_state": h})()


def _model(msd=1, dropout=0.3, seed=0):
    from twohead.model.two_head import TwoHeadModel

    torch.manual_seed(seed)
    return TwoHeadModel(TinyEncoder(), 3, "mean", dropout, msd)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    _, _, y1, y2 = _fixed()
    ids = torch.randint(0, 50, (6, 7), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels_task1": y1, "labels_task2": y2}


# ---------------------------------------------------------------------------------------------- uncertainty

def test_uncertainty_weighting_formula_and_gradient():
    l1, l2, y1, y2 = _fixed()
    s = torch.tensor([0.3, -0.2], requires_grad=True)
    plain = _loss().terms(l1, l2, y1, y2)
    out = _loss(task_weighting="uncertainty", log_vars=s).terms(l1, l2, y1, y2)
    L1, L2 = plain["task1"].item(), plain["task2"].item()
    want = math.exp(-0.3) * L1 + 0.15 + math.exp(0.2) * L2 - 0.1
    assert out["total"].item() == pytest.approx(want, rel=1e-6)
    out["total"].backward()
    # d/ds_t [exp(-s_t) L_t + s_t / 2] = -exp(-s_t) L_t + 1/2
    assert s.grad.tolist() == pytest.approx([-math.exp(-0.3) * L1 + 0.5, -math.exp(0.2) * L2 + 0.5], rel=1e-5)
    # a task with lambda 0 is off under uncertainty weighting too (no term, no s_t gradient)
    s.grad = None
    _loss(task_weighting="uncertainty", log_vars=s, lambda_task2=0.0).terms(l1, l2, y1, y2)["total"].backward()
    assert s.grad[1].item() == 0.0
    # epoch-level combine agrees with the batch formula on the same sums
    sums = [float(out[k]) for k in SUM_KEYS]
    assert _loss(task_weighting="uncertainty", log_vars=s).combine(sums)["total"] == pytest.approx(want, rel=1e-6)
    assert _loss(task_weighting="uncertainty", log_vars=s).sigmas() == pytest.approx((math.exp(0.15), math.exp(-0.1)))


def test_uncertainty_log_vars_are_float32_head_lr_and_no_weight_decay():
    m = _model()
    s = m.add_loss_log_vars()
    assert s.dtype == torch.float32 and s.tolist() == [0.0, 0.0]  # MPS holds no float64
    groups, _ = llrd_groups(m, 1e-3, 0.5, 2.0, 0.01)
    [g] = [g for g in groups if any(p is s for p in g["params"])]
    assert g["lr"] == pytest.approx(2e-3) and g["weight_decay"] == 0.0


# ---------------------------------------------------------------------------------------------- R-Drop

def test_rdrop_symmetric_kl_is_masked_per_task():
    a1, a2, y1, y2 = _fixed(0)
    b1, b2, _, _ = _fixed(1)
    n1, d1, n2, d2 = rdrop_sums(a1, b1, a2, b2, y1, y2)

    def sym(a, b):
        pa, pb = F.log_softmax(a, -1), F.log_softmax(b, -1)
        return 0.5 * (F.kl_div(pb, pa, log_target=True, reduction="none").sum(-1)
                      + F.kl_div(pa, pb, log_target=True, reduction="none").sum(-1))

    m1, m2 = y1 != IGN, y2 != IGN
    assert n1.item() == pytest.approx(sym(a1, b1)[m1].sum().item(), rel=1e-6) and d1.item() == m1.sum().item()
    assert n2.item() == pytest.approx(sym(a2, b2)[m2].sum().item(), rel=1e-6) and d2.item() == m2.sum().item()
    assert all(x.item() == 0 for x in rdrop_sums(a1, a1, a2, a2, y1, y2)[::2])  # identical passes: no KL
    out = _loss(rdrop_alpha=2.0).add_rdrop(_loss(rdrop_alpha=2.0).terms(a1, a2, y1, y2), (n1, d1, n2, d2))
    assert out["rdrop"].item() == pytest.approx(2.0 * (0.4 * n1.item() / d1.item() + n2.item() / d2.item()), rel=1e-6)


def test_rdrop_objective_runs_two_dropout_passes_in_one_forward():
    model, batch = _model(dropout=0.5), _batch()
    loss_fn = _loss(rdrop_alpha=1.0)
    torch.manual_seed(3)
    l1, l2, out = Objective(loss_fn, rdrop_alpha=1.0)(model, batch)
    torch.manual_seed(3)  # the same masks: one forward of the doubled batch
    ids = torch.cat([batch["input_ids"]] * 2)
    f1, f2 = model(ids, torch.ones_like(ids))
    ce = loss_fn.terms(f1, f2, batch["labels_task1"].repeat(2), batch["labels_task2"].repeat(2))
    rd = rdrop_sums(f1[:6], f1[6:], f2[:6], f2[6:], batch["labels_task1"], batch["labels_task2"])
    assert torch.equal(l1, f1[:6]) and out["task2"].item() == pytest.approx(ce["task2"].item(), rel=1e-6)
    assert out["rdrop"].item() > 0
    assert out["total"].item() == pytest.approx((ce["total"] + loss_fn.add_rdrop(ce, rd)["rdrop"]).item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------- multi-sample dropout

def test_msd_averages_the_losses_of_k_dropout_samples():
    model, batch = _model(msd=4, dropout=0.5), _batch()
    loss_fn = _loss()
    torch.manual_seed(7)
    l1, l2, out = Objective(loss_fn, msd_samples=4)(model, batch)
    torch.manual_seed(7)
    s1, s2 = model(batch["input_ids"], batch["attention_mask"], samples=4)
    assert s1.shape == (4, 6, 2) and s2.shape == (4, 6, 3)
    per = [loss_fn.terms(s1[k], s2[k], batch["labels_task1"], batch["labels_task2"]) for k in range(4)]
    # the class-weighted mean over K copies of the rows = the mean of the K per-sample losses (same weights)
    assert out["task2"].item() == pytest.approx(np.mean([p["task2"].item() for p in per]), rel=1e-5)
    assert torch.allclose(l2, s2.mean(0))
    # with dropout 0 every sample is the same: exactly the plain loss
    plain_model = _model(msd=4, dropout=0.0)
    a = Objective(loss_fn, msd_samples=4)(plain_model, batch)[2]["total"]
    b = Objective(loss_fn)(plain_model, batch)[2]["total"]
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------- off = plain

def test_all_switches_off_is_the_plain_loss_and_gradients():
    model, batch = _model(), _batch()
    off = Objective(_loss(task_weighting="fixed", rdrop_alpha=0.0, pick_consistency_detach="none"), rdrop_alpha=0.0,
                    msd_samples=1)
    assert off.plain
    torch.manual_seed(1)
    _, _, out = off(model, batch)
    out["total"].backward()
    g_off = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    torch.manual_seed(1)
    l1, l2 = model(batch["input_ids"], batch["attention_mask"])
    ref = _loss().terms(l1, l2, batch["labels_task1"], batch["labels_task2"])
    ref["total"].backward()
    assert out["total"].item() == ref["total"].item()  # bit-identical, not approximately
    assert all(torch.equal(a, p.grad) for a, p in zip(g_off, model.parameters()))
    assert not AWP(model, 1.0, 0.01, 0).active(1) and not AWP(model, 1.0, 0.01, 3).active(2)
    assert AWP(model, 1.0, 0.01, 3).active(3)


# ---------------------------------------------------------------------------------------------- AWP

def test_awp_perturbs_within_eps_raises_the_loss_and_restores_exactly():
    model, batch = _model(dropout=0.0), _batch()
    loss_fn = _loss()
    objective = Objective(loss_fn)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    _, _, out = objective(model, batch)
    out["total"].backward()
    g_clean = {n: p.grad.clone() for n, p in model.named_parameters()}
    awp = AWP(model, lr=1.0, eps=0.01, start_epoch=1)
    enc = model.encoder
    assert {id(p) for p in awp.params} == {id(enc.embeddings.weight), id(enc.encoder.layer[0].weight)}
    awp.perturb()
    for p in awp.params:
        w0 = before[[n for n, q in model.named_parameters() if q is p][0]]
        delta = p.detach() - w0
        assert (delta.abs() <= 0.01 * w0.abs() * (1 + 1e-5) + 1e-7).all() and delta.abs().max() > 0  # float rounding
    with torch.no_grad():
        adv = objective(model, batch)[2]["total"].item()
    assert adv > out["total"].item()  # an ascent step on the weights
    _, _, out_adv = objective(model, batch)
    out_adv["total"].backward()  # gradients at the perturbed weights are added to the clean ones
    awp.restore()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # restored bit for bit
    heads = model.head_task2.weight
    assert not torch.equal(heads.grad, g_clean["head_task2.weight"])  # the adversarial gradient was added
    assert model.encoder.encoder.layer[0].weight.grad is not None


# ---------------------------------------------------------------------------------------------- hierarchy detach

def test_consistency_detach_stops_the_gradient_to_task1_only():
    l1, l2, y1, y2 = _fixed()
    grads = {}
    for detach in ("none", "task1"):
        a, b = l1.clone().requires_grad_(), l2.clone().requires_grad_()
        loss = _loss(pick_consistency_weight=1.0, pick_consistency_detach=detach, lambda_task1=0.0, lambda_task2=0.0)
        out = loss.terms(a, b, y1, y2)
        out["hier"].backward()
        grads[detach] = (0.0 if a.grad is None else a.grad.abs().sum().item(), b.grad.abs().sum().item(),
                         out["hier"].item())
    assert grads["none"][0] > 0 and grads["task1"][0] == 0.0
    assert grads["task1"][1] == pytest.approx(grads["none"][1]) and grads["task1"][2] == grads["none"][2]


# ---------------------------------------------------------------------------------------------- class weights

def _train(support: list[int]) -> pd.DataFrame:
    y = np.concatenate([np.full(n, i) for i, n in enumerate(support)])
    return pd.DataFrame({"labels_task2": y, "labels_task1": 1})


def test_task2_weighting_schemes_and_norms():
    train, cats = _train([400, 100, 25, 4]), ["a", "b", "c", "d"]
    wide = {"task2_weight_min": 1e-6, "task2_weight_max": 1e6}
    bal = task2_weights(train, cats, LossParams(**wide))
    inv = 1 / np.array([400, 100, 25, 4])
    assert bal["weights"] == pytest.approx(list(inv / inv.mean())) and bal["scheme"] == "balanced"
    sq = task2_weights(train, cats, LossParams(task2_weighting="sqrt", **wide))
    r = 1 / np.sqrt([400, 100, 25, 4])
    assert sq["weights"] == pytest.approx(list(r / r.mean()))
    en = task2_weights(train, cats, LossParams(task2_weighting="effective_number", task2_weight_beta=0.99, **wide))
    e = (1 - 0.99) / (1 - 0.99 ** np.array([400, 100, 25, 4]))
    assert en["weights"] == pytest.approx(list(e / e.mean())) and en["beta"] == 0.99
    med = task2_weights(train, cats, LossParams(task2_weight_norm="median", **wide))
    assert np.median(med["weights"]) == pytest.approx(1.0)
    # the recipe's clip [0.5, 5] with mean-normalised balanced weights floors the common classes together;
    # median-normalised, the middle class keeps weight 1 (support 400, 100, 25, 10, 4)
    train, cats = _train([400, 100, 25, 10, 4]), ["a", "b", "c", "d", "e"]
    clipped = task2_weights(train, cats, LossParams())
    assert clipped["n_clipped_low"] == 3 and clipped["weights"][:3] == [0.5, 0.5, 0.5]
    med = task2_weights(train, cats, LossParams(task2_weight_norm="median"))
    assert med["n_clipped_low"] == 2 and med["weights"][2] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- params, switches

def test_switch_params_are_validated():
    for bad in ({"switches": {"rdrop_alpha": -1}}, {"switches": {"msd_samples": 0}},
                {"loss": {"task2_weight_beta": 1.0}},
                {"switches": {"awp_start_epoch": 1, "awp_eps": 0}}, {"switches": {"task_weighting": "learned"}}):
        with pytest.raises(ParamsError):
            params_from_dict(bad, partial=True)


def test_switch_labels_and_queue_commands():
    assert label({}) == "plain" and label({"switches": {"rdrop_alpha": 0}}) == "plain"
    assert label({"switches": {"rdrop_alpha": 1.0}}) == "rdrop" and label({"switches": {"msd_samples": 5}}) == "msd"
    assert label({"switches": {"rdrop_alpha": 0.3}}) == "switches.rdrop_alpha=0.3"
    assert active({"loss": {"weighting": "uncertainty", "task2_weighting": "balanced"}}) == {
        "switches.task_weighting": "uncertainty"}
    cmds = queue_commands([1, 2], ["rdrop"])
    assert [c[5] for c in cmds] == ["abl-plain-s1", "abl-plain-s2", "abl-rdrop-s1", "abl-rdrop-s2"]
    assert cmds[3][-2:] == ["-S", "switches.rdrop_alpha=1.0"] and "train.seed=2" in cmds[3]
    assert set(OFF) >= {k for o in ABLATION.values() for k in o}
    with pytest.raises(KeyError):
        queue_commands([1], ["nope"])


def test_a_tiny_run_with_every_switch_on_logs_sigma_and_rdrop(tiny_data, tmp_path):
    data_dir, p = tiny_data
    p = replace(p, "switches", task_weighting="uncertainty", rdrop_alpha=1.0, awp_start_epoch=2, msd_samples=3,
                pick_consistency_weight=0.1, pick_consistency_detach="task1")
    m = train_in(tmp_path, data_dir, p)
    hist = pd.read_csv(tmp_path / "plots" / "train_history.csv")
    assert (hist["train_loss_rdrop"] > 0).all() and (hist["sigma_task1"] != 1.0).all()
    assert m["sigma_task2"] == pytest.approx(hist["sigma_task2"].iloc[-1], rel=1e-5) and m["sigma_task2"] != 1.0
    assert all(math.isfinite(m[k]) for k in ("train_loss_total", "val_loss_total", "val_acc_task2"))
