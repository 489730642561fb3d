"""The windowed DeBERTa relative-attention bias gives the original's values and gradients, falls back to the
original where the window would not be exact, and leaves other architectures alone."""

from __future__ import annotations

import torch

from twohead.model import fast_attention
from twohead.model.checkpoint import load_encoder
from twohead.model.two_head import TwoHeadModel


def _pair(encoder_dir):
    torch.manual_seed(0)
    a = TwoHeadModel(load_encoder(encoder_dir), 5)
    b = TwoHeadModel(load_encoder(encoder_dir), 5)
    b.load_state_dict(a.state_dict())
    assert fast_attention.install(b) == a.encoder.config.num_hidden_layers
    assert fast_attention.install(b) == 0  # installing twice changes nothing
    return a, b


def _batch(length: int, rows: int = 4):
    g = torch.Generator().manual_seed(length)
    ids = torch.randint(5, 900, (rows, length), generator=g)
    mask = torch.ones_like(ids)
    mask[0, length // 2:] = 0  # one padded row
    return ids, mask


def test_same_logits_and_gradients_as_the_original(demo_encoder_dir):
    a, b = _pair(demo_encoder_dir)
    for length in (1, 7, 64, 129):  # 129 tokens: W = 128 = position_buckets / 2, the last exact window
        ids, mask = _batch(length)
        a.eval(), b.eval()
        with torch.no_grad():
            for x, y in zip(a(ids, mask), b(ids, mask)):
                assert torch.allclose(x, y, rtol=1e-5, atol=1e-6), length
        a.train(), b.train()
        grads = []
        for m in (a, b):
            m.zero_grad()
            torch.manual_seed(1)  # the same dropout masks
            l1, l2 = m(ids, mask)
            (l1.sum() + l2.pow(2).sum()).backward()
            grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
        assert grads[0].keys() == grads[1].keys()
        for n in grads[0]:
            assert torch.allclose(grads[0][n], grads[1][n], rtol=1e-4, atol=1e-6), (length, n)


def test_long_rows_take_the_original_path(demo_encoder_dir, monkeypatch):
    a, b = _pair(demo_encoder_dir)
    layer = next(m for m in b.modules() if hasattr(m, "_twohead_original_bias"))
    calls = []
    original = layer._twohead_original_bias
    monkeypatch.setattr(layer, "_twohead_original_bias", lambda *x: calls.append(1) or original(*x))
    b.eval()
    with torch.no_grad():
        b(*_batch(64))
        assert calls == []  # windowed
        ids, mask = _batch(200)  # |i − j| up to 199 > 128: log-bucketed positions, the window is not exact
        out = b(*(ids, mask))
        assert calls == [1]
        a.eval()
        assert torch.allclose(out[1], a(ids, mask)[1], rtol=1e-5, atol=1e-6)


def test_other_architectures_are_left_alone():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3))
    assert fast_attention.install(model) == 0


def test_window_bounds_cover_the_needed_rows_aligned():
    for span in (64, 256, 512):
        for w in range(0, span):
            lo, width = fast_attention.window_bounds(span, w)
            assert 0 <= lo <= span - w and lo + width >= span + w + 1 and lo + width <= 2 * span, (span, w)
            assert width % fast_attention.ALIGN == 0 or width == 2 * span
