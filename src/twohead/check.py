"""``twohead check``: a preflight that runs nothing and deletes nothing.

DVC removes a stage's outputs before running it, so a `dvc repro` that fails on a bad param, a bad row or
a bad checkpoint also costs the last good outputs. The preflight validates, in seconds: params.yaml
(strictly, ranges included), the raw table (every rule ``prepare_labels`` applies, plus the degenerate
cases), the tokenizer training will use — your own checkpoint's; while Stage 1 runs, ``stage1.base_model``'s; and
when that is the from-scratch encoder, the tokenizer ``build_demo_encoder`` *will* build from these train texts,
built here in seconds — and whether it reads the texts (characters inside unknown tokens past 5%: **not ready**),
``tokenize.max_length`` against the checkpoint's positions, and the predict stage's input.
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
    """Whether the tokenizer reads the user's texts (:mod:`twohead.data.coverage`), before any training: past
    :data:`~twohead.data.coverage.NOT_READY_CHARS` of the characters inside unknown tokens it is an error."""
    from .data.coverage import coverage, not_ready, warnings

    c = coverage(tok, texts)
    stop = not_ready(c, what)
    found = warnings(c, what)
    if stop:
        report.errors.append(stop)
        found = found[1:]
    report.warnings.extend(found)
    if not found and not stop:
        report.ok.append(f"{what}: reads the texts ({c['unknown_char_share']:.2%} of the characters inside unknown"
                         f" tokens, {c['unknown_share']:.2%} of the tokens; {c['normaliser_changed_share']:.2%} of"
                         f" the characters changed by its normaliser; {c['texts']} sampled)")


#: the most train texts check trains its copy of the from-scratch tokenizer on (a seeded sample beyond): seconds,
#: not the minute a 150k-text corpus would take; the coverage of a unigram vocabulary is settled well before
TOKENIZER_SAMPLE = 20_000


def would_be_tokenizer(p, texts: list[str]):
    """The tokenizer ``build_demo_encoder`` will build from these train texts (trained here, on at most
    :data:`TOKENIZER_SAMPLE` of them, in a temporary folder: nothing is written to the project)."""
    import tempfile

    import numpy as np

    from .demo import build_tokenizer

    if len(texts) > TOKENIZER_SAMPLE:
        texts = [texts[i] for i in sorted(np.random.default_rng(0).choice(len(texts), TOKENIZER_SAMPLE, False))]
    with tempfile.TemporaryDirectory() as tmp:
        return build_tokenizer(p.demo_encoder, texts, Path(tmp))


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

    tok, what, texts = _tokenizer_to_check(p, prep, _pipeline_outputs(root), report)
    if tok is not None and texts:
        check_coverage(tok, texts, report, what)
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


def _tokenizer_to_check(p, prep, outputs: set[Path], report: Report):
    """(tokenizer, what it is, the texts to measure it on): your own checkpoint's (on the train texts); while
    Stage 1 runs, ``stage1.base_model``'s; the from-scratch encoder's as it will be built from the train texts
    (measured on the val texts, which it never learns from). (None, …) when it cannot be loaded or built."""
    ckpt, base = Path(p.model.stage1_checkpoint), Path(p.stage1.base_model)
    train = prep.splits["train"]["text"].astype(str).tolist() if prep is not None else []
    if ckpt.resolve() not in outputs:
        return check_checkpoint(str(ckpt), p.tokenize.max_length, report, "model.stage1_checkpoint"), \
            "model.stage1_checkpoint", train
    if base.resolve() not in outputs:
        what = "stage1.base_model (its tokenizer is the checkpoint's)"
        return check_checkpoint(str(base), p.tokenize.max_length, report, "stage1.base_model"), what, train
    if prep is None:
        report.ok.append(f"stage1.base_model {base}: built by the pipeline from the train texts (dvc repro makes it)")
        return None, "", []
    what = f"the tokenizer build_demo_encoder will build from {len(train)} train texts ({base})"
    report.ok.append(f"stage1.base_model {base}: built by the pipeline; its tokenizer, built here from the train"
                     " texts, is measured on the val texts")
    return would_be_tokenizer(p, train), what, prep.splits["val"]["text"].astype(str).tolist()


def _demo_texts(root: Path) -> Path:
    """The demo's table (the default ``data.raw_path``)."""
    from .config.params import DataParams

    return (root / DataParams().raw_path).resolve()
