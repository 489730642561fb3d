"""The prepare_labels stage: validated, split, encoded labels plus everything later stages read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config.params import Params
from ..data.io import METRIC_DIGITS, write_json, write_parquet
from ..data.labels import SPLITS, coverage, prepare
from ..data.weights import frequency_bands, task1_weights, task2_weights


@dataclass(frozen=True)
class PreparePaths:
    """Input: the raw table (params: data.raw_path). Outputs: the prepared directory and the summary metrics."""

    prepared: Path
    data_metrics: Path


def run(p: Params, paths: PreparePaths) -> dict:
    """Write ``{train,val,test}.parquet``, ``label_maps.json``, ``class_weights.json`` and ``bands.json``
    under ``paths.prepared``, then the summary metric file (last, so a failed run leaves none)."""
    out = Path(paths.prepared)
    prep = prepare(p.data, p.split)
    train = prep.splits["train"]
    w1 = task1_weights(train)
    w2 = task2_weights(train, prep.categories, p.loss)
    bands = frequency_bands(prep.categories, w2["support"], p.bands)

    label_maps = {
        "task1": {"names": ["Decline", "Pick"], "Decline": 0, "Pick": 1},
        "task2": {"names": prep.categories, "to_id": {c: i for i, c in enumerate(prep.categories)}},
        "ignore_index": -100,
        "order": "task2 ids follow the category names sorted by Unicode code point",
    }
    for name in SPLITS:
        write_parquet(out / f"{name}.parquet", prep.splits[name])
    write_json(out / "label_maps.json", label_maps)
    write_json(out / "class_weights.json", {"task1": w1, "task2": w2})
    write_json(out / "bands.json", bands)

    summary = {
        "n_classes": len(prep.categories),
        "splits": {name: coverage(prep.splits[name]) for name in SPLITS},
        "classes_per_band": {b["name"]: b["n_classes"] for b in bands["bands"]},
        "dropped": prep.dropped,
        "decline_category_dropped": prep.decline_category_dropped,
        "rare_train_only": prep.rare_train_only,
        "task2_weights_clipped": {"low": w2["n_clipped_low"], "high": w2["n_clipped_high"]},
        "cross_split_duplicates": prep.cross_split_duplicates,
        "warnings": prep.warnings,
        **({"category_spellings_merged": prep.names_respelled} if prep.names_respelled else {}),
        **({"corrections": prep.corrections} if prep.corrections is not None else {}),
    }
    for w in prep.warnings:
        print(f"[prepare_labels] warning: {w}", flush=True)
    write_json(paths.data_metrics, summary, digits=METRIC_DIGITS)
    return summary
