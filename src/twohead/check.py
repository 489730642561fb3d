"""``twohead check``: a preflight that runs nothing and deletes nothing.

DVC removes a stage's outputs before running it, so a `dvc repro` that fails on a bad param, a bad row or
a bad checkpoint also costs the last good outputs. The preflight validates, in seconds: params.yaml
(strictly, ranges included), the raw table (every rule ``prepare_labels`` applies, plus the degenerate
cases), the checkpoint (or, while ``models/stage1`` is a pipeline output not built yet, the Stage-1 base
model), ``tokenize.max_length`` against the checkpoint's positions, and the predict stage's input.
It reports every problem it finds, not only the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config.errors import TwoheadError


@dataclass
class Report:
    ok: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return ([f"ok: {m}" for m in self.ok] + [f"warning: {m}" for m in self.warnings]
                + [f"error: {m}" for m in self.errors])


def _pipeline_outputs(root: Path) -> set[Path]:
    from .config.layout import dvc_paths

    try:
        return {(root / v).resolve() for v in dvc_paths(root).values()}
    except TwoheadError:
        return set()


def check_checkpoint(path: str, max_length: int, report: Report, what: str):
    """The checkpoint validated (reported); its tokenizer, or None when it failed."""
    from .model.checkpoint import validate_checkpoint

    try:
        tok, info = validate_checkpoint(path, max_length=max_length)
        report.ok.append(f"{what} {path}: {info['model_type']}, hidden {info['hidden_size']},"
                         f" {info['num_hidden_layers']} layers, tokenizer {info['tokenizer']}")
        return tok
    except TwoheadError as exc:
        report.errors.append(f"{what}: {exc}")
        return None


def check_coverage(tok, texts: list[str], report: Report, what: str) -> None:
    """Whether the tokenizer reads the user's texts (:mod:`twohead.data.coverage`), before any training."""
    from .data.coverage import coverage, warnings

    c = coverage(tok, texts)
    found = warnings(c, what)
    report.warnings.extend(found)
    if not found:
        report.ok.append(f"{what}: reads the texts ({c['unknown_share']:.2%} unknown tokens,"
                         f" {c['normaliser_changed_share']:.2%} of the characters changed by its normaliser;"
                         f" {c['texts']} sampled)")


#: a warning when tokenize.max_length cuts more than this share of the training texts
CUT_WARNING = 0.05


def cut_shares(tok, texts: list[str], lengths=(128, 256, 512, 1024), sample: int = 2000) -> dict[int, float]:
    """The share of texts (a seeded sample of ``sample``) longer than each max_length, special tokens included."""
    import numpy as np

    rng = np.random.default_rng(0)
    pick = texts if len(texts) <= sample else [texts[i] for i in sorted(rng.choice(len(texts), sample, False))]
    cap = max(lengths) * 100   # no token covers more characters (data.tokenization.CHARS_PER_TOKEN)
    n = np.array([len(x) for x in tok([t[:cap] for t in pick], add_special_tokens=True)["input_ids"]])
    return {int(L): float((n > L).mean()) if len(n) else 0.0 for L in lengths}


def check_truncation(tok, texts: list[str], max_length: int, truncation: str, report: Report) -> dict[int, float]:
    """How many training texts ``tokenize.max_length`` cuts, what other lengths would cut, and what to do."""
    shares = cut_shares(tok, texts, tuple(sorted({128, 256, 512, 1024, max_length})))
    cut = shares[max_length]
    others = ", ".join(f"{L}: {s:.1%}" for L, s in shares.items() if L != max_length)
    line = f"tokenize.max_length {max_length} cuts {cut:.1%} of the training texts (other lengths cut — {others})"
    if cut > CUT_WARNING:
        fix = ("the cut rows keep their head and tail (tokenize.truncation: head_tail)" if truncation == "head_tail"
               else "tokenize.truncation: head_tail keeps each cut text's end too (Sun et al. 2019: +1.6 points on"
                    " long reviews); or a larger max_length, if the model's positions and memory allow")
        report.warnings.append(f"{line}; {fix}")
    else:
        report.ok.append(line)
    return shares


def one_class_splits(splits: dict) -> list[str]:
    """A val or test split whose labels of a task are all one class: the review stage skips it (label issues
    compare classes), and its accuracy says little."""
    out = []
    for name in ("val", "test"):
        df = splits[name]
        for task, col, what in (("Task1", "labels_task1", "Pick/Decline"), ("Task2", "category", "category")):
            values = df[col][df[col].notna() & (df[col] != -100)].unique() if col in df else []
            if len(values) == 1:
                only = {1: "Pick", 0: "Decline"}.get(values[0], values[0]) if task == "Task1" else values[0]
                out.append(f"the {name} split's {what} labels are all {str(only)!r}: the review stage skips"
                           f" {task} there (label issues need two classes), and {task}'s {name} figures say little")
    return out


def run_check(params_path: str | Path = "params.yaml", root: str | Path = ".") -> Report:
    from .config.params import load_params
    from .data.labels import prepare

    root = Path(root)
    report = Report()
    try:
        p = load_params(params_path)
        report.ok.append(f"{params_path}: every key present, typed and in range")
    except TwoheadError as exc:
        report.errors.append(str(exc))
        return report  # nothing else can be read without valid params

    prep = None
    try:
        prep = prepare(p.data, p.split)
        sizes = ", ".join(f"{k} {len(v)}" for k, v in prep.splits.items())
        report.ok.append(f"{p.data.raw_path}: {len(prep.categories)} categories; rows {sizes}")
        report.warnings.extend(prep.warnings)
        report.warnings.extend(one_class_splits(prep.splits))
    except TwoheadError as exc:
        report.errors.append(str(exc))

    outputs = _pipeline_outputs(root)
    ckpt = Path(p.model.stage1_checkpoint)
    tok, what = None, "model.stage1_checkpoint"
    if ckpt.resolve() in outputs and not ckpt.exists():
        base = Path(p.stage1.base_model)
        if base.resolve() in outputs and not base.exists():
            report.ok.append(f"model.stage1_checkpoint {ckpt} and stage1.base_model {base} are built by the pipeline"
                             " (dvc repro makes them)")
        else:
            what = "stage1.base_model (its tokenizer is the checkpoint's)"
            tok = check_checkpoint(str(base), p.tokenize.max_length, report, "stage1.base_model")
    else:
        tok = check_checkpoint(str(ckpt), p.tokenize.max_length, report, "model.stage1_checkpoint")
    if tok is not None and prep is not None:
        check_coverage(tok, prep.splits["train"]["text"].tolist(), report, what)
        check_truncation(tok, prep.splits["train"]["text"].tolist(), p.tokenize.max_length, p.tokenize.truncation,
                         report)

    src = Path(p.predict.input)
    if src.is_file():
        demo = _demo_texts(root)
        if demo is not None and src.resolve() == demo and Path(p.data.raw_path).resolve() != demo:
            report.warnings.append(f"predict.input {src}: still the demo's articles while data.raw_path is"
                                   f" {p.data.raw_path}; set predict.input (and predict.text_column / id_column)"
                                   " to the table you want scored")
        else:
            report.ok.append(f"predict.input {src}: found")
    else:
        report.errors.append(f"predict.input {src}: file not found (the predict stage scores it)")
    return report


def _demo_texts(root: Path) -> Path | None:
    from .config.layout import dvc_paths

    try:
        return (root / dvc_paths(root)["demo_texts"]).resolve()
    except (TwoheadError, KeyError):
        return None
