"""The ``twohead`` command: what is not a DVC stage.

    twohead predict MODEL_DIR INPUT [--output OUT] [--text-column text] [--id-column id] [--encoding utf-8] [--top-k 3]
                    [--batch-size 64] [--device auto] [--pick-threshold P]
    twohead compare BASE OTHER [OTHER ...] [--json F] [--md F] [--resamples 2000] [--seed 0]
    twohead compare --group-by PARAM [EXP ...] [--json F] [--md F] [--plot F]
    twohead check [--params params.yaml]
    twohead remote [EXP] [--remote origin]
    twohead curve [--fractions 0.25 0.5 1.0] [--seeds 1 2] [--dry-run]
    twohead ablation queue [--seeds 1 2 3] [--only rdrop,msd] [--dry-run]
    twohead ablation report [EXP ...] [--runs-dir DIR] [--md F] [--json F]
    twohead lr-find [--stage stage2|stage1] [--lrs 1e-5 3e-5 …] [--budget 0.1] [--eta 0] [--val-rows 256]
    twohead review MODEL_DIR [--out reviews/NAME] [--decision F] [--prepared DIR] [--device auto]
    twohead speed [--stage stage2|stage1] [--seconds 120] [--batch-sizes 16 64 …] [--compile] [--json F]
    twohead lr-find --method range [--stage …] [--steps 200] [--min-lr 1e-7] [--max-lr 1] [--rows N]

A user-facing error (:class:`~twohead.config.errors.TwoheadError`, or an OS error on a named file: a full disk,
a read-only folder) prints one line and exits with status 2; Ctrl-C prints one line and exits with 130
(TWOHEAD_DEBUG=1: tracebacks instead);
nothing is half-written (outputs go to a temporary file that is renamed into place when complete).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Sequence

from .config.errors import DataError, OutputError, user_message
from .config.flags import add_flags
from .config.schema import STAGES
from .config.switches import ABLATION
from .data.io import output_format
from .tune.lr_range import RangeTestConfig
from .tune.lr_sweep import SweepConfig
from .tune.speed import SpeedConfig


def _emit(args, result: dict, text: str) -> int:
    """Print a report's markdown; write its JSON (--json) and markdown (--md) when asked."""
    from .data.io import write_json, write_text

    print(text)
    if args.json:
        write_json(args.json, result)
    if args.md:
        write_text(args.md, text)
    return 0


def cmd_predict(args) -> int:
    from transformers.utils import logging as hf_logging

    from .data.stream import iter_texts
    from .predictor import Predictor, predict_file, same_file

    hf_logging.disable_progress_bar()  # no "Loading weights" bar in a scoring command's output
    fmt = output_format(args.output)  # every input checked before the model is loaded
    if args.input != "-" and same_file(args.input, args.output):
        raise DataError(f"{args.output}: is the input file; write the predictions to another file")
    if args.input == "-":
        texts = sys.stdin.read().splitlines()
        if not texts:
            raise DataError("standard input: no lines to predict")
        chunks = iter([(texts, list(range(len(texts))))])
    else:
        chunks = iter_texts(args.input, args.text_column, args.id_column, encoding=args.encoding)
        first = next(chunks)  # the input's own errors (columns, encoding) before the model is loaded
        chunks = itertools.chain([first], chunks)
    predictor = Predictor(args.model_dir, device=args.device, batch_size=args.batch_size,
                          pick_threshold=args.pick_threshold, decision=args.decision, plain=args.plain,
                          padding=args.padding, max_batch_tokens=args.max_batch_tokens)
    for notice in predictor.start_notices():
        print(f"twohead predict: {notice}", file=sys.stderr)
    counts = _to_output(lambda: predict_file(predictor, chunks, args.output, fmt, args.top_k), args.output)
    for notice in predictor.notices():
        print(f"twohead predict: {notice}", file=sys.stderr)
    if args.output != "-":
        how = (f"decision {predictor.decision_path}" if predictor.decision_path else "plain rule") + \
            f", Pick threshold {predictor.pick_threshold:g}"
        print(f"twohead predict: {counts['rows']} rows -> {args.output} ({how})", file=sys.stderr)
    return 0


def _to_output(write, output: str):
    """Run ``write``; on standard output a full disk is one line naming it and a closed pipe (``| head``) ends
    quietly."""
    import os

    if output != "-":
        return write()
    try:
        out = write()
        sys.stdout.flush()
        return out
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        raise SystemExit(1) from None
    except OSError as exc:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise OutputError(f"standard output: cannot write it ({exc.strerror or exc})") from exc


def cmd_compare(args) -> int:
    from .experiments import compare as cmp

    if args.group_by:
        if args.runs_dir:
            from .experiments.ablation import load_runs

            result = cmp.group_runs(load_runs(runs_dir=args.runs_dir), args.group_by, seed_key=args.seed_key)
        else:
            result = cmp.group_compare(args.revs or cmp.baseline_experiments(), args.group_by,
                                       seed_key=args.seed_key)
        text = cmp.groups_markdown(result)
        if args.plot:
            cmp.groups_plot(result, args.plot)
    else:
        if len(args.revs) < 2:
            raise DataError("compare needs BASE and at least one OTHER revision (or --group-by PARAM)")
        result = cmp.compare(args.revs[0], args.revs[1:], resamples=args.resamples, seed=args.seed)
        text = cmp.to_markdown(result)
    return _emit(args, result, text)


def cmd_check(args) -> int:
    from .check import run_check

    report = run_check(args.params)
    for line in report.lines():
        print(line, file=sys.stderr if line.startswith("error") else sys.stdout)
    if report.errors:
        print(f"twohead check: {len(report.errors)} problem(s); nothing was run or deleted", file=sys.stderr)
        return 1
    print("twohead check: all good; dvc repro / dvc exp run can start")
    return 0


def cmd_remote(args) -> int:
    from .experiments.remote import check

    for line in check(args.experiment, args.remote):
        print(line)
    print("twohead remote: ready")
    return 0


def cmd_curve(args) -> int:
    from .experiments.curve import curve_lines, run_curve

    result = run_curve(".", args.fractions, args.seeds, args.prefix, args.json, args.plot, args.dry_run)
    if result is not None:
        for line in curve_lines(result):
            print(f"[curve] {line}")
        print(f"[curve] wrote {args.json} and {args.plot}; dvc repro plot puts it in plots/summary.md's route table")
    return 0


def _tool_params(args):
    from transformers.utils import logging as hf_logging

    from .config.params import load_params

    hf_logging.disable_progress_bar()
    return load_params(args.params)


def cmd_lr_find(args) -> int:
    from .config.flags import from_flags
    from .tune import lr_range, lr_sweep
    from .tune.common import ToolPaths

    p = _tool_params(args)
    paths = ToolPaths.of_project(".", "lr_find", "lr_find_plot")
    if args.method == "range":
        return lr_range.main(p, paths, from_flags(lr_range.RangeTestConfig, args), args.stage)
    return lr_sweep.main(p, paths, from_flags(lr_sweep.SweepConfig, args), args.stage)


def cmd_review(args) -> int:
    """The review stage's report for any Stage-2 model directory (one outside the DAG: an experiment's, a colleague's),
    on this project's prepared val/test rows, into ``--out``."""
    from .config.layout import dvc_paths
    from .pipeline.review import ReviewPaths, TextSource, report, run

    p = _tool_params(args)
    layout = dvc_paths(".")
    model = Path(args.model_dir)
    out = Path(args.out or Path("reviews") / (model.resolve().name or "model"))
    names = {"label_issues": "label_issues.csv", "confusable_pairs": "confusable_pairs.csv",
             "pairs_plot": "confusable_pairs.png", "duplicates": "conflicting_duplicates.csv",
             "review_metrics": "review.json"}
    paths = ReviewPaths(prepared=Path(args.prepared or layout["prepared"]), tokenized=Path(layout["tokenized"]),
                        stage2_model=model, decision=Path(args.decision or model.parent / "decision.json"),
                        # the model's own run: <run>/models/stage2 → <run>/metrics/cartography_flagged.csv (none else)
                        cartography_flagged=Path(args.cartography
                                                 or model.resolve().parent.parent / layout["cartography_flagged"]),
                        **{k: out / v for k, v in names.items()})
    source = TextSource(model, args.device or p.train.device, p.train.eval_batch_size, p.train.padding)
    for line in report(run(p, paths, source)):
        print(f"twohead review: {line}")
    print(f"twohead review: wrote {out}/ ({', '.join(names.values())})")
    return 0


def cmd_speed(args) -> int:
    from .config.flags import from_flags
    from .tune import speed
    from .tune.common import ToolPaths

    p = _tool_params(args)
    paths = ToolPaths.of_project(".", "speed", "speed_plot", json=args.json, plot=args.plot)
    return speed.main(p, paths, from_flags(speed.SpeedConfig, args), args.stage)


def cmd_ablation(args) -> int:
    import shlex
    import subprocess

    from .config import switches
    from .experiments import ablation as abl
    from .experiments.compare import baseline_experiments

    if args.action == "queue":
        names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
        try:
            cmds = switches.queue_commands(args.seeds, names, args.prefix, args.set or [])
        except KeyError as exc:
            raise DataError(str(exc.args[0])) from None
        for cmd in cmds:
            print(shlex.join(cmd))
            if not args.dry_run:
                proc = subprocess.run(cmd)
                if proc.returncode != 0:
                    raise DataError(f"{shlex.join(cmd)} failed with status {proc.returncode}")
        if not args.dry_run:
            print(f"twohead ablation: {len(cmds)} experiments queued; run them with `dvc queue start -j 1`, follow"
                  " with `dvc queue status`, then `twohead ablation report`")
        return 0
    runs = abl.load_runs(args.revs or (None if args.runs_dir else baseline_experiments()), args.runs_dir)
    speeds = [abl.samples_per_s(r, runs_dir=args.runs_dir) for r in runs]
    result = abl.ablation(runs, speeds, seed_key=args.seed_key)
    text = abl.to_markdown(result)
    return _emit(args, result, text)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (0 or a negative count is a usage error, not a traceback)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


class HELP(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's --help line ends with its default (a flag with none says so in its own words)."""

    def _get_help_string(self, action):
        if any(action.default is v for v in (None, False, argparse.SUPPRESS)) or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)

PARAMS_HELP = "the params file to read"


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="classify new texts with a trained Stage-2 model", formatter_class=HELP,
                       description="Classify texts with a Stage-2 model directory (models/stage2).")
    p.add_argument("model_dir", help="a Stage-2 model directory, e.g. models/stage2")
    p.add_argument("input", help="CSV / TSV / Parquet / JSON Lines file (format from the suffix), or - for one text"
                                 " per line on standard input")
    p.add_argument("--output", "-o", default="-", help="CSV / Parquet / JSON Lines by suffix; - = CSV on standard"
                                                        " output")
    p.add_argument("--text-column", default="text", help="the input's column holding the article text")
    p.add_argument("--id-column", default=None, help="the input's id column (none: 'id' if the input has it, else the"
                                                     " row number)")
    p.add_argument("--encoding", default="utf-8", help="text encoding of a CSV / JSON Lines input (e.g. cp1252)")
    p.add_argument("--top-k", type=positive_int, default=3, help="how many categories to list per row, best first")
    p.add_argument("--batch-size", type=positive_int, default=64, help="texts scored at once (memory vs speed)")
    p.add_argument("--max-batch-tokens", type=positive_int, default=4096,
                   help="at most this many padded tokens a batch (rows x longest row): long texts go fewer at a time,"
                        " so memory stays bounded")
    p.add_argument("--device", default="auto", choices=["auto", "mps", "cuda", "cpu"],
                   help="where to run; auto = mps, else cuda, else cpu")
    p.add_argument("--padding", default="auto", choices=["auto", "buckets", "longest"],
                   help="batch lengths: a short ladder (buckets: few shapes, for MPS / CUDA) or each batch's longest"
                        " row; auto: per device")
    p.add_argument("--decision", default=None, help="a calibrate stage decision file (none: decision.json beside"
                                                   " MODEL_DIR, if there)")
    p.add_argument("--plain", action="store_true", help="ignore any decision: raw softmax, Decline when"
                                                        " P(Pick) < 0.5, the Task2 argmax")
    p.add_argument("--pick-threshold", type=float, default=None, help="Decline when P(Pick) is below this (none: the"
                                                                      " decision's)")
    p.set_defaults(func=cmd_predict)


def _add_compare(sub) -> None:
    c = sub.add_parser("compare", help="did a change really help? paired bootstrap + McNemar; intervals over seeds",
                       formatter_class=HELP,
                       description="Compare revisions (branch, tag, commit, DVC experiment name, or 'workspace') on"
                                   " the same test rows; or group experiments by a param and summarise over seeds.")
    c.add_argument("revs", nargs="*", metavar="REV", help="BASE OTHER [OTHER ...]; with --group-by: the experiments"
                                                          " (none: every experiment of the current commit)")
    c.add_argument("--group-by", metavar="PARAM", help="a dotted params.yaml key, e.g. loss.label_smoothing")
    c.add_argument("--seed-key", default="train.seed", help="with --group-by: the param that pairs runs across groups")
    c.add_argument("--runs-dir", metavar="DIR", help="with --group-by: the runs are DIR's sub-folders (project layouts"
                                                     " written by a benchmark script, e.g. benchmarks/bench_mlm.py)")
    c.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per interval (more: steadier"
                                                               " intervals, slower)")
    c.add_argument("--seed", type=int, default=0, help="the bootstrap's random seed")
    c.add_argument("--json", metavar="FILE", help="also write the comparison to this JSON file")
    c.add_argument("--md", metavar="FILE", help="also write the table to this Markdown file")
    c.add_argument("--plot", metavar="PNG", help="with --group-by: a per-seed strip plot to this file", default=None)
    c.set_defaults(func=cmd_compare)


def _add_check(sub) -> None:
    k = sub.add_parser("check", help="preflight: params, raw data and checkpoint, in seconds; runs and deletes nothing",
                       formatter_class=HELP,
                       description="Validate params.yaml, the raw table and the checkpoint before dvc repro (which"
                                   " deletes a stage's outputs before running it).")
    k.add_argument("--params", default="params.yaml", help=PARAMS_HELP)
    k.set_defaults(func=cmd_check)


def _add_remote(sub) -> None:
    r = sub.add_parser("remote", help="is this clone ready for the GPU round trip (dvc exp push / pull)?",
                       formatter_class=HELP,
                       description="Check the git remote, the committed default DVC remote and, given EXP, where that"
                                   " experiment is and whether its params fit this checkout's code (docs/remote.md)."
                                   " Each problem: one line naming its fix, exit 2.")
    r.add_argument("experiment", nargs="?", metavar="EXP", help="an experiment name to look for (default: none)")
    r.add_argument("--remote", default="origin", help="the git remote experiments travel through")
    r.set_defaults(func=cmd_remote)


def _add_curve(sub) -> None:
    c = sub.add_parser("curve", help="learning curve: real DVC experiments at fractions of the train rows, a fit,"
                                     " and Task2 at 2x / 4x the rows", formatter_class=HELP,
                       description="Run `dvc exp run --temp … evaluate` per fraction x seed (train.max_train_rows,"
                                   " train.seed), reusing any experiment of this commit with the same params; fit"
                                   " log-linear and power-law curves (AIC picks), project 2x and 4x the rows with a"
                                   " band from the seeds. Says the cost first; Ctrl-C keeps finished points.")
    c.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0],
                   help="shares of the train rows, each in (0, 1]")
    c.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="train.seed values per fraction")
    c.add_argument("--prefix", default="curve", help="experiment names PREFIX-fFRACTION-sSEED")
    c.add_argument("--json", default="metrics/learning_curve.json", help="the result (read by the plot stage)")
    c.add_argument("--plot", default="plots/learning_curve.png", help="the figure")
    c.add_argument("--dry-run", action="store_true", help="say the plan and its cost only")
    c.set_defaults(func=cmd_curve)


def _add_ablation(sub) -> None:
    a = sub.add_parser("ablation", help="queue the plain recipe and each switch alone x seeds; report"
                                         " which helps, beyond noise", formatter_class=HELP,
                       description="queue: dvc exp run --queue for the plain recipe and each switch alone, per seed."
                                   " report: one table, each switch vs plain paired by seed, with t-intervals,"
                                   " verdicts and the cost in samples/s.")
    a.add_argument("action", choices=["queue", "report"], help="queue the runs, or report on finished ones")
    a.add_argument("revs", nargs="*", metavar="EXP", help="report: the runs (none: every experiment of HEAD)")
    a.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="queue: the train.seed values")
    a.add_argument("--only", help="queue: comma-separated switches (none: all): " + ", ".join(ABLATION))
    a.add_argument("--set", action="append", metavar="KEY=VALUE", help="queue: an extra -S for every run")
    a.add_argument("--prefix", default="abl", help="queue: experiment names PREFIX-SWITCH-sSEED")
    a.add_argument("--dry-run", action="store_true", help="queue: print the commands only")
    a.add_argument("--runs-dir", help="report: run folders (each a project layout) instead of experiments")
    a.add_argument("--seed-key", default="train.seed", help="report: the param that pairs runs by seed")
    a.add_argument("--json", metavar="FILE", help="also write the report to this JSON file")
    a.add_argument("--md", metavar="FILE", help="also write the table to this Markdown file")
    a.set_defaults(func=cmd_ablation)


def _add_lr_find(sub) -> None:
    f = sub.add_parser("lr-find", help="the learning rate for this encoder, chosen by short training runs",
                       formatter_class=HELP,
                       description="sweep (default): each candidate LR trains the stage's model from one shared"
                                   " start (its heads fitted to the frozen encoder) with the run's loss, LLRD groups,"
                                   " batch size, precision, device and schedule shape, for a share of one run;"
                                   " suggests the LR with the lowest val objective. range: the"
                                   " LR range test (Smith 2017), a 200-step exponential ramp. Both write"
                                   " metrics/lr_find.json and plots/lr_find.png; nothing else is touched.")
    f.add_argument("--stage", choices=list(STAGES), default="stage2",
                   help="stage2: model.stage1_checkpoint on data/tokenized (train.*); stage1: stage1.base_model")
    f.add_argument("--method", choices=["sweep", "range"], default="sweep", help="short training runs per LR, or"
                                                                                 " one exponential LR ramp")
    f.add_argument("--params", default="params.yaml", help=PARAMS_HELP)
    add_flags(f.add_argument_group("the sweep (--method sweep)"), SweepConfig)
    add_flags(f.add_argument_group("the range test (--method range)"), RangeTestConfig)
    f.set_defaults(func=cmd_lr_find)


def _add_review(sub) -> None:
    r = sub.add_parser("review", help="where the labels lose, for any Stage-2 model (the review stage's report)",
                       formatter_class=HELP,
                       description="Label issues (cleanlab) on the prepared val/test rows scored by MODEL_DIR (its own"
                                   " tokenizer), the most confused category pairs with merge gains, conflicting"
                                   " duplicates: the review stage's outputs, for a model outside the DAG.")
    r.add_argument("model_dir", help="a Stage-2 model directory")
    r.add_argument("--out", help="output folder (none: reviews/<model folder name>)")
    r.add_argument("--decision", help="its decision.json (none: beside MODEL_DIR if there; else raw softmax)")
    r.add_argument("--prepared", help="prepared data folder (none: dvc.yaml's, data/prepared)")
    r.add_argument("--cartography", help="the train-side queue file (none: the model's own run's"
                                         " metrics/cartography_flagged.csv, if there)")
    r.add_argument("--device", choices=["auto", "mps", "cuda", "cpu"], default=None, help="none: train.device")
    r.add_argument("--params", default="params.yaml", help=PARAMS_HELP)
    r.set_defaults(func=cmd_review)


def _add_speed(sub) -> None:
    v = sub.add_parser("speed", help="the fastest safe training settings for this machine, measured in ~2 minutes",
                       formatter_class=HELP,
                       description="Times real training steps (the stage's model, loss, LLRD AdamW, length-grouped"
                                   " batches) for the configured settings and one change at a time: precision,"
                                   " train.fast_attention, train.compile, batch size (until one does not fit), then"
                                   " the winners together; projects the configured run's wall-clock and prints the"
                                   " dvc exp run line, flagging what changes results. Writes metrics/speed.json and"
                                   " plots/speed.png; nothing else is touched.")
    v.add_argument("--stage", choices=list(STAGES), default="stage2", help="which stage's training to time")
    add_flags(v, SpeedConfig)
    v.add_argument("--json", help="write the table here instead of metrics/speed.json")
    v.add_argument("--plot", help="write the chart here instead of plots/speed.png")
    v.add_argument("--params", default="params.yaml", help=PARAMS_HELP)
    v.set_defaults(func=cmd_speed)


#: The subcommands, in --help's order: each adds its parser (flags, help and defaults in one place).
SUBCOMMANDS = (_add_predict, _add_compare, _add_check, _add_remote, _add_curve, _add_ablation, _add_lr_find,
               _add_review, _add_speed)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="twohead", description="Two-head news classification: the tools around the DVC"
                                 " pipeline (predict, compare runs, preflight and remote checks, LR, speed, review,"
                                 " ablation).")
    sub = ap.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BaseException as exc:  # noqa: B902 - Ctrl-C too: one line and status 130, not a traceback
        said = user_message(exc)
        if said is None:
            raise
        line, status = said
        print(f"twohead {args.command}: {'error: ' if status == 2 else ''}{line}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
