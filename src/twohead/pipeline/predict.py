"""The predict stage: score ``predict.input`` (a table of new articles) with the trained Stage-2 model,
reproducibly: the scores change when the model, the input or the predict params change, and only then.
``metrics/predict.json`` counts what the model could not fully read (empty, truncated, mostly-unknown-token
texts: see :class:`~twohead.predictor.Predictor`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config.errors import DataError
from ..config.params import Params
from ..data.io import METRIC_DIGITS, output_format, write_json
from ..data.stream import iter_texts
from ..predictor import Predictor, predict_file, same_file


@dataclass(frozen=True)
class PredictPaths:
    """Inputs: the Stage-2 model and the calibrate stage's decision (the table to score is the param
    predict.input). Output: the scores under the decision."""

    stage2_model: Path
    decision: Path
    scored: Path
    predict_metrics: Path


def run(p: Params, paths: PredictPaths) -> dict:
    c = p.predict
    fmt = output_format(paths.scored)
    if same_file(c.input, paths.scored):
        raise DataError(f"predict.input {c.input} is the stage's output {paths.scored}; score another file")
    chunks = iter_texts(c.input, c.text_column, c.id_column or None, encoding=c.encoding,
                        encoding_hint="set predict.encoding to")
    predictor = Predictor(paths.stage2_model, device=p.train.device, batch_size=c.batch_size,
                          decision=paths.decision, padding=p.train.padding, max_batch_tokens=c.max_batch_tokens)
    counts = predict_file(predictor, chunks, paths.scored, fmt, c.top_k)  # in chunks: memory flat in the rows
    summary = {"rows": counts["rows"], "picked": counts["picked"], "pick_threshold": predictor.pick_threshold,
               "skipped": counts["skipped"], "truncated": counts["truncated"], "unreadable": counts["unreadable"],
               "max_length": predictor.max_length, "padding": predictor.padding,
               "batch_shapes": len(predictor.shapes)}
    write_json(paths.predict_metrics, summary, digits=METRIC_DIGITS)
    return {**summary, "notices": predictor.notices()}
