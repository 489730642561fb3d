"""The masked-LM phase's network: transformers' own masked-LM class on a checkpoint, seen as an encoder and a head.

:func:`load_masked_lm` loads ``AutoModelForMaskedLM`` from a local directory (float32, no remote code). A checkpoint
saved without an MLM head (an encoder-only ``DebertaV2Model`` / ``BertModel`` directory, as the demo encoder and
most Stage-1 checkpoints are) gets a **fresh head** (transformers initialises it; the output layer stays tied to the
word embeddings) and the run says so. :class:`MaskedLM` holds the same encoder module as a
:class:`~twohead.model.two_head.TwoHeadModel` (``encoder.*``: the LLRD groups, the windowed DeBERTa bias and
``torch.compile`` see the same names) and the head as ``head_mlm``; its forward runs the head on the masked
positions only (15% of the tokens: a 128k-token vocabulary times every position would be a 4 GB logits tensor at
batch 32 × 256). What is saved afterwards is the encoder alone, in the base directory's layout.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config.errors import CheckpointError
from .checkpoint import load_config

IGNORE = -100


def mask_token_error(tokenizer, checkpoint: str | Path) -> str | None:
    """What keeps a tokenizer from masked-LM training (no mask token), or None."""
    mask_id = None if tokenizer.mask_token is None else tokenizer.mask_token_id
    if mask_id is None or (mask_id == tokenizer.unk_token_id and tokenizer.mask_token != tokenizer.unk_token):
        return (f"{checkpoint}: its tokenizer has no mask token, so it cannot be trained as a masked LM; set"
                " mlm.epochs: 0 (no masked-LM phase) or use a checkpoint whose tokenizer has one ([MASK])")
    return None


def _head(mlm: nn.Module) -> tuple[str, nn.Module]:
    """The MLM head module of a transformers masked-LM model, by the names its architectures use."""
    for name in ("lm_predictions", "cls", "lm_head"):
        head = getattr(mlm, name, None)
        if isinstance(head, nn.Module):
            return name, head
    raise CheckpointError(f"{type(mlm).__name__}: no masked-LM head (cls / lm_predictions / lm_head) found")


def load_masked_lm(checkpoint: str | Path) -> tuple[MaskedLM, bool]:
    """``AutoModelForMaskedLM`` on a local checkpoint as a :class:`MaskedLM`, and whether its head is fresh (the
    checkpoint had no MLM head weights)."""
    from transformers import AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    config = load_config(checkpoint)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()   # its load report lists the fresh head's keys; the run says it in one line
    try:
        mlm, info = AutoModelForMaskedLM.from_pretrained(str(checkpoint), config=config, trust_remote_code=False,
                                                          dtype=torch.float32, output_loading_info=True)
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise CheckpointError(f"{checkpoint}: transformers has no masked-LM class for model_type"
                                  f" {config.model_type!r}; set mlm.epochs: 0") from None
        raise CheckpointError(f"{checkpoint}: cannot load it as a masked LM: {exc}") from exc
    except Exception as exc:
        raise CheckpointError(f"{checkpoint}: cannot load it as a masked LM: {exc}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    name, _ = _head(mlm)
    fresh = any(k.startswith(f"{name}.") for k in info.get("missing_keys", ()))
    return MaskedLM(mlm), fresh


class MaskedLM(nn.Module):
    """The encoder (``encoder``) and transformers' MLM head (``head_mlm``) of one masked-LM model."""

    msd_samples = 1   # what the training setup asks of every model (no multi-sample dropout here)
    loss_log_vars = None

    def __init__(self, mlm: nn.Module):
        super().__init__()
        self.encoder = getattr(mlm, mlm.base_model_prefix)
        self.head_kind, self.head_mlm = _head(mlm)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor
                ) -> torch.Tensor:
        """Vocabulary logits ``(M, V)`` at ``positions`` (``M`` flat indices into the ``B × L`` tokens: the masked
        ones, in row-major order, padded when the batch shapes are bucketed)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        h = hidden.reshape(-1, hidden.shape[-1])[positions].unsqueeze(0)   # (1, M, H): the heads take a sequence
        if self.head_kind == "lm_predictions":   # DeBERTa-v2 (non-legacy): the head reads the embedding table
            logits = self.head_mlm(h, self.encoder.embeddings.word_embeddings)
        else:
            logits = self.head_mlm(h)
        return logits[0]
