"""The DVC cache must never lie about params either: every stage runs here, in process, on a tiny copy of the
demo with every params read recorded (:func:`twohead.config.params.recording`); each key it reads must be
listed under that stage's ``params:`` in dvc.yaml (or its whole section), and each dotted key listed must be
read (a listed key nobody reads re-runs the stage for nothing)."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from conftest import DEMO_CSV, ROOT, committed_text, stage_paths, tiny_params
from twohead.config.params import DemoEncoderParams, recording

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _listed(stage: str) -> list[str]:
    return [str(k) for k in STAGES[stage].get("params", [])]


def _covered(key: str, listed: list[str]) -> bool:
    return any(key == entry or key.startswith(entry + ".") for entry in listed)


@pytest.fixture(scope="module")
def reads(tmp_path_factory) -> dict[str, set[str]]:
    """Every stage of the DAG, in order, each under its own recording."""
    from twohead.pipeline import (
        build_demo_encoder,
        calibrate,
        evaluate,
        plot,
        predict,
        prepare_labels,
        pretrain_mlm,
        pretrain_stage1,
        review,
        tokenize,
        train_stage2,
        validate_params,
    )

    tmp = tmp_path_factory.mktemp("reads")
    enc = tmp / "models" / "demo_encoder"
    p = tiny_params(tmp, enc, rows=300, epochs=1)
    small = DemoEncoderParams(vocab_size=400, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    stage1 = {"base_model": str(enc), "epochs": 1, "batch_size": 16, "lr": 3e-3}
    p = dataclasses.replace(
        p, demo_encoder=dataclasses.replace(p.demo_encoder, **{f.name: getattr(small, f.name)
                                                               for f in dataclasses.fields(small)}),
        stage1=dataclasses.replace(p.stage1, **stage1),
        mlm=dataclasses.replace(p.mlm, epochs=1, batch_size=16, lr=3e-3),
        data=dataclasses.replace(p.data, unlabeled_path=str(_pool(tmp))),
        model=dataclasses.replace(p.model, stage1_checkpoint=str(tmp / "models" / "stage1")),
        predict=dataclasses.replace(p.predict, input=str(DEMO_CSV)))
    p = _retrack(p)
    shared = {}
    order = [("validate_params", validate_params, validate_params.ValidateParamsPaths),  # params.yaml: a file dep
             ("prepare_labels", prepare_labels, prepare_labels.PreparePaths),
             ("build_demo_encoder", build_demo_encoder, build_demo_encoder.DemoEncoderPaths),
             ("pretrain_mlm", pretrain_mlm, pretrain_mlm.MlmPaths),
             ("pretrain_stage1", pretrain_stage1, pretrain_stage1.Stage1Paths),
             ("tokenize", tokenize, tokenize.TokenizePaths),
             ("train_stage2", train_stage2, train_stage2.TrainPaths),
             ("calibrate", calibrate, calibrate.CalibratePaths),
             ("evaluate", evaluate, evaluate.EvaluatePaths),
             ("review", review, review.ReviewPaths),
             ("plot", plot, plot.PlotPaths),
             ("predict", predict, predict.PredictPaths)]
    out = {}
    for name, module, paths_cls in order:
        paths = stage_paths(paths_cls, tmp, **{k: v for k, v in shared.items()
                                               if k in {f.name for f in dataclasses.fields(paths_cls)}})
        with recording() as r:
            module.run(p, paths)
        out[name] = set(r)
    return out


def _pool(tmp):
    pool = tmp / "unlabeled.csv"   # a pool the masked-LM phase reads (data.unlabeled_path, text_column, encoding)
    pool.write_text("text\nan unlabelled article about the markets\n", encoding="utf-8")
    return pool


def _retrack(p):
    """Params rebuilt through the loader, so that every section counts as read from params."""
    from twohead.config.params import params_from_dict, to_dict

    return params_from_dict(to_dict(p), source="<test>")


def test_every_stage_of_dvc_yaml_was_run(reads):
    assert set(reads) == set(STAGES)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_params_read_are_listed(reads, stage):
    listed = _listed(stage)
    missing = sorted(k for k in reads[stage] if not _covered(k, listed))
    assert not missing, (f"stage {stage} reads {', '.join(missing)} but dvc.yaml does not list them under its"
                         " params: a change there would not re-run it")


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_params_listed_are_read(reads, stage):
    stale = sorted(k for k in _listed(stage) if "." in k and k not in reads[stage])
    assert not stale, f"stage {stage} lists {', '.join(stale)} under params but never reads them (needless re-runs)"


def test_recording_sees_reads_of_loaded_params_only(tmp_path):
    from twohead.config.params import load_params

    (tmp_path / "params.yaml").write_text(committed_text("params.yaml"))
    p = load_params(tmp_path / "params.yaml")
    with recording() as r:
        _ = p.train.lr
        copy = dataclasses.replace(p.stage1, lr=1.0)   # reads every other stage1 field of the loaded section
        _ = copy.seed                                    # a derived object: not a read of params
    assert "train.lr" in r and "stage1.seed" in r and "stage1.lr" not in r and "train.seed" not in r
