"""A windowed DeBERTa-v2/v3 relative-attention bias: the same values, a fraction of the work on short rows.

Hugging Face's ``DisentangledSelfAttention.disentangled_attention_bias`` projects all ``2·att_span`` relative
position embeddings (512 for DeBERTa-v3: 256 buckets), repeats them for every row of the batch, multiplies
every query and key against all of them, and then *gathers* the ≤ 2L−1 columns a sequence of length L can
use. For news rows of ~50 tokens that is ~10× the content attention's work, plus its backward (the
repeat's gradient is a sum over the batch). Here only the window of relative positions the batch can reach
is projected and multiplied: columns ``att_span − W … att_span + W`` with W = L − 1, widened to a multiple
of 64 columns (GPU matrix kernels want aligned sizes).

Exactness: the window holds every index the original gathers, so the result is the same set of dot products
(equal up to float summation order, ~1e-7 relative; tested against the original). It applies only where
relative positions inside the window are not log-bucketed (W ≤ position_buckets / 2, i.e. rows up to 129
tokens for DeBERTa-v3's 256 buckets; without buckets W < att_span); longer batches take the original code.
Installed per module instance (``install``), never on the class; a module whose attributes do not match the
expected layout (another transformers version) is left alone and reported.
"""

from __future__ import annotations

import types

import torch

_ATTRS = ("pos_ebd_size", "position_buckets", "max_relative_positions", "share_att_key", "pos_att_type",
          "num_attention_heads", "transpose_for_scores", "query_proj", "key_proj")


def _exact_window(module, w: int) -> bool:
    span = module.pos_ebd_size
    if w >= span:
        return False
    if module.position_buckets > 0:
        return w <= module.position_buckets // 2
    return True


#: Window widths are rounded up to a multiple of this: an odd width (2W + 1) makes GPU matrix products fall off
#: their tensor-core kernels (measured: 27% slower than the full 512 columns on an H200, bf16, seq 128).
ALIGN = 64


def window_bounds(span: int, w: int) -> tuple[int, int]:
    """(first row, width) of the relative-embedding window: it covers rows span − w … span + w, its width is a
    multiple of :data:`ALIGN` (capped at the 2·span rows there are) and it stays inside them."""
    width = min(-(-(2 * w + 1) // ALIGN) * ALIGN, 2 * span)
    lo = min(span - w, 2 * span - width)
    return lo, width


def windowed_bias(self, query_layer, key_layer, relative_pos, rel_embeddings, scale_factor):
    """Drop-in for ``disentangled_attention_bias`` (see the module docstring)."""
    w = max(query_layer.size(-2), key_layer.size(-2)) - 1
    if relative_pos is None or not _exact_window(self, w):
        return self._twohead_original_bias(query_layer, key_layer, relative_pos, rel_embeddings, scale_factor)
    from transformers.models.deberta_v2.modeling_deberta_v2 import build_rpos, scaled_size_sqrt

    if relative_pos.dim() == 2:
        relative_pos = relative_pos.unsqueeze(0).unsqueeze(0)
    elif relative_pos.dim() == 3:
        relative_pos = relative_pos.unsqueeze(1)
    elif relative_pos.dim() != 4:
        raise ValueError(f"Relative position ids must be of dim 2 or 3 or 4. {relative_pos.dim()}")
    span = self.pos_ebd_size
    lo, width = window_bounds(span, w)
    relative_pos = relative_pos.to(device=query_layer.device, dtype=torch.long)
    window = rel_embeddings[lo: lo + width, :].unsqueeze(0)  # holds rows att_span − W … att_span + W
    reps = query_layer.size(0) // self.num_attention_heads
    h = self.num_attention_heads
    if self.share_att_key:
        pos_query_layer = self.transpose_for_scores(self.query_proj(window), h).repeat(reps, 1, 1)
        pos_key_layer = self.transpose_for_scores(self.key_proj(window), h).repeat(reps, 1, 1)
    else:
        if "c2p" in self.pos_att_type:
            pos_key_layer = self.transpose_for_scores(self.pos_key_proj(window), h).repeat(reps, 1, 1)
        if "p2c" in self.pos_att_type:
            pos_query_layer = self.transpose_for_scores(self.pos_query_proj(window), h).repeat(reps, 1, 1)
    score = 0
    if "c2p" in self.pos_att_type:
        scale = scaled_size_sqrt(pos_key_layer, scale_factor)
        c2p_att = torch.bmm(query_layer, pos_key_layer.transpose(-1, -2))
        c2p_pos = torch.clamp(relative_pos + span, 0, span * 2 - 1) - lo
        c2p_att = torch.gather(c2p_att, dim=-1, index=c2p_pos.squeeze(0).expand(
            [query_layer.size(0), query_layer.size(1), relative_pos.size(-1)]))
        score += c2p_att / scale.to(dtype=c2p_att.dtype)
    if "p2c" in self.pos_att_type:
        scale = scaled_size_sqrt(pos_query_layer, scale_factor)
        r_pos = build_rpos(query_layer, key_layer, relative_pos, self.max_relative_positions, self.position_buckets)
        p2c_pos = torch.clamp(-r_pos + span, 0, span * 2 - 1) - lo
        p2c_att = torch.bmm(key_layer, pos_query_layer.transpose(-1, -2))
        p2c_att = torch.gather(p2c_att, dim=-1, index=p2c_pos.squeeze(0).expand(
            [query_layer.size(0), key_layer.size(-2), key_layer.size(-2)])).transpose(-1, -2)
        score += p2c_att / scale.to(dtype=p2c_att.dtype)
    return score


def install(model: torch.nn.Module) -> int:
    """Use the windowed bias in every DeBERTa-v2/v3 attention module of ``model``; returns how many were
    switched (0 for another architecture, or a transformers version whose module differs)."""
    n = 0
    for module in model.modules():
        if type(module).__name__ != "DisentangledSelfAttention" or not getattr(module, "relative_attention", False):
            continue
        if not all(hasattr(module, a) for a in _ATTRS) or hasattr(module, "_twohead_original_bias"):
            continue
        module._twohead_original_bias = module.disentangled_attention_bias
        module.disentangled_attention_bias = types.MethodType(windowed_bias, module)
        n += 1
    return n
