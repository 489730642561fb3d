"""The pretrain_mlm stage: masked-LM adaptation of ``stage1.base_model`` to the user's own texts, before Stage 1.

Task-adaptive pretraining (Gururangan et al., ACL 2020, "Don't Stop Pretraining"): the encoder keeps learning the
language of the texts it will classify, with transformers' masked-LM class and ``DataCollatorForLanguageModeling``
(:mod:`twohead.train.masked_lm`), trained by the same :func:`~twohead.train.fit.fit` as both stages. Its texts:
the train split's (labelled or not), ``data.unlabeled_path``'s, and val/test's only with ``mlm.transductive``.

Output: an encoder directory in the base model's layout (``config.json`` + ``model.safetensors`` + the base's
tokenizer files; the MLM head is not kept — Stage 1 and Stage 2 never use it), which ``pretrain_stage1`` starts
from, plus ``mlm.json``. With ``mlm.epochs: 0``, or when Stage 1 does not run (your own
``model.stage1_checkpoint``), the stage trains nothing and writes ``SKIPPED.json`` (Stage 1 then starts from
``stage1.base_model``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config.params import Params, to_dict
from ..config.schema import MLM_COLUMNS, MLM_RENAME
from ..data.io import METRIC_DIGITS, atomic_path, write_csv, write_json
from ..train.fit import fit
from ..train.recipe import Inputs, mlm_config, mlm_recipe
from ..train.report import speed_summary
from ..train.resume import StateStore, fingerprint
from .pretrain_stage1 import RESUME_FREE, copy_tokenizer_files


@dataclass(frozen=True)
class MlmPaths:
    """Input: the prepared splits (their texts). Outputs: the adapted encoder directory, its history, metrics,
    speed, and the resumable state."""

    prepared: Path
    stage1_model: Path
    mlm_model: Path
    mlm_history: Path
    mlm_metrics: Path
    mlm_speed: Path
    mlm_state: Path


def mlm_runs(p: Params, stage1_model: Path) -> bool:
    """Whether the masked-LM phase trains: ``mlm.epochs`` > 0 and Stage 1 runs (``model.stage1_checkpoint`` is
    Stage 1's own output)."""
    return p.mlm.epochs > 0 and Path(p.model.stage1_checkpoint).resolve() == Path(stage1_model).resolve()


def skip(p: Params, paths: MlmPaths) -> dict:
    reason = ("mlm.epochs is 0" if p.mlm.epochs == 0 else
              "model.stage1_checkpoint points at another checkpoint: Stage 1 does not run, so neither does its"
              " masked-LM phase")
    with atomic_path(paths.mlm_model, is_dir=True) as tmp:
        (tmp / "SKIPPED.json").write_text(json.dumps({"reason": reason}, indent=2) + "\n", encoding="utf-8")
    write_csv(paths.mlm_history, pd.DataFrame(columns=MLM_COLUMNS))
    write_json(paths.mlm_speed, {}, digits=METRIC_DIGITS)
    StateStore(paths.mlm_state, {}).clear()
    result = {"trained": False, "reason": reason}
    write_json(paths.mlm_metrics, result, digits=METRIC_DIGITS)
    return result


def state_fingerprint(p: Params, paths: MlmPaths) -> dict:
    """What a saved state must match to be resumed: the params the phase reads (as Stage 1's, :data:`RESUME_FREE`
    excepted) and its input files."""
    t = mlm_config(p).train
    params = {"mlm": {k: v for k, v in to_dict(p.mlm).items() if k not in RESUME_FREE},
              "tokenize": to_dict(p.tokenize), "unlabeled_path": p.data.unlabeled_path,
              "train": {k: v for k, v in to_dict(t).items() if k not in RESUME_FREE}}
    inputs = [paths.prepared, Path(p.stage1.base_model)] + ([Path(p.data.unlabeled_path)]
                                                            if p.data.unlabeled_path else [])
    return fingerprint(params, inputs, code=__file__)


def run(p: Params, paths: MlmPaths, log=print) -> dict:
    from accelerate.utils import set_seed

    if not mlm_runs(p, paths.stage1_model):
        return skip(p, paths)
    set_seed(p.mlm.seed)
    r = mlm_recipe(p, Inputs(paths.prepared))
    model = r.build()
    head = "a fresh masked-LM head (the checkpoint has none)" if model.fresh_head else "its own masked-LM head"
    log(f"[pretrain_mlm] {r.checkpoint}: {head}; texts: {', '.join(f'{v} {k[:-6]}' for k, v in r.sources.items())}"
        + ("" if p.mlm.transductive else " (val/test texts only to validate: mlm.transductive is false)"))
    store = StateStore(paths.mlm_state, state_fingerprint(p, paths), r.cfg.train.checkpoint_every_steps)
    res = fit(model, r.data, r.cfg, callbacks=[r.objective], store=store, objective=r.objective)
    history = pd.DataFrame(res.history).rename(columns=MLM_RENAME)[MLM_COLUMNS]
    last = history.iloc[-1].to_dict()
    metrics = {**last, "trained": True, "epoch": int(last["epoch"]), "trained_texts": len(r.data.train),
               "val_texts": len(r.data.val), **r.sources, "fresh_head": bool(model.fresh_head),
               "base_model": str(r.checkpoint)}
    if res.accelerator.is_main_process:
        with atomic_path(paths.mlm_model, is_dir=True) as tmp:
            res.model.encoder.save_pretrained(str(tmp), safe_serialization=True)
            copy_tokenizer_files(r.checkpoint, tmp)
            (tmp / "mlm.json").write_text(json.dumps({"base_model": str(r.checkpoint), "metrics": metrics,
                                                      "mlm": to_dict(p.mlm)}, indent=2) + "\n", encoding="utf-8")
        write_csv(paths.mlm_history, history)
        write_json(paths.mlm_speed, speed_summary(res, r.cfg.train.precision), digits=METRIC_DIGITS)
        write_json(paths.mlm_metrics, metrics, digits=METRIC_DIGITS)
        store.clear()
    return metrics
