"""The predict stage: score ``predict.input`` (a table of new articles) with the trained Stage-2 model,
reproducibly: the scores change when the model, the input or the predict params change, and only then.
``metrics/predict.json`` counts what the model could not fully read (empty, truncated, mostly-unknown-token
texts: see :class:`~twohead.predictor.Predictor`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config.params import Params
from ..data.io import METRIC_DIGITS, output_format, read_texts, write_json, write_table
from ..predictor import Predictor


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
    texts, ids = read_texts(c.input, c.text_column, c.id_column or None, encoding=c.encoding,
                            encoding_hint="set predict.encoding to")
    predictor = Predictor(paths.stage2_model, device=p.train.device, batch_size=c.batch_size,
                          decision=paths.decision)
    df = predictor.predict(texts, ids=ids, top_k=c.top_k)
    summary = {"rows": len(df), "picked": int((df["pick"] == "Pick").sum()), "pick_threshold": predictor.pick_threshold,
               "skipped": predictor.skipped, "truncated": predictor.truncated, "unreadable": predictor.unreadable,
               "max_length": predictor.max_length}
    write_table(df, paths.scored, fmt)
    write_json(paths.predict_metrics, summary, digits=METRIC_DIGITS)
    return {**summary, "notices": predictor.notices()}
