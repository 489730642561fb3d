"""The review stage: where the labels lose. The kept model's calibrated probabilities on val and test (each split
scored once; out-of-sample: the model never trained on them) go to cleanlab, which flags the rows whose given
category or Pick/Decline looks wrong and estimates the share of wrong labels per split and per class; the most
confused category pairs get their counts both ways, cleanlab's overlap estimate and what a merge would buy in
test Task2 accuracy (paired bootstrap interval); identical texts with different labels are listed; the
hard-to-learn training rows of the cartography are the train-side queue. A person reads the queue and writes
``data.corrections``, which ``prepare_labels`` applies: a relabelling round is a ``dvc exp run``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config.params import Params
from ..data.io import METRIC_DIGITS, write_csv, write_json
from ..data.prepared import read_label_info, read_split
from ..evaluate.decision import PLAIN, read_decision
from ..review.duplicates import conflicting_duplicates
from ..review.issues import accuracy_without, find_issues
from ..review.pairs import confusable_pairs, cumulative_merge_gains, plot_pairs
from ..train.scoring import Scorer

#: what the train-side queue is (said in review.json and the summary)
TRAIN_QUEUE = ("the Task2 training rows of the cartography's hard-to-learn region (low confidence in the given label"
               " across epochs, little variability): where a wrong label puts a row, mixed with hard but right ones")
PICK_NAMES = ["Decline", "Pick"]


@dataclass(frozen=True)
class ReviewPaths:
    """Inputs: prepared labels, tokenized splits, the kept model and its decision, the cartography's flagged rows.
    Outputs: the label-issue queue, the confusable pairs (CSV + figure), the conflicting duplicates, the summary."""

    prepared: Path
    tokenized: Path
    stage2_model: Path
    decision: Path
    cartography_flagged: Path
    label_issues: Path
    confusable_pairs: Path
    pairs_plot: Path
    duplicates: Path
    review_metrics: Path


def _issue_rows(split: str, task: str, ids, texts, given, issues, names) -> pd.DataFrame:
    f = issues.flagged
    return pd.DataFrame({"id": ids[f], "split": split, "task": task, "rank": np.arange(1, len(f) + 1),
                         "given": np.asarray(names, dtype=object)[given[f]],
                         "suggested": np.asarray(names, dtype=object)[issues.suggested[f]],
                         "score": issues.quality[f], "text": texts[f]})


class TokenizedSource:
    """The stage's scores: the kept model on ``data/tokenized`` (the tokens evaluate scored)."""

    def __init__(self, p: Params, paths: ReviewPaths):
        self.scorer = Scorer(paths.stage2_model, p.train.device, p.train.eval_batch_size, p.train.padding)
        self.names, self.tokenized = self.scorer.names, paths.tokenized
        self.is_main = self.scorer.accelerator.is_main_process

    def check(self, names: list[str], prepared: Path) -> None:
        self.scorer.check_classes(names, prepared)

    def split(self, prepared: Path, split: str):
        """(ids, Task1 labels, Task2 labels, texts, Task1 logits, Task2 logits) of one split, scored once."""
        ds, logits1, logits2 = self.scorer.split(self.tokenized, split)
        texts = read_split(prepared, split, ["id", "text"]).set_index("id")["text"].loc[ds.ids].to_numpy()
        return ds.ids, ds.labels_task1, ds.labels_task2, texts, logits1, logits2


class TextSource:
    """``twohead review``'s scores: any Stage-2 model directory on the prepared texts, tokenized by the model's own
    tokenizer (a model outside the DAG need not share ``data/tokenized``'s)."""

    def __init__(self, model_dir: Path, device: str, batch_size: int, padding: str):
        from ..predictor import Predictor

        self.predictor = Predictor(model_dir, device=device, batch_size=batch_size, plain=True, padding=padding)
        self.names, self.model_dir, self.is_main = self.predictor.names, Path(model_dir), True

    def check(self, names: list[str], prepared: Path) -> None:
        if list(self.names) != list(names):
            from ..config.errors import DataError

            raise DataError(f"{self.model_dir}: its {len(self.names)} categories are not those of {prepared}"
                            f" ({len(names)}): review a model against the data it was trained on")

    def split(self, prepared: Path, split: str):
        df = read_split(prepared, split, ["id", "text", "labels_task1", "labels_task2"])
        logits1, logits2 = self.predictor.logits(df["text"].astype(str).tolist())
        return (df["id"].astype(str).to_numpy(dtype=object), df["labels_task1"].to_numpy(),
                df["labels_task2"].to_numpy(), df["text"].to_numpy(dtype=object), logits1, logits2)


def cumulative_merges(y: np.ndarray, pred: np.ndarray, top: pd.DataFrame, names: list[str]) -> list[dict]:
    """Merging the top confusable pairs one after another: Task2 accuracy gained on test by the first 1, 2, … of
    them together, each with its paired-bootstrap interval (positive by construction: a coarser task)."""
    index = {n: i for i, n in enumerate(names)}
    pairs = [(index[a], index[b]) for a, b in zip(top["a"], top["b"])]
    gains = cumulative_merge_gains(y, pred, pairs)
    return [{"pairs": i + 1, "merged": f"{a} + {b}", "gain": float(g), "gain_low": float(lo), "gain_high": float(hi)}
            for i, ((a, b), (g, lo, hi)) in enumerate(zip(zip(top["a"], top["b"]), gains))]


def run(p: Params, paths: ReviewPaths, source=None) -> dict:
    """The review; ``source``: where the scores come from (default: the kept model on ``data/tokenized``). Without
    ``paths.decision`` the raw softmax is used (said in the summary)."""
    source = source or TokenizedSource(p, paths)
    info = read_label_info(paths.prepared)
    names = source.names
    source.check(info.names, paths.prepared)
    has_decision = Path(paths.decision).is_file()
    dec = read_decision(paths.decision, names)[0] if has_decision else PLAIN
    queue, splits, test = [], {}, None
    for split in ("val", "test"):
        ids, y1, y2, texts, logits1, logits2 = source.split(paths.prepared, split)   # each split scored once
        p1, p2 = dec.probabilities(logits1, logits2)                  # temperatures only: calibrated
        m2, m1 = y2 >= 0, y1 >= 0
        i2 = find_issues(y2[m2], p2[m2], names)
        i1 = find_issues(y1[m1], p1[m1], PICK_NAMES)
        correct = p2[m2].argmax(1) == y2[m2]
        queue += [_issue_rows(split, "category", ids[m2], texts[m2], y2[m2], i2, names),
                  _issue_rows(split, "pick", ids[m1], texts[m1], y1[m1], i1, PICK_NAMES)]
        per_class = i2.per_class[i2.per_class["rows"] > 0].sort_values("estimated_noise", ascending=False)
        splits[split] = {"task2": i2.summary(), "task1": i1.summary(), "task2_acc": float(correct.mean()),
                         "task2_acc_without_flagged": accuracy_without(correct, i2.flagged),
                         "classes_most_noisy": per_class.head(10).to_dict("records")}
        if split == "test":
            test = (y2[m2], p2[m2].argmax(1), p2[m2])
    pairs = confusable_pairs(*test, names, top=p.eval.top_confusions)
    rows = pd.concat([read_split(paths.prepared, s, ["id", "text", "labels_task1", "category"]).assign(split=s)
                      for s in ("train", "val", "test")], ignore_index=True)
    rows["pick"] = rows["labels_task1"].map({1: "Pick", 0: "Decline"}).fillna("")
    rows["category"] = rows["category"].fillna("")
    dups, dup_counts = conflicting_duplicates(rows)
    flagged_train = _train_queue(paths.cartography_flagged)
    summary = {
        "method": "cleanlab.filter.find_label_issues (prune_by_noise_rate), ranked by self-confidence, on the"
                  " model's val/test probabilities"
                  + (" calibrated by the decision's temperatures" if has_decision else " (raw softmax: no decision)"),
        "model": str(paths.stage2_model),
        "splits": splits,
        "upper_bound_note": "task2_acc_without_flagged sets the flagged rows aside as if every flag were a wrong"
                            " label: an upper-bound view, never the result",
        "top_pairs": pairs.head(5).to_dict("records"),
        "cumulative_merges": cumulative_merges(test[0], test[1], pairs.head(5), names),
        "duplicates": dup_counts,
        "train_queue": {"path": str(paths.cartography_flagged), "rows": flagged_train, "what": TRAIN_QUEUE},
        "queue": {"path": str(paths.label_issues), "rows": int(sum(len(q) for q in queue))},
        "corrections": {"param": "data.corrections", "columns": "id,category,pick,drop"},
    }
    if source.is_main:
        write_csv(paths.label_issues, pd.concat(queue, ignore_index=True))
        write_csv(paths.confusable_pairs, pairs)
        write_csv(paths.duplicates, dups)
        caption = (f"test rows {len(test[0])} | merge gain: Task2 accuracy if the pair were one category, paired"
                   f" bootstrap 95% CI | model {paths.stage2_model}")
        if len(pairs):
            plot_pairs(pairs, paths.pairs_plot, caption)
        else:
            _empty_plot(paths.pairs_plot, caption)
        write_json(paths.review_metrics, summary, digits=METRIC_DIGITS)   # last: a failed run leaves none
    return summary


def report(r: dict) -> list[str]:
    """What the stage and ``twohead review`` print."""
    lines = []
    for split in ("val", "test"):
        for task, what in (("task2", "category"), ("task1", "Pick/Decline")):
            if r["splits"][split][task].get("skipped"):
                lines.append(f"skipped the {what} labels of {split}: {r['splits'][split][task]['skipped']}")
        t2 = r["splits"][split]["task2"]
        lines.append(f"{split}: {t2['flagged']} of {t2['rows']} category labels flagged, cleanlab estimates"
                     f" {t2['estimated_wrong_share']:.1%} wrong; {r['splits'][split]['task1']['flagged']} Pick/Decline"
                     " labels flagged")
    if r["top_pairs"]:
        top = r["top_pairs"][0]
        lines.append(f"most confused pair: {top['a']} <-> {top['b']} ({top['a_as_b']} + {top['b_as_a']} test rows);"
                     f" merged: {top['merge_gain']:+.1%} Task2 accuracy"
                     f" [{top['merge_gain_low']:+.1%}, {top['merge_gain_high']:+.1%}]")
    lines.append(f"queue: {r['queue']['path']} ({r['queue']['rows']} rows, worst first); fixes go in"
                 " data.corrections (id,category,pick,drop)")
    return lines


def _train_queue(path: Path) -> int:
    if not Path(path).is_file():
        return 0
    df = pd.read_csv(path, usecols=["task", "region"])
    return int(((df["task"] == "task2") & (df["region"] == "hard-to-learn")).sum())


def _empty_plot(path, caption: str) -> None:
    import matplotlib.pyplot as plt

    from ..evaluate.plots import save_figure

    fig, ax = plt.subplots(figsize=(6, 2))
    ax.text(0.5, 0.5, "no category pair was confused on test", ha="center", va="center")
    ax.axis("off")
    save_figure(fig, path, caption)
