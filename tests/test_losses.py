import math

import pytest
import torch
import torch.nn.functional as F

from twohead.train.losses import LossAccumulator, TwoTaskLoss, masked_ce_sums


def masked_ce(logits, labels, weight, smoothing):
    """The task loss of one batch: numerator over its clamped denominator, as TwoTaskLoss.terms computes it."""
    num, den = masked_ce_sums(logits, labels, weight, smoothing)
    return num / den.clamp_min(torch.finfo(num.dtype).tiny)


def test_all_labels_missing_gives_zero_and_finite_grads():
    logits1 = torch.randn(4, 2, requires_grad=True)
    logits2 = torch.randn(4, 5, requires_grad=True)
    y1 = torch.tensor([1, 0, 1, 0])
    y2 = torch.full((4,), -100)
    assert math.isnan(F.cross_entropy(logits2, y2, ignore_index=-100).item())  # the PyTorch pitfall
    loss = TwoTaskLoss(torch.ones(2), torch.ones(5), 0.4, 1.0, 0.0, 0.1)
    parts = loss.terms(logits1, logits2, y1, y2)
    assert parts["task2"].item() == 0.0
    assert parts["total"].item() == pytest.approx(0.4 * F.cross_entropy(logits1.detach(), y1).item(), rel=1e-6)
    parts["total"].backward()
    assert torch.isfinite(logits1.grad).all() and torch.isfinite(logits2.grad).all()
    assert (logits2.grad == 0).all() and logits1.grad.abs().sum() > 0


def test_matches_pytorch_weighted_ce_without_smoothing():
    torch.manual_seed(0)
    logits = torch.randn(8, 4)
    y = torch.tensor([0, 1, 2, 3, -100, 1, 2, -100])
    w = torch.tensor([0.5, 2.0, 1.0, 5.0])
    ours = masked_ce(logits, y, w, 0.0)
    ref = F.cross_entropy(logits, y, weight=w, ignore_index=-100)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)


def test_matches_pytorch_smoothing_with_uniform_weights():
    torch.manual_seed(1)
    logits = torch.randn(6, 5)
    y = torch.tensor([0, 4, 2, -100, 1, 3])
    ours = masked_ce(logits, y, torch.ones(5), 0.15)
    ref = F.cross_entropy(logits, y, ignore_index=-100, label_smoothing=0.15)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)


def test_smoothing_is_weighted_by_the_target_class_only():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
    y = torch.tensor([0, 1])
    w = torch.tensor([1.0, 3.0, 10.0])
    eps = 0.1
    logp = F.log_softmax(logits, -1)
    by_hand = []
    for i in range(2):
        row_loss = (1 - eps) * -logp[i, y[i]] + eps * (-logp[i].mean())
        by_hand.append(w[y[i]] * row_loss)
    expected = (by_hand[0] + by_hand[1]) / (w[0] + w[1])
    assert masked_ce(logits, y, w, eps).item() == pytest.approx(expected.item(), rel=1e-6)
    # PyTorch's own weighted smoothing differs (it weights each class's smoothing share by w_c)
    torch_version = F.cross_entropy(logits, y, weight=w, label_smoothing=eps)
    assert abs(torch_version.item() - expected.item()) > 1e-3


def test_class_weights_reach_the_loss():
    logits = torch.tensor([[3.0, 0.0], [3.0, 0.0]])
    y = torch.tensor([0, 1])  # row 0 is easy, row 1 is hard
    l_even = masked_ce(logits, y, torch.tensor([1.0, 1.0]), 0.0)
    l_hard = masked_ce(logits, y, torch.tensor([1.0, 9.0]), 0.0)
    nll = -F.log_softmax(logits, -1)
    assert l_even.item() == pytest.approx(((nll[0, 0] + nll[1, 1]) / 2).item(), rel=1e-6)
    assert l_hard.item() == pytest.approx(((nll[0, 0] + 9 * nll[1, 1]) / 10).item(), rel=1e-6)
    assert l_hard > l_even


def test_epoch_accumulator_is_the_weighted_mean_over_all_rows():
    torch.manual_seed(2)
    logits = torch.randn(10, 3)
    y = torch.tensor([0, 1, 2, -100, 1, 0, 2, 2, -100, 1])
    w = torch.tensor([1.0, 2.0, 0.5])
    acc = LossAccumulator("cpu")
    loss = TwoTaskLoss(torch.ones(2), w, 0.4, 1.0, 0.0, 0.1)
    y1 = torch.full((10,), -100)
    for a, b in ((0, 4), (4, 10)):
        acc.add(loss.terms(torch.zeros(b - a, 2), logits[a:b], y1[a:b], y[a:b]))
    res = loss.combine(acc.sums.tolist())
    assert res["task2"] == pytest.approx(masked_ce(logits, y, w, 0.1).item(), rel=1e-6)
    assert res["task1"] == 0.0 and res["total"] == pytest.approx(res["task2"])
    num, den = masked_ce_sums(logits, y, w, 0.1)
    assert den.item() == pytest.approx(float(w[y[y != -100]].sum()))
