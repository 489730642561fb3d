"""From probabilities to the user's answer: the decisions chosen on val, and applying them anywhere.

A :class:`Decision` turns the two heads' logits into the answer in three steps, each chosen on **val only**
by :func:`choose` (test is never read), each off in :data:`PLAIN` (today's rule: raw softmax, Decline when
P(Pick) < 0.5, the Task2 argmax):

1. **Temperatures** T1, T2 (:mod:`twohead.evaluate.calibration`): p1 = softmax(z1 / T1).
2. **Task2 class-prior correction** (post-hoc logit adjustment, Menon et al., 2021): the prediction is
   argmax(z2 / T2 − τ · log π), π the train split's class frequencies. τ = 0 is the plain argmax; τ = 1 is the
   Bayes rule for a uniform class prior (balanced error); τ is searched on a grid [``tau_min``, ``tau_max``]
   in steps of 0.1 for Task2 accuracy or macro-F1 on val, ties to the smallest |τ|. τ < 0 pushes predictions
   back toward frequent classes: it can undo what Task2's inverse-frequency class weights did in training
   (those already push toward rare classes, so with ``tau_min = 0`` accuracy often picks τ = 0). The reported
   probabilities stay the calibrated softmax(z2 / T2): corrected scores trade calibration for balance.
3. **The Decline rule**: Decline if P(Pick) < t (``pick_threshold``), or — ``pick_or_maxprob`` — also if the
   Task2 max probability < t2 (out-of-scope rows often get a confident Task1 but a flat Task2). t (and t2) are
   searched on a grid for the named objective on val, or pinned; ties go to the candidate nearest the plain
   rule (t = 0.5, t2 = 0), so a flat objective changes nothing.

The known trap: a value chosen on val is optimistic *on val*; only test figures are reported as results
(the evaluate stage shows plain vs decided on test with paired-bootstrap intervals).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..config.errors import DataError
from ..config.params import CHOOSE_ON_VAL, DecideParams
from .calibration import ECE_BINS, T_MAX, T_MIN, calibrated, ece, fit_temperature, nll
from .metrics import combined_view, softmax, task1_metrics, task2_metrics

RULES = ("pick_threshold", "pick_or_maxprob")
TAU_LIMIT = 5.0   # |τ| of a decision read from a file (decide.tau_max is at most 5)
#: The calibrate stage's output beside the model directory (``models/decision.json`` for ``models/stage2``): where
#: ``twohead predict`` looks by default; dvc.yaml's ``paths.decision`` names the same file (a test keeps them equal).
DECISION_FILE = "decision.json"
PICK_GRID = np.round(np.linspace(0.02, 0.98, 49), 4)
MAXPROB_GRID = np.round(np.concatenate([[0.0], np.linspace(0.05, 0.6, 12)]), 4)


@dataclass
class Decision:
    temperature_task1: float = 1.0
    temperature_task2: float = 1.0
    tau: float = 0.0                       # class-prior correction strength
    log_prior: list[float] = field(default_factory=list)   # log train frequency per class ([] when tau = 0)
    rule: str = "pick_threshold"
    pick_threshold: float = 0.5
    maxprob_threshold: float = 0.0         # pick_or_maxprob only

    def probabilities(self, logits1: np.ndarray, logits2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P(Decline), P(Pick)) and the Task2 probabilities, calibrated (temperatures only; float64). The prior
        correction changes which class is predicted, not these probabilities: corrected scores are balanced
        posteriors, not calibrated ones."""
        return calibrated(logits1, self.temperature_task1), calibrated(logits2, self.temperature_task2)

    def task2_scores(self, logits2: np.ndarray) -> np.ndarray:
        """The scores whose argmax is the Task2 prediction: z2 / T2 − τ · log prior."""
        z2 = logits2.astype(np.float64) / self.temperature_task2
        return z2 - self.tau * np.asarray(self.log_prior, dtype=np.float64) if self.tau else z2

    def decline(self, p_pick: np.ndarray, maxprob2: np.ndarray) -> np.ndarray:
        out = p_pick < self.pick_threshold
        if self.rule == "pick_or_maxprob":
            out = out | (maxprob2 < self.maxprob_threshold)
        return out

    def is_plain(self) -> bool:
        return self == PLAIN

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "decision") -> Decision:
        """A decision read from a file, every value checked: a file is untrusted (a reversed prior, T = 0 or -1,
        a threshold of 2 would each silently change every answer)."""
        if not isinstance(d, dict):
            raise DataError(f"{source}: the decision is not a JSON object")
        names = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - names
        if unknown:
            raise DataError(f"{source}: unknown decision key(s) {sorted(unknown)}")

        def number(key: str, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> float:
            v = d.get(key, getattr(PLAIN, key))
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and \
                (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
            if not ok:
                raise DataError(f"{source}: {key} is {v!r}; it must be a number in {'(' if lo_open else '['}{lo:g},"
                                f" {hi:g}{')' if hi_open else ']'}")
            return float(v)

        values = {"temperature_task1": number("temperature_task1", T_MIN, T_MAX),
                  "temperature_task2": number("temperature_task2", T_MIN, T_MAX),
                  "tau": number("tau", -TAU_LIMIT, TAU_LIMIT),
                  "pick_threshold": number("pick_threshold", 0.0, 1.0, lo_open=True, hi_open=True),
                  "maxprob_threshold": number("maxprob_threshold", 0.0, 1.0, hi_open=True)}
        rule = d.get("rule", PLAIN.rule)
        if rule not in RULES:
            raise DataError(f"{source}: rule {rule!r} is not one of {list(RULES)}")
        prior = d.get("log_prior", [])
        if not isinstance(prior, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                  and np.isfinite(x) for x in prior):
            raise DataError(f"{source}: log_prior must be a list of finite numbers")
        if values["tau"] and len(prior) == 0:
            raise DataError(f"{source}: tau {values['tau']} needs log_prior")
        return cls(log_prior=[float(x) for x in prior], rule=rule, **values)

    def check_classes(self, names: list[str], classes: list[str] | None, source: str) -> None:
        """The decision belongs to a model with these category ``names``: the class names it was chosen for (when
        the file records them) and the prior's length must match."""
        if classes is not None and list(classes) != list(names):
            raise DataError(f"{source}: chosen for {len(classes)} categories ({', '.join(map(str, classes[:3]))}, …)"
                            f" but the model has {len(names)} ({', '.join(names[:3])}, …): the decision belongs to"
                            " another model; re-run calibrate (dvc repro calibrate)")
        if self.log_prior and len(self.log_prior) != len(names):
            raise DataError(f"{source}: its class prior has {len(self.log_prior)} entries but the model has"
                            f" {len(names)} categories: the decision belongs to another model; re-run calibrate")


PLAIN = Decision()


def read_decision(path: str | Path, names: list[str] | None = None) -> tuple[Decision, dict]:
    """The decision and the whole JSON (its report) from ``decision.json``, checked (values, and — given the model's
    category ``names`` — that it was chosen for that model)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no decision file; run `dvc repro calibrate`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "decision" not in data:
        raise DataError(f"{path}: no 'decision' section (not a calibrate output?)")
    dec = Decision.from_dict(data["decision"], str(path))
    classes = data.get("classes")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        raise DataError(f"{path}: 'classes' must be the list of category names")
    if names is not None:
        dec.check_classes(names, classes, str(path))
    return dec, data


def decision_objective(data: dict, source: str) -> tuple[str, float]:
    """The objective and target a decision file's thresholds were chosen for (its ``settings``), checked."""
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    objective, target = settings.get("objective", "combined_acc"), settings.get("target", 0.9)
    if objective not in OBJECTIVES:
        raise DataError(f"{source}: settings.objective {str(objective)[:40]!r} is not one of {sorted(OBJECTIVES)}")
    if not isinstance(target, (int, float)) or isinstance(target, bool) or not 0 < target <= 1:
        raise DataError(f"{source}: settings.target {str(target)[:40]!r} is not a number in (0, 1]")
    return objective, float(target)


def guard_summary(data: dict) -> dict:
    """Per decision, whether the noise guard adopted it and its val gain with the interval (numbers and booleans
    only: the file is untrusted, and these go onto a page)."""
    guard = (data.get("report") or {}).get("guard") if isinstance(data.get("report"), dict) else None
    out = {}
    for name in ("temperature_task1", "temperature_task2", "prior_correction", "decline_rule"):
        g = guard.get(name) if isinstance(guard, dict) else None
        if not isinstance(g, dict):
            out[name] = None
            continue
        nums = {k: float(g[k]) for k in ("gain", "ci_low", "ci_high", "mcnemar_p", "rows_won", "rows_lost")
                if isinstance(g.get(k), (int, float)) and not isinstance(g.get(k), bool)}
        out[name] = {"adopted": g.get("adopted") is True, "beats_noise": g.get("beats_noise") is True, **nums}
    return out


# --- objectives on val ---------------------------------------------------------------------------------------

def decline_scores(y1: np.ndarray, decline: np.ndarray) -> dict[str, float]:
    """Decline precision / recall and Task1 balanced accuracy over the rows with a Pick/Decline label
    (:func:`~twohead.evaluate.metrics.task1_metrics`; 0 where nothing is predicted Decline)."""
    m = task1_metrics(y1, (~np.asarray(decline, dtype=bool)).astype(int))
    return {"decline_precision": m["decline_precision"], "decline_recall": m["decline_recall"],
            "task1_balanced_acc": (m["pick_recall"] + m["decline_recall"]) / 2}


def _at_least(value: str, floor: str):
    """An objective: ``value`` of the Decline scores while ``floor`` meets the target, else -inf."""
    def f(y1, y2, decline, pred2, k, target):
        s = decline_scores(y1, decline)
        return s[value] if s[floor] >= target else -np.inf
    return f


#: ``decide.objective`` → its value for one Decline mask (higher is better; -inf when a constraint fails), from the
#: project's metrics (:mod:`twohead.evaluate.metrics`). Arguments: y1, y2, decline, pred2, n_classes, target.
OBJECTIVES = {
    "combined_acc": lambda y1, y2, decline, pred2, k, target: combined_view(y1, y2, decline, pred2, k)["combined_acc"],
    "combined_macro_f1": lambda y1, y2, decline, pred2, k, target: combined_view(
        y1, y2, decline, pred2, k)["combined_macro_f1"],
    "task1_balanced_acc": lambda y1, y2, decline, pred2, k, target: decline_scores(y1, decline)["task1_balanced_acc"],
    "decline_recall_at_precision": _at_least("decline_recall", "decline_precision"),
    "decline_precision_at_recall": _at_least("decline_precision", "decline_recall"),
}


def objective_value(objective: str, target: float, y1, y2, decline, pred2, k: int) -> float:
    """The value of ``objective`` (a key of :data:`OBJECTIVES`) for one Decline mask."""
    return OBJECTIVES[objective](y1, y2, decline, pred2, k, target)


# --- the noise guard ----------------------------------------------------------------------------------------

#: resamples of the val rows behind each adopt-or-keep-plain call (seeded: the same val, the same call)
GUARD_RESAMPLES = 1000
#: the exact McNemar test's level for right/wrong objectives (with the bootstrap's 95% interval)
GUARD_P = 0.05


def paired_gain(value, n: int, resamples: int = GUARD_RESAMPLES, seed: int = 0) -> dict:
    """A decision's gain over the plain choice on val with its paired-bootstrap 95% interval. ``value(idx)`` returns
    (decided, plain) objective values on the val rows ``idx``; a resample where the decided objective is not finite
    (a constraint missed) counts as no gain. ``beats_noise``: the interval's lower end is above 0."""
    decided, plain = value(np.arange(n))
    rng = np.random.default_rng(seed)
    gains = np.empty(resamples)
    for i in range(resamples):
        a, b = value(rng.integers(0, n, n))
        gains[i] = a - b if np.isfinite(a - b) else (np.inf if np.isfinite(a) else -np.inf)
    lo, hi = np.quantile(gains, [0.025, 0.975], method="inverted_cdf")
    return {"val_decided": float(decided), "val_plain": float(plain), "gain": float(decided - plain),
            "ci_low": float(lo), "ci_high": float(hi), "beats_noise": bool(lo > 0)}


def row_mean_gain(new: np.ndarray, old: np.ndarray, resamples: int = GUARD_RESAMPLES, seed: int = 0) -> dict:
    """:func:`paired_gain` for an objective that is a mean over rows (accuracy, −NLL): vectorised. For per-row
    right/wrong (boolean arrays) the exact McNemar test must agree too (p < 0.05): a percentile bootstrap calls a
    gain of 4 rows won and none lost "beyond noise" (its lower end is 1 row), where the sign test gives p = 0.125."""
    binary = np.asarray(new).dtype == bool and np.asarray(old).dtype == bool
    a, b = np.asarray(new, dtype=np.float64), np.asarray(old, dtype=np.float64)
    gain = paired_gain(lambda idx: (a[idx].mean(), b[idx].mean()), len(a), resamples, seed)
    if binary:
        from ..experiments.stats import mcnemar_p

        gain["mcnemar_p"] = mcnemar_p(np.asarray(new), np.asarray(old))
        gain["rows_won"], gain["rows_lost"] = int((new & ~old).sum()), int((~new & old).sum())
        gain["beats_noise"] = bool(gain["beats_noise"] and gain["mcnemar_p"] < GUARD_P)
    return gain


def _guarded(on: bool, gain: dict) -> dict:
    return {**gain, "adopted": bool(gain["beats_noise"] or not on)}


def _row_nll(logits: np.ndarray, y: np.ndarray, t: float) -> np.ndarray:
    from .calibration import log_softmax

    m = y != -100
    return -log_softmax(logits[m].astype(np.float64) / t)[np.arange(int(m.sum())), y[m]]


def _guard_temperature(logits: np.ndarray, y: np.ndarray, t: float, on: bool) -> tuple[float, dict | None]:
    """T is kept only when it lowers val's NLL beyond noise (gain = NLL at T = 1 minus NLL at T, per row)."""
    if t == 1.0 or not (y != -100).any():
        return t, None
    g = _guarded(on, row_mean_gain(-_row_nll(logits, y, t), -_row_nll(logits, y, 1.0)))
    return (t if g["adopted"] else 1.0), g


# --- choosing ------------------------------------------------------------------------------------------------

def choose(logits1: np.ndarray, logits2: np.ndarray, y1: np.ndarray, y2: np.ndarray, train_counts: list[int],
           s: DecideParams) -> tuple[Decision, dict]:
    """Every decision from val logits and labels alone, as the ``decide`` params section asks, and a report of what
    was tried (curves, before/after)."""
    k = logits2.shape[1]
    report: dict = {}
    guard: dict = {"method": f"paired bootstrap over the val rows, {GUARD_RESAMPLES} resamples, seed 0: adopted"
                             " when the 95% interval of the gain over the plain choice excludes 0 and, for a"
                             f" right/wrong objective (accuracy), the exact McNemar test gives p < {GUARD_P:g}"
                             + ("" if s.noise_guard else " (decide.noise_guard: false — adopted whatever the gain)")}
    fitted1 = fit_temperature(logits1, y1) if s.temperature else 1.0
    fitted2 = fit_temperature(logits2, y2) if s.temperature else 1.0
    t1, guard["temperature_task1"] = _guard_temperature(logits1, y1, fitted1, s.noise_guard)
    t2, guard["temperature_task2"] = _guard_temperature(logits2, y2, fitted2, s.noise_guard)
    report["temperature"] = {
        "task1": {"T": t1, "nll_before": nll(logits1, y1), "nll_after": nll(logits1, y1, t1),
                  "ece_before": ece(softmax(logits1), y1), "ece_after": ece(calibrated(logits1, t1), y1)},
        "task2": {"T": t2, "nll_before": nll(logits2, y2), "nll_after": nll(logits2, y2, t2),
                  "ece_before": ece(softmax(logits2), y2), "ece_after": ece(calibrated(logits2, t2), y2)},
        "bins": ECE_BINS}

    counts = np.asarray(train_counts, dtype=np.float64)
    log_prior = np.log(np.maximum(counts, 0.5) / counts.sum()) if counts.sum() > 0 else np.zeros(k)
    taus = np.round(np.arange(s.tau_min, s.tau_max + 1e-9, 0.1), 4) if s.prior_correction else np.array([0.0])
    curve = []
    best_tau, best = 0.0, -np.inf
    z2 = logits2.astype(np.float64) / t2
    for tau in sorted(taus, key=lambda x: (abs(x), x)):   # nearest 0 first: ties keep the smallest |tau|
        score = task2_metrics(y2, (z2 - tau * log_prior).argmax(1))[f"task2_{s.prior_objective}"]
        curve.append({"tau": float(tau), s.prior_objective: score})
        if score > best + 1e-12:
            best_tau, best = float(tau), score
    curve.sort(key=lambda r: r["tau"])
    guard["prior_correction"] = None
    if best_tau:
        best_tau, guard["prior_correction"] = _guard_tau(z2, y2, log_prior, best_tau, s)
    report["prior_correction"] = {"objective": f"task2_{s.prior_objective}", "tau": best_tau, "curve": curve}

    dec = Decision(t1, t2, best_tau, log_prior.tolist() if best_tau else [], s.rule)
    p1, p2 = dec.probabilities(logits1, logits2)
    p_pick, pred2, maxp = p1[:, 1], dec.task2_scores(logits2).argmax(1), p2.max(1)
    pinned = s.pick_threshold != CHOOSE_ON_VAL
    picks = [s.pick_threshold] if pinned else list(PICK_GRID)
    if s.rule == "pick_or_maxprob":
        maxes = [s.maxprob_threshold] if s.maxprob_threshold != CHOOSE_ON_VAL else list(MAXPROB_GRID)
    else:
        maxes = [0.0]
    grid = []
    for t2_ in maxes:
        for t in picks:
            decline = (p_pick < t) | (maxp < t2_)
            v = objective_value(s.objective, s.target, y1, y2, decline, pred2, k)
            grid.append({"pick_threshold": float(t), "maxprob_threshold": float(t2_), "value": v})
    values = np.array([g["value"] for g in grid], dtype=np.float64)
    best_val = float(np.nanmax(values)) if np.isfinite(values).any() else -np.inf
    if not np.isfinite(best_val):
        raise DataError(f"decide.objective {s.objective} with target {s.target}: no threshold on val meets the"
                        " target; lower decide.target or choose another objective")
    ties = [g for g in grid if g["value"] >= best_val - 1e-12]  # nearest the plain rule wins a tie
    best_g = min(ties, key=lambda g: (abs(g["pick_threshold"] - 0.5) + g["maxprob_threshold"]))
    chosen = (best_g["pick_threshold"], best_g["maxprob_threshold"])
    plain_decline = p_pick < 0.5
    pinned_max = s.rule == "pick_or_maxprob" and s.maxprob_threshold != CHOOSE_ON_VAL
    base = (float(s.pick_threshold) if pinned else 0.5, float(s.maxprob_threshold) if pinned_max else 0.0)
    guard["decline_rule"] = None
    if chosen != base:   # something was chosen on val: kept only beyond val's noise
        chosen, guard["decline_rule"] = _guard_rule(chosen, base, (p_pick, maxp, pred2), y1, y2, k, s)
    dec.pick_threshold, dec.maxprob_threshold = chosen
    report["decline_rule"] = {
        "rule": s.rule, "objective": s.objective, "target": s.target if "_at_" in s.objective else None,
        "pinned": pinned, "pick_threshold": dec.pick_threshold,
        "maxprob_threshold": dec.maxprob_threshold, "val_value": best_val,
        "val_value_at_plain_threshold": objective_value(s.objective, s.target, y1, y2, plain_decline, pred2, k),
        "grid": grid}
    report["decline_pr_curve"] = [{"pick_threshold": float(t), **decline_scores(y1, p_pick < t)}
                                  for t in PICK_GRID]
    report["guard"] = guard
    return dec, report


def _guard_tau(z2: np.ndarray, y2: np.ndarray, log_prior: np.ndarray, tau: float, s: DecideParams) -> tuple[float,
                                                                                                             dict]:
    """τ is kept only when its val gain in ``decide.prior_objective`` over τ = 0 beats val's noise."""
    m = y2 != -100
    new, old = (z2[m] - tau * log_prior).argmax(1), z2[m].argmax(1)
    if s.prior_objective == "acc":
        gain = row_mean_gain(new == y2[m], old == y2[m])
    else:
        gain = paired_gain(lambda i: (task2_metrics(y2[m][i], new[i])["task2_macro_f1"],
                                      task2_metrics(y2[m][i], old[i])["task2_macro_f1"]), int(m.sum()))
    g = _guarded(s.noise_guard, gain)
    return (tau if g["adopted"] else 0.0), g


def _guard_rule(chosen: tuple, base: tuple, scores: tuple, y1, y2, k: int, s: DecideParams) -> tuple[tuple, dict]:
    """The Decline thresholds chosen on val are kept only when their val objective beats ``base``'s (the plain
    t = 0.5, t2 = 0, or what the user pinned) beyond noise; a base that misses a *_at_* target on val is no choice:
    the chosen thresholds stay."""
    p_pick, maxp, pred2 = scores
    new, old = (p_pick < chosen[0]) | (maxp < chosen[1]), (p_pick < base[0]) | (maxp < base[1])
    if objective_value(s.objective, s.target, y1, y2, old, pred2, k) == -np.inf:
        return chosen, {"adopted": True, "why": f"the plain rule misses decide.target {s.target:g} on val"}
    if s.objective == "combined_acc":   # a mean over the rows with a combined label: vectorised
        gold = np.where(y1 == 0, k, np.where((y1 == 1) & (y2 != -100), y2, -100))
        m = gold != -100
        gain = row_mean_gain(np.where(new, k, pred2)[m] == gold[m], np.where(old, k, pred2)[m] == gold[m])
    else:
        gain = paired_gain(lambda i: (objective_value(s.objective, s.target, y1[i], y2[i], new[i], pred2[i], k),
                                      objective_value(s.objective, s.target, y1[i], y2[i], old[i], pred2[i], k)),
                           len(y1))
    g = _guarded(s.noise_guard, gain)
    return (chosen if g["adopted"] else base), g


def rule_curve(dec: Decision, logits1: np.ndarray, logits2: np.ndarray, y1: np.ndarray, y2: np.ndarray,
               objective: str, target: float) -> list[dict]:
    """One split's view of the Decline rule as its Pick threshold t moves (the decision's temperatures, prior
    correction and max-prob threshold held): the objective, Decline precision and recall per t of the grid."""
    p1, p2 = dec.probabilities(logits1, logits2)
    pred2, maxp, k = dec.task2_scores(logits2).argmax(1), p2.max(1), logits2.shape[1]
    rows = []
    for t in sorted({*PICK_GRID.tolist(), 0.5, float(dec.pick_threshold)}):
        decline = (p1[:, 1] < t) | (maxp < dec.maxprob_threshold)
        rows.append({"pick_threshold": float(t), "value": objective_value(objective, target, y1, y2, decline, pred2, k),
                     **decline_scores(y1, decline)})
    return rows


@dataclass
class Decided:
    """A decision applied to logits: calibrated probabilities (plain: the raw softmax), the Task2 ranking scores
    (None when plain: the probabilities rank), the Task2 prediction and the Decline mask."""

    p1: np.ndarray
    p2: np.ndarray
    scores: np.ndarray | None
    pred2: np.ndarray
    decline: np.ndarray


def decide(dec: Decision, logits1: np.ndarray, logits2: np.ndarray) -> Decided:
    """Apply ``dec`` — the one place a decision meets logits (the evaluate stage, ``twohead predict``). The plain
    decision gives the raw softmax (float32, the plain rule's figures exactly); any other the calibrated
    probabilities (float64) and the prior-corrected ranking."""
    if dec.is_plain():
        p1, p2 = softmax(logits1), softmax(logits2)
        return Decided(p1, p2, None, p2.argmax(1), dec.decline(p1[:, 1], p2.max(1)))
    p1, p2 = dec.probabilities(logits1, logits2)
    scores = dec.task2_scores(logits2)
    return Decided(p1, p2, scores, scores.argmax(1), dec.decline(p1[:, 1], p2.max(1)))
