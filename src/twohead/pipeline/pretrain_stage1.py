"""The pretrain_stage1 stage: Pick/Decline pretraining of a base encoder, the Stage-1 recipe.

Data: every prepared row with a Pick/Decline label (categories are not used): train split to train,
val split to validate, tokenized here with the *base model's* tokenizer. The model is the Stage-2
model with its Task2 loss switched off (λ1 = 1, λ2 = 0, no category labels), trained by the same
:func:`~twohead.train.fit.fit`; ``stage1.*`` sets its own epochs / lr / batch size, everything else follows
``train.*``.

Output: the Stage-1 directory in the same layout as the base directory (encoder ``config.json`` +
``model.safetensors``, the base's tokenizer files copied unchanged), plus ``stage1_head.safetensors``
(the Pick/Decline head, for reference; Stage 2 starts its heads fresh) and ``stage1.json``.

When ``model.stage1_checkpoint`` points somewhere else (your own Stage-1 checkpoint), the stage trains
nothing: it writes ``SKIPPED.json`` in the output directory and a metrics file saying so, in milliseconds.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from safetensors.torch import save_file

from ..config.params import Params, to_dict
from ..config.schema import STAGE1_COLUMNS, STAGE1_RENAME
from ..data.io import METRIC_DIGITS, atomic_path, write_csv, write_json
from ..model.checkpoint import WEIGHT_FILES
from ..train.fit import fit
from ..train.recipe import Inputs, recipe, stage1_config
from ..train.report import speed_summary
from ..train.resume import StateStore, fingerprint


@dataclass(frozen=True)
class Stage1Paths:
    """Input: the prepared labels. Outputs: the Stage-1 checkpoint directory, its history, metrics, speed."""

    prepared: Path
    mlm_model: Path          # pretrain_mlm's output: where Stage 1 starts when mlm.epochs > 0
    stage1_model: Path
    stage1_history: Path
    stage1_metrics: Path
    stage1_speed: Path
    stage1_state: Path


def stage1_is_used(p: Params, paths: Stage1Paths) -> bool:
    return Path(p.model.stage1_checkpoint).resolve() == Path(paths.stage1_model).resolve()


def copy_tokenizer_files(src: Path, dst: Path) -> None:
    skip = set(WEIGHT_FILES) | {"config.json", "generation_config.json", "mlm.json", "stage1.json", "SKIPPED.json"}
    for f in src.iterdir():
        if f.is_file() and f.name not in skip and f.suffix not in (".safetensors", ".bin", ".pt", ".h5", ".msgpack"):
            shutil.copy(f, dst / f.name)


def skip(p: Params, paths: Stage1Paths) -> dict:
    with atomic_path(paths.stage1_model, is_dir=True) as tmp:
        (tmp / "SKIPPED.json").write_text(json.dumps(
            {"reason": "model.stage1_checkpoint points at another checkpoint",
             "stage1_checkpoint": p.model.stage1_checkpoint}, indent=2) + "\n", encoding="utf-8")
    write_csv(paths.stage1_history, pd.DataFrame(columns=STAGE1_COLUMNS))
    write_json(paths.stage1_speed, {}, digits=METRIC_DIGITS)
    StateStore(paths.stage1_state, {}).clear()
    result = {"trained": False, "stage1_checkpoint": p.model.stage1_checkpoint}
    write_json(paths.stage1_metrics, result, digits=METRIC_DIGITS)
    return result


#: left out of the resume fingerprint, as in Stage 2: a state resumes after a lower LR (divergence) or another
#: saving / non-finite setting
RESUME_FREE = ("lr", "checkpoint_every_steps", "on_nonfinite")


def state_fingerprint(p: Params, paths: Stage1Paths) -> dict:
    """What a saved Stage-1 state must match to be resumed: the params Stage 1 reads (:data:`RESUME_FREE`
    excepted) and its input files."""
    t = stage1_config(p).train
    params = {"stage1": {k: v for k, v in to_dict(p.stage1).items() if k not in RESUME_FREE},
              "model": {"pooling": p.model.pooling, "head_dropout": p.model.head_dropout},
              "tokenize": to_dict(p.tokenize),
              "train": {k: v for k, v in to_dict(t).items() if k not in RESUME_FREE}}
    return fingerprint(params, [paths.prepared, start(p, paths)], code=__file__)


def start(p: Params, paths: Stage1Paths) -> Path:
    """The encoder Stage 1 trains: the masked-LM phase's output when it ran (``mlm.epochs`` > 0), else
    ``stage1.base_model``."""
    return Path(paths.mlm_model) if p.mlm.epochs > 0 else Path(p.stage1.base_model)


def run(p: Params, paths: Stage1Paths) -> dict:
    from accelerate.utils import set_seed

    if not stage1_is_used(p, paths):
        return skip(p, paths)
    set_seed(p.stage1.seed)
    r = recipe(p, "stage1", Inputs(paths.prepared, start=start(p, paths) if p.mlm.epochs > 0 else None))
    t, base, train_ds, val_ds = r.cfg.train, r.checkpoint, r.data.train, r.data.val
    model = r.build()
    store = StateStore(paths.stage1_state, state_fingerprint(p, paths), t.checkpoint_every_steps)
    res = fit(model, r.data, r.cfg, store=store)

    history = pd.DataFrame(res.history).rename(columns=STAGE1_RENAME)[STAGE1_COLUMNS]
    last = history.iloc[-1].to_dict()
    metrics = dict(last)
    metrics.update({"trained": True, "epoch": int(last["epoch"]), "train_rows": len(train_ds),
                    "val_rows": len(val_ds), "base_model": p.stage1.base_model, "started_from": str(base)})
    if res.accelerator.is_main_process:
        with atomic_path(paths.stage1_model, is_dir=True) as tmp:
            res.model.encoder.save_pretrained(str(tmp), safe_serialization=True)
            copy_tokenizer_files(base, tmp)
            head = {k: v.detach().cpu().contiguous() for k, v in res.model.head_task1.state_dict().items()}
            save_file(head, str(tmp / "stage1_head.safetensors"))
            (tmp / "stage1.json").write_text(json.dumps({"base_model": p.stage1.base_model, "started_from": str(base),
                                                         "metrics": metrics,
                                                         "stage1": to_dict(p.stage1), "pooling": p.model.pooling},
                                                        indent=2) + "\n", encoding="utf-8")
        write_csv(paths.stage1_history, history)
        write_json(paths.stage1_speed, speed_summary(res, t.precision), digits=METRIC_DIGITS)
        write_json(paths.stage1_metrics, metrics, digits=METRIC_DIGITS)
        store.clear()
    return metrics
