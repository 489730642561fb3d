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
from ..evaluate.decision import read_decision
from ..review.duplicates import conflicting_duplicates
from ..review.issues import accuracy_without, find_issues
from ..review.pairs import confusable_pairs, plot_pairs
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


def run(p: Params, paths: ReviewPaths) -> dict:
    scorer = Scorer(paths.stage2_model, p.train.device, p.train.eval_batch_size, p.train.padding)
    info = read_label_info(paths.prepared)
    names = scorer.names
    scorer.check_classes(info.names, paths.prepared)
    dec, _ = read_decision(paths.decision, names)
    queue, splits, test = [], {}, None
    for split in ("val", "test"):
        ds, logits1, logits2 = scorer.split(paths.tokenized, split)   # each split scored once
        p1, p2 = dec.probabilities(logits1, logits2)                  # temperatures only: calibrated
        y1, y2, ids = ds.labels_binary, ds.labels_category, ds.ids
        texts = read_split(paths.prepared, split, ["id", "text"]).set_index("id")["text"].loc[ids].to_numpy()
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
    rows = pd.concat([read_split(paths.prepared, s, ["id", "text", "labels_binary", "category"]).assign(split=s)
                      for s in ("train", "val", "test")], ignore_index=True)
    rows["pick"] = rows["labels_binary"].map({1: "Pick", 0: "Decline"}).fillna("")
    rows["category"] = rows["category"].fillna("")
    dups, dup_counts = conflicting_duplicates(rows)
    flagged_train = _train_queue(paths.cartography_flagged)
    summary = {
        "method": "cleanlab.filter.find_label_issues (prune_by_noise_rate), ranked by self-confidence, on the kept"
                  " model's temperature-calibrated val/test probabilities",
        "splits": splits,
        "upper_bound_note": "task2_acc_without_flagged sets the flagged rows aside as if every flag were a wrong"
                            " label: an upper-bound view, never the result",
        "top_pairs": pairs.head(5).to_dict("records"),
        "duplicates": dup_counts,
        "train_queue": {"path": str(paths.cartography_flagged), "rows": flagged_train, "what": TRAIN_QUEUE},
        "queue": {"path": str(paths.label_issues), "rows": int(sum(len(q) for q in queue))},
        "corrections": {"param": "data.corrections", "columns": "id,category,pick,drop"},
    }
    if scorer.accelerator.is_main_process:
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
