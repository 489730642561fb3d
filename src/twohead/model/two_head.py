"""TwoHeadModel = shared encoder + pooling + dropout + two linear heads; saving and :func:`load_stage2`.

Two optional pieces, both off by default (the plain recipe): ``msd_samples`` > 1 lets
``forward(..., samples=K)`` draw K dropout masks on the pooled vector (multi-sample dropout, used by
:class:`twohead.train.switches.SwitchedForward`), and :meth:`TwoHeadModel.add_loss_log_vars` adds the two learned
log-variances of uncertainty weighting (trained with the heads; not saved with the Stage-2 model).
A saved Stage-2 directory holds the encoder in Hugging Face format (``config.json`` + weights), the
tokenizer files, ``heads.safetensors`` (both heads), ``twohead.json`` (pooling, sizes, label names)
and ``label_maps.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..config.errors import CheckpointError
from . import fast_attention
from .checkpoint import load_encoder, load_tokenizer


class TwoHeadModel(nn.Module):
    def __init__(self, encoder: nn.Module, n_categories: int, pooling: str = "mean", head_dropout: float = 0.1,
                 msd_samples: int = 1):
        super().__init__()
        self.msd_samples = int(msd_samples)
        self.loss_log_vars: nn.Parameter | None = None
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.encoder = encoder
        self.pooling = pooling
        pooler = getattr(encoder, "pooler", None)
        if isinstance(pooler, nn.Module):  # BERT-style pooler: unused by mean/cls pooling of last_hidden_state
            pooler.requires_grad_(False)   # frozen, so it is in no optimizer group and DDP sees no unused params
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(head_dropout)
        self.head_task1 = nn.Linear(hidden, 2)
        self.head_task2 = nn.Linear(hidden, n_categories)
        std = getattr(encoder.config, "initializer_range", 0.02)
        for head in (self.head_task1, self.head_task2):
            nn.init.normal_(head.weight, std=std)
            nn.init.zeros_(head.bias)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, samples: int = 1
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both heads' logits, ``(B, 2)`` and ``(B, N)``; with ``samples`` = K > 1, K dropout masks on the one
        pooled vector: ``(K, B, 2)`` and ``(K, B, N)`` (the encoder runs once)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = self.pool(hidden, attention_mask)
        if samples > 1:
            dropped = torch.stack([self.dropout(pooled) for _ in range(samples)])
            return self.head_task1(dropped), self.head_task2(dropped)
        pooled = self.dropout(pooled)
        return self.head_task1(pooled), self.head_task2(pooled)

    def add_loss_log_vars(self) -> nn.Parameter:
        """The learned s_t = log σ_t² of uncertainty weighting (Task1, Task2), starting at 0 (σ = 1)."""
        if self.loss_log_vars is None:
            ref = self.head_task1.weight
            self.loss_log_vars = nn.Parameter(torch.zeros(2, dtype=torch.float32, device=ref.device))
        return self.loss_log_vars


#: the layout of a Stage-2 directory this code writes and reads; a directory of a higher format (a newer project
#: version) is refused with the version that wrote it, one without ``written_by`` is format 1 (the first one)
STAGE2_FORMAT = 1


def written_by(model: nn.Module) -> dict:
    """Which project version wrote a Stage-2 directory, in which format, and on which device it was trained (a
    model travels between machines: ``metrics/env/train_stage2.json`` has the rest)."""
    from .. import __version__

    device = next(model.parameters()).device
    where = device.type
    if device.type == "cuda":
        where = f"cuda ({torch.cuda.get_device_name(device)})"
    return {"twohead": __version__, "format": STAGE2_FORMAT, "trained_on": where}


def check_format(meta: dict, meta_path: Path) -> None:
    """A Stage-2 directory written by a newer project version is refused in one line naming that version."""
    from .. import __version__

    info = meta.get("written_by", {})
    fmt = info.get("format", 1) if isinstance(info, dict) else None
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise CheckpointError(f"{meta_path}: written_by.format {fmt!r} is not a format number")
    if fmt > STAGE2_FORMAT:
        raise CheckpointError(
            f"{meta_path}: written by twohead {info.get('twohead', '?')!s:.20} in model format {fmt}; this code"
            f" (twohead {__version__}) reads format {STAGE2_FORMAT}: update it (git pull && pip install --no-deps"
            " -e .) or use the version that trained the model")


def save_stage2(model: TwoHeadModel, out_dir: str | Path, tokenizer, label_maps: dict, extra: dict) -> None:
    """Write the Stage-2 directory (call inside :func:`twohead.data.io.atomic_path` for atomicity)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    heads = {f"head_task1.{k}": v for k, v in model.head_task1.state_dict().items()}
    heads.update({f"head_task2.{k}": v for k, v in model.head_task2.state_dict().items()})
    save_file({k: v.detach().cpu().contiguous() for k, v in heads.items()}, str(out / "heads.safetensors"))
    meta = {"pooling": model.pooling, "head_dropout": model.dropout.p,
            "n_categories": model.head_task2.out_features, "written_by": written_by(model), **extra}
    (out / "twohead.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    (out / "label_maps.json").write_text(json.dumps(label_maps, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


#: in a Stage-2 directory whose kept weights are an average (switches.ema): the raw weights, for evaluate's comparison
RAW_WEIGHTS = "raw_weights.safetensors"


def save_raw_weights(state: dict, out_dir: str | Path) -> None:
    """The raw (not averaged) weights beside the kept ones (safetensors: loading runs no code)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(Path(out_dir) / RAW_WEIGHTS))


def load_raw_weights(model: torch.nn.Module, model_dir: str | Path) -> bool:
    """Load the directory's raw weights into ``model``; False when it has none."""
    from safetensors.torch import load_file

    f = Path(model_dir) / RAW_WEIGHTS
    if not f.is_file():
        return False
    try:
        model.load_state_dict(load_file(str(f)))
    except Exception as exc:  # a damaged file or another model's weights: one line naming the file
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{f}: cannot load the raw weights ({first})") from None
    return True


def read_stage2_meta(d: Path) -> tuple[dict, dict]:
    """``twohead.json`` and ``label_maps.json`` of a Stage-2 directory, checked against each other: every problem
    is one line naming the file."""
    meta_path, maps_path = d / "twohead.json", d / "label_maps.json"
    if not meta_path.is_file():
        raise CheckpointError(f"{d}: no twohead.json; not a Stage-2 model directory (run train_stage2)")
    out = []
    for f in (meta_path, maps_path):
        try:
            out.append(json.loads(f.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise CheckpointError(f"{f}: not found; a Stage-2 model directory holds it (run train_stage2)") from None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{f}: not valid JSON ({exc})") from None
    meta, maps = out
    if isinstance(meta, dict):
        check_format(meta, meta_path)
    for key, kind in (("n_categories", int), ("pooling", str), ("head_dropout", (int, float))):
        if not isinstance(meta, dict) or not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise CheckpointError(f"{meta_path}: {key!r} is missing or not a {getattr(kind, '__name__', 'number')}")
    from ..config.params import MAX_LENGTH

    ml = meta.get("max_length")
    if ml is not None and (not isinstance(ml, int) or isinstance(ml, bool) or not 8 <= ml <= MAX_LENGTH):
        raise CheckpointError(f"{meta_path}: max_length {ml!r} is not a whole number in [8, {MAX_LENGTH}]")
    names = maps.get("task2", {}).get("names") if isinstance(maps, dict) and isinstance(maps.get("task2"), dict) \
        else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{maps_path}: no task2.names list of category names")
    if len(names) != meta["n_categories"] or meta["n_categories"] < 1:
        raise CheckpointError(f"{maps_path}: {len(names)} category names but {meta_path.name} says the model has"
                              f" {meta['n_categories']}: the two files come from different runs")
    return meta, maps


def load_stage2(model_dir: str | Path, device: str | torch.device = "cpu"):
    """Load a Stage-2 directory: returns ``(model, tokenizer, label_maps)``, the model in eval mode."""
    from safetensors.torch import load_file

    d = Path(model_dir)
    meta, label_maps = read_stage2_meta(d)
    encoder = load_encoder(d)
    model = TwoHeadModel(encoder, meta["n_categories"], meta["pooling"], meta["head_dropout"])
    heads_file = d / "heads.safetensors"
    if not heads_file.is_file():
        raise CheckpointError(f"{heads_file}: not found; a Stage-2 model directory holds both heads there"
                              " (run train_stage2)")
    try:
        heads = load_file(str(heads_file))
        model.head_task1.load_state_dict({k.split(".", 1)[1]: v for k, v in heads.items()
                                          if k.startswith("head_task1.")})
        model.head_task2.load_state_dict({k.split(".", 1)[1]: v for k, v in heads.items()
                                          if k.startswith("head_task2.")})
    except Exception as exc:  # a damaged file or heads of another shape: one line naming the file
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{heads_file}: cannot load the heads ({first})") from None
    fast_attention.install(model)  # inference: the windowed relative-attention bias (same values, less work)
    model.to(device).eval()
    return model, load_tokenizer(d), label_maps
