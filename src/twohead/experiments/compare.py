"""``twohead compare``: did a change really help? Paired tests on the same test rows, intervals over seeds.

Each revision's test predictions (the evaluate stage's per-row table, kept in git) and per-class table
(for the frequency bands) are read at that revision; the statistics are in :mod:`twohead.experiments.stats`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from io import StringIO

import numpy as np
import pandas as pd
import yaml

from ..config.errors import DataError
from ..config.layout import paths_from_text
from ..config.schema import higher_is_better, label
from .revisions import experiments, read_text, resolve
from .stats import MISSING, Coded, detectable_difference, paired_compare, point_values, t_interval, verdict


@dataclass
class Revision:
    """One revision's test outputs as compare reads them (per-row predictions, per-class table) and its params."""

    rev: str             # as the user named it
    commit: str          # resolved sha, or "workspace"
    predictions: pd.DataFrame
    per_class: pd.DataFrame
    params: dict
    env: dict | None = None   # metrics/env/train_stage2.json at that revision: where the model trained

    def param(self, dotted: str):
        node = self.params
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise DataError(f"{self.rev}: params.yaml has no key {dotted!r}")
            node = node[part]
        return node


def load_revision(rev: str, root=".") -> Revision:
    commit = resolve(rev, root)
    layout = paths_from_text(read_text(commit, "dvc.yaml", root), f"{rev}: dvc.yaml")
    for key in ("predictions", "per_class"):
        if key not in layout:
            raise DataError(f"{rev}: dvc.yaml names no {key!r} path")
    preds = pd.read_csv(StringIO(read_text(commit, layout["predictions"], root)), keep_default_na=False,
                        dtype={"id": str})
    per_class = pd.read_csv(StringIO(read_text(commit, layout["per_class"], root)), keep_default_na=False)
    params = yaml.safe_load(read_text(commit, "params.yaml", root)) or {}
    return Revision(rev, commit, preds, per_class, params, _train_env(commit, layout, root))


def _train_env(commit: str, layout: dict, root) -> dict | None:
    try:
        env = json.loads(read_text(commit, f"{layout.get('environment', 'metrics/env')}/train_stage2.json", root))
    except (DataError, ValueError):
        return None
    return env if isinstance(env, dict) else None


def _plain(value, limit: int = 60) -> str:
    """A value from a file, as plain words for a Markdown line (no markup, no line breaks)."""
    return re.sub(r"[^A-Za-z0-9 ._+:/()=?-]", "", str(value))[:limit] or "?"


def trained_on(run: Revision) -> str:
    """Where and how a revision's model trained: the device, its GPU, the torch build, the precision, the launcher."""
    env = run.env or {}
    train = run.params.get("train") if isinstance(run.params, dict) else None
    train = train if isinstance(train, dict) else {}
    device = train.get("device", "auto")
    device = env.get("auto_device", "?") if device == "auto" else device
    if device == "cuda" and env.get("gpu"):
        device = f"cuda ({env['gpu']})"
    packages = env.get("packages") if isinstance(env.get("packages"), dict) else {}
    launch = train.get("launch", "python")
    return ", ".join(_plain(x) for x in (device, f"torch {packages.get('torch', '?')}", train.get("precision", "fp32"),
                                         *([launch] if launch != "python" else [])))


def class_vocabulary(runs: list[Revision]) -> list[str]:
    """Every category name any of the runs knows (sorted): the shared integer codes."""
    names = set()
    for r in runs:
        names |= set(r.per_class["class"].astype(str))
        for col in ("gold_category", "pred_category", "combined_pred"):
            names |= set(r.predictions[col].astype(str))
    names -= {"", "Decline"}
    return sorted(names)


def code(run: Revision, vocab: list[str], order: pd.Index | None = None) -> Coded:
    df = run.predictions.set_index("id")
    if order is not None:
        df = df.loc[order]
    to_id = {c: i for i, c in enumerate(vocab)}
    k = len(vocab)

    def ids(col, decline=MISSING):
        return np.array([decline if v == "Decline" else to_id.get(v, MISSING) for v in df[col].astype(str)],
                        dtype=np.int64)

    y1 = np.select([df["gold_pick"] == "Pick", df["gold_pick"] == "Decline"], [1, 0], MISSING).astype(np.int64)
    conf2 = pd.to_numeric(df["p_top1"], errors="coerce").to_numpy() if "p_top1" in df else None
    c = Coded.from_arrays(y1, (df["pred_pick"] != "Pick").to_numpy(), ids("gold_category"), ids("pred_category"),
                          conf2, k)
    c.pc = ids("combined_pred", decline=k)  # as the run wrote it
    return c


def check_same_rows(base: Revision, other: Revision) -> None:
    a, b = set(base.predictions["id"]), set(other.predictions["id"])
    if a != b:
        raise DataError(f"{base.rev} and {other.rev} were evaluated on different test rows: {len(a - b)} id(s) only in"
                        f" {base.rev}, {len(b - a)} only in {other.rev} (different split or data); a paired"
                        " comparison needs the same rows")


def band_members(run: Revision, vocab: list[str]) -> dict[str, list[int]]:
    """Class ids of each frequency band, the bands most frequent first (by their largest train support; in
    order of appearance when the table has no support column)."""
    to_id = {c: i for i, c in enumerate(vocab)}
    pc = run.per_class
    out: dict[str, list[int]] = {}
    bands = list(dict.fromkeys(pc["band"].astype(str)))
    if "train_support" in pc:
        top = pd.to_numeric(pc["train_support"], errors="coerce").groupby(pc["band"].astype(str)).max()
        bands.sort(key=lambda b: -top[b])
    for band in bands:
        out[band] = [to_id[c] for c, b in zip(pc["class"].astype(str), pc["band"].astype(str)) if b == band]
    return out


def compare(base_rev: str, other_revs: list[str], root=".", resamples: int = 2000, seed: int = 0) -> dict:
    if resamples < 1000:
        raise DataError(f"--resamples {resamples}: use at least 1000 for a stable 95% interval")
    base = load_revision(base_rev, root)
    others = [load_revision(r, root) for r in other_revs]
    for o in others:
        check_same_rows(base, o)
    vocab = class_vocabulary([base, *others])
    order = pd.Index(base.predictions["id"])
    coded_base = code(base, vocab, order)
    bands = band_members(base, vocab)
    result = {"base": {"rev": base_rev, "commit": base.commit}, "resamples": resamples, "seed": seed,
              "test_rows": len(order),
              "detectable_task2_acc": detectable_difference(coded_base, resamples, seed), "comparisons": []}
    for o in others:
        coded = code(o, vocab, order)
        metrics = paired_compare(coded_base, coded, bands, resamples, seed)
        entry = {"rev": o.rev, "commit": o.commit, "metrics": metrics}
        relabelled = int(((coded.y1 != coded_base.y1) | (coded.y2 != coded_base.y2)).sum())
        if relabelled:   # data.corrections changed test labels: part of Δ is the labels, not the model
            same_gold = dataclasses.replace(coded, y1=coded_base.y1, y2=coded_base.y2, yc=coded_base.yc)
            entry["relabelled_rows"] = relabelled
            entry["metrics_on_base_labels"] = paired_compare(coded_base, same_gold, bands, resamples, seed)
        if trained_on(o) != trained_on(base):
            entry["trained_on"] = {"base": trained_on(base), "other": trained_on(o)}
        result["comparisons"].append(entry)
    return result


def pts(x: float) -> str:
    """Points (×100), signed; a difference under 0.1 point keeps its digits (never a bare "+0.0" next to a
    verdict)."""
    if x is None or np.isnan(x):
        return "n/a"
    return f"{100 * x:+.1f}" if x == 0 or abs(100 * x) >= 0.1 else f"{100 * x:+.3f}"


def _half_width(m: dict) -> float:
    return 100 * (m["ci_high"] - m["ci_low"]) / 2


#: What a verdict between single runs means (said with every such comparison).
ONE_RUN_CAVEAT = ("One run per side: the paired interval holds both trained models fixed, so a verdict says whether"
                  " *these two models* differ on these test rows — not whether the recipe does. Seed-to-seed"
                  " variance is not in it (two seeds of one recipe can differ \"beyond noise\" here). To judge a"
                  " setting: run it over seeds and use `twohead compare --group-by PARAM`.")


def to_markdown(result: dict) -> str:
    lines = [f"Paired comparison on the same {result['test_rows']} test rows; {result['resamples']} bootstrap"
             f" resamples (seed {result['seed']}); differences in points (×100).", "", ONE_RUN_CAVEAT, ""]
    for c in result["comparisons"]:
        lines += [f"### {c['rev']} vs {result['base']['rev']}", "",
                  f"| metric | {result['base']['rev']} | {c['rev']} | Δ | 95% CI of Δ | McNemar p | verdict |",
                  "|---|---|---|---|---|---|---|"]
        for name, m in c["metrics"].items():
            p = "" if m["p_value"] is None else f"{m['p_value']:.3g}"
            said = m["verdict"] + (" (these two models)" if m["verdict"] in ("better", "worse") else "")
            lines.append(f"| {label(name)} | {m['base']:.4f} | {m['other']:.4f} | {pts(m['delta'])} |"
                         f" [{pts(m['ci_low'])}, {pts(m['ci_high'])}] | {p} | {said} |")
        lines.append("")
        if c.get("trained_on"):
            t = c["trained_on"]
            lines += [f"**Trained differently** — {result['base']['rev']}: {t['base']}; {c['rev']}: {t['other']}. Two"
                      " machines, precisions or launchers differ like two seeds do: compare a setting between runs of"
                      " one machine (docs/remote.md).", ""]
        if c.get("relabelled_rows"):
            m = c["metrics_on_base_labels"]["task2_acc"]
            lines += [f"**{c['relabelled_rows']} test row(s) carry other labels in {c['rev']}** (data.corrections):"
                      " each side above is scored on its own labels, so Δ mixes relabelling with the model. On"
                      f" {result['base']['rev']}'s labels, Task2 accuracy Δ is {pts(m['delta'])}"
                      f" [{pts(m['ci_low'])}, {pts(m['ci_high'])}] ({m['verdict']}): the model's own change.", ""]
    half = 100 * result["detectable_task2_acc"]
    base = result["base"]["rev"]
    widths = "; ".join(f"{c['rev']} vs {base} ±{_half_width(c['metrics']['task2_acc']):.1f} points"
                       + (" (the same answer on every test row)" if _half_width(c["metrics"]["task2_acc"]) == 0 else "")
                       for c in result["comparisons"])
    lines.append(f"Noise guide: on these {result['test_rows']} test rows one run's Task2 accuracy alone is uncertain by"
                 f" about ±{half:.1f} points; a difference counts only when its paired interval above excludes 0."
                 f" The paired interval's half-width for Task2 accuracy: {widths}.")
    return "\n".join(lines) + "\n"


# --- seeds: group experiments by a param, intervals over seeds ---------------------------------------------

def baseline_experiments(root=".") -> list[str]:
    """Names of the experiments run from the current HEAD commit."""
    head = resolve("HEAD", root)
    return [e.name for e in experiments(root) if e.baseline == head]


def revision_metrics(run: Revision, vocab: list[str]) -> dict[str, float]:
    """Every compared metric of one run on its own test rows."""
    return point_values(code(run, vocab), band_members(run, vocab))


def group_compare(revs: list[str], key: str, root=".", seed_key: str = "train.seed", level: float = 0.95) -> dict:
    """Group runs by the value of ``key``; per group mean / sd / t-interval over runs; each group vs the first
    (sorted by value): mean of per-seed differences with its t-interval (runs paired by ``seed_key``)."""
    if not revs:
        raise DataError("no experiments to group: name them, or run some from this commit (dvc exp run --queue …)")
    return group_runs([load_revision(r, root) for r in revs], key, seed_key, level)


def group_runs(runs: list[Revision], key: str, seed_key: str = "train.seed", level: float = 0.95) -> dict:
    """:func:`group_compare` on loaded runs (revisions, or run folders:
    :func:`~twohead.experiments.ablation.load_runs`)."""
    vocab = class_vocabulary(runs)
    groups: dict = {}
    for r in runs:
        groups.setdefault(r.param(key), []).append((r.param(seed_key), r.rev, revision_metrics(r, vocab)))
    values = sorted(groups, key=lambda v: (str(type(v)), v))
    names = list(groups[values[0]][0][2])
    out = {"key": key, "seed_key": seed_key, "groups": [], "differences": []}
    for v in values:
        rows = groups[v]
        stats = {}
        for n in names:
            mean, sd, low, high = t_interval([m[n] for _, _, m in rows], level)
            stats[n] = {"mean": mean, "sd": sd, "ci_low": low, "ci_high": high,
                        "values": [m[n] for _, _, m in rows]}
        out["groups"].append({"value": v, "runs": [{"rev": rev, "seed": s} for s, rev, _ in rows], "metrics": stats})
    ref = {s: m for s, _, m in groups[values[0]]}
    for v in values[1:]:
        paired = [(m, ref[s]) for s, _, m in groups[v] if s in ref]
        diff = {}
        for n in names:
            mean, sd, low, high = t_interval([a[n] - b[n] for a, b in paired], level)
            diff[n] = {"mean": mean, "ci_low": low, "ci_high": high, "pairs": len(paired),
                       "verdict": verdict(low, high, higher_is_better(n)) if len(paired) >= 2
                       else "undefined (fewer than 2 seed pairs)"}
        out["differences"].append({"value": v, "vs": values[0], "metrics": diff})
    return out


def groups_markdown(g: dict) -> str:
    heads = [f"{g['key']}={x['value']} (n={len(x['runs'])})" for x in g["groups"]]
    lines = [f"Runs grouped by `{g['key']}`, 95% Student-t intervals over runs (seeds: `{g['seed_key']}`).", "",
             f"| metric | {' | '.join(heads)} |", "|---|" + "---|" * len(g["groups"])]
    for n in g["groups"][0]["metrics"]:
        cells = []
        for x in g["groups"]:
            m = x["metrics"][n]
            ci = "" if np.isnan(m["ci_low"]) else f" [{m['ci_low']:.4f}, {m['ci_high']:.4f}]"
            cells.append(f"{m['mean']:.4f}{ci}")
        lines.append(f"| {label(n)} | {' | '.join(cells)} |")
    for d in g["differences"]:
        lines += ["", f"Difference {g['key']}={d['value']} minus {g['key']}={d['vs']} (paired by seed):", "",
                  "| metric | mean Δ (pts) | 95% CI | seed pairs | verdict |", "|---|---|---|---|---|"]
        for n, m in d["metrics"].items():
            lines.append(f"| {label(n)} | {pts(m['mean'])} | [{pts(m['ci_low'])}, {pts(m['ci_high'])}] |"
                         f" {m['pairs']} | {m['verdict']} |")
    return "\n".join(lines) + "\n"


def groups_plot(g: dict, path) -> None:
    """Strip plot: one dot per run, per group, with the group mean and its interval; Task2 accuracy and macro-F1."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False  # a "$" in a revision or class name is text
    import matplotlib.pyplot as plt

    from ..data.io import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, name in zip(axes, ("task2_acc", "task2_macro_f1")):
        for i, x in enumerate(g["groups"]):
            m = x["metrics"][name]
            jitter = np.linspace(-0.08, 0.08, len(m["values"])) if len(m["values"]) > 1 else [0.0]
            ax.scatter(i + np.asarray(jitter), m["values"], s=28, alpha=0.8)
            if not np.isnan(m["ci_low"]):
                ax.errorbar(i + 0.25, m["mean"], yerr=[[m["mean"] - m["ci_low"]], [m["ci_high"] - m["mean"]]],
                            fmt="D", color="black", capsize=4)
            else:
                ax.plot(i + 0.25, m["mean"], "D", color="black")
        ax.set_xticks(range(len(g["groups"])))
        ax.set_xticklabels([str(x["value"]) for x in g["groups"]])
        ax.set(xlabel=g["key"], title=label(name))
        ax.grid(alpha=0.3)
    fig.suptitle("Per-run values (dots) and mean with 95% t-interval (diamonds)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
