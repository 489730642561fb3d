"""The switches (training features off by default, the ``switches:`` section of params.yaml, plus the two
class-weight schemes of ``loss``): the params each one sets, the value that means "off" (the plain recipe), the
strength the ablation queues, and which switches a run's params have on.

Formulas: uncertainty weighting and the hierarchy terms in :mod:`twohead.train.losses`; R-Drop, multi-sample
dropout and AWP in :mod:`twohead.train.switches`; class-weight schemes in :mod:`twohead.data.weights`.
"""

from __future__ import annotations

from .params import RENAMED

#: The plain recipe's value of every switch param (params.yaml defaults).
OFF: dict[str, object] = {
    "switches.task_weighting": "fixed",
    "switches.rdrop_alpha": 0.0,
    "switches.msd_samples": 1,
    "switches.awp_start_epoch": 0,
    "loss.task2_weighting": "balanced",
    "loss.task2_weight_norm": "mean",
    "switches.pick_consistency_detach": "none",
}

#: The ablation's rows: each switch alone, at a sensible default strength (-S overrides for dvc exp run).
ABLATION: dict[str, dict[str, object]] = {
    "uncertainty": {"switches.task_weighting": "uncertainty"},
    "rdrop": {"switches.rdrop_alpha": 1.0},
    "msd": {"switches.msd_samples": 5},
    "awp": {"switches.awp_start_epoch": 2},
    "sqrt_weights": {"loss.task2_weighting": "sqrt"},
    "median_norm": {"loss.task2_weight_norm": "median"},
}

def values(params) -> dict:
    """``{section: {key: value}}`` of the switch params only, from a loaded :class:`~twohead.config.params.Params`
    (reads nothing else: a stage that shows the switches depends on these keys alone)."""
    out: dict = {}
    for dotted in OFF:
        section, key = dotted.split(".")
        out.setdefault(section, {})[key] = getattr(getattr(params, section), key)
    return out


#: Where an older params.yaml (an earlier experiment) kept a switch: read there when the new key is absent.
OLD_KEYS = {new: old for old, new in RENAMED.items() if new in OFF}


def get(params: dict, dotted: str, default=None):
    if dotted in OLD_KEYS and _lookup(params, dotted, _MISSING) is _MISSING:
        return _lookup(params, OLD_KEYS[dotted], default)
    return _lookup(params, dotted, default)


_MISSING = object()


def _lookup(params: dict, dotted: str, default=None):
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _same(a, b) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return a == b


def active(params: dict) -> dict[str, object]:
    """``{param: value}`` of every switch that is on in a params.yaml mapping (a key an older params.yaml
    lacks counts as off)."""
    return {k: get(params, k, off) for k, off in OFF.items() if not _same(get(params, k, off), off)}


def label(params: dict) -> str:
    """A short name for a run's switches: the ablation name when it matches one exactly, else ``k=v`` pairs;
    ``plain`` when none is on."""
    on = active(params)
    if not on:
        return "plain"
    for name, overrides in ABLATION.items():
        if set(on) == set(overrides) and all(_same(on[k], v) for k, v in overrides.items()):
            return name
    return ", ".join(f"{k}={v}" for k, v in sorted(on.items()))


def queue_commands(seeds: list[int], names: list[str] | None = None, prefix: str = "abl",
                   extra: list[str] | None = None) -> list[list[str]]:
    """``dvc exp run --queue`` argument lists: the plain recipe and each named switch alone, per seed."""
    names = list(ABLATION) if names is None else names
    unknown = [n for n in names if n not in ABLATION]
    if unknown:
        raise KeyError(f"unknown switch(es) {unknown}; known: {', '.join(ABLATION)}")
    cmds = []
    for name in ["plain", *names]:
        overrides = {} if name == "plain" else ABLATION[name]
        for seed in seeds:
            cmd = ["dvc", "exp", "run", "--queue", "-n", f"{prefix}-{name}-s{seed}", "-S", f"train.seed={seed}"]
            for k, v in overrides.items():
                cmd += ["-S", f"{k}={v}"]
            for e in extra or []:
                cmd += ["-S", e]
            cmds.append(cmd)
    return cmds
