"""The train_stage2 stage: the plain two-head recipe on the prepared + tokenized data.

Everything is written at the end, atomically, the metrics file last (a failed run leaves none); while
training, the history so far is in ``<train_history>.partial`` for watching a long run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config.params import Params, to_dict
from ..config.schema import history_columns
from ..data.io import METRIC_DIGITS, atomic_path, write_csv, write_json, write_parquet, write_text
from ..data.prepared import texts_by_id
from ..model.two_head import save_raw_weights, save_stage2
from ..train.callbacks import BandRecall, Cartography, PartialHistory, ValEpochs
from ..train.cartography import cartography_tables
from ..train.fit import Diverged, fit
from ..train.recipe import Inputs, recipe
from ..train.report import speed_summary
from ..train.resume import StateStore, fingerprint


@dataclass(frozen=True)
class TrainPaths:
    """Inputs: prepared labels and tokenized splits. Outputs: the model, history, logs, metrics."""

    prepared: Path
    tokenized: Path
    stage2_model: Path
    train_history: Path
    band_recall: Path
    steps_log: Path
    train_metrics: Path
    train_speed: Path
    cartography_task1: Path
    cartography_task2: Path
    cartography_flagged: Path
    val_epochs: Path
    stage2_state: Path


def state_fingerprint(p: Params, paths: TrainPaths) -> dict:
    """What a saved state must match to be resumed: the params this stage reads (learning rates and the
    state/divergence knobs excepted) and its input files."""
    train = {k: v for k, v in to_dict(p.train).items() if k not in ("lr", "checkpoint_every_steps", "on_nonfinite")}
    params = {"model": to_dict(p.model), "loss": to_dict(p.loss), "switches": to_dict(p.switches), "train": train,
              "tokenize.max_length": p.tokenize.max_length}
    return fingerprint(params, [paths.prepared, paths.tokenized, Path(p.model.stage1_checkpoint)], code=__file__)


def run(p: Params, paths: TrainPaths) -> dict:
    from accelerate.utils import set_seed

    t = p.train
    set_seed(t.seed)
    r = recipe(p, "stage2", Inputs(paths.prepared, paths.tokenized))
    names, info, train_ds, val_ds = r.info.names, r.info, r.data.train, r.data.val
    model = r.build()
    bands = BandRecall(val_ds.labels_task2, names, info.bands)
    val_epochs = ValEpochs(val_ds.labels_task2)
    partial = PartialHistory(Path(str(paths.train_history) + ".partial"), history_columns(p.switches))
    carto = Cartography(len(train_ds), t.epochs)
    store = StateStore(paths.stage2_state, state_fingerprint(p, paths), t.checkpoint_every_steps)
    try:
        res = fit(model, r.data, r.cfg, [bands, val_epochs, partial, carto], store)
    except Diverged as exc:  # the steps so far and the bad one, for the user to inspect; no metrics
        write_text(paths.steps_log, "".join(json.dumps(row) + "\n" for row in exc.step_log))
        raise

    metrics = dict(res.history[-1])
    metrics.update({"kept_epoch": res.kept_epoch, "best_epoch": res.best_epoch, "best_val_acc_task2": res.best_score,
                    "train_rows": len(train_ds), "val_rows": len(val_ds), "skipped_steps": res.skipped_steps})
    if res.averaging is not None:   # switches.ema: which weights were kept, and every average's val figures
        metrics["kept_weights"] = res.averaging["kept"]
        metrics["weight_averaging"] = res.averaging
    arrays = carto.arrays()
    if res.accelerator.is_main_process:
        with atomic_path(paths.stage2_model, is_dir=True) as tmp:
            save_stage2(res.model, tmp, r.tokenizer, info.label_maps, extra={
                "stage1_checkpoint": p.model.stage1_checkpoint, "kept_epoch": res.kept_epoch,
                "max_length": p.tokenize.max_length, "truncation": p.tokenize.truncation,
                "head_share": p.tokenize.head_share,
                "params": {k: to_dict(getattr(p, k)) for k in ("model", "loss", "switches", "train")},
                **({"kept_weights": res.averaging["kept"]} if res.averaging else {})})
            if res.raw_state is not None:   # an average was kept: evaluate compares it with these on test
                save_raw_weights(res.raw_state, tmp)
        write_csv(paths.train_history, pd.DataFrame(res.history, columns=history_columns(p.switches)))
        write_csv(paths.band_recall, bands.table())
        write_text(paths.steps_log, "".join(json.dumps(row) + "\n" for row in res.step_log))
        tables = cartography_tables(arrays, train_ds.ids, train_ds.labels_task1, train_ds.labels_task2, names,
                                    info.bands["class_band"], texts_by_id(paths.prepared, "train"))
        write_csv(paths.cartography_task1, tables["task1"])
        write_csv(paths.cartography_task2, tables["task2"])
        write_csv(paths.cartography_flagged, tables["flagged"])
        write_parquet(paths.val_epochs, val_epochs.table(val_ds.ids))
        write_json(paths.train_speed, speed_summary(res, t.precision), digits=METRIC_DIGITS)
        write_json(paths.train_metrics, metrics, digits=METRIC_DIGITS)  # last: a failed run leaves no metrics file
        partial.clear()
        store.clear()
    return metrics
