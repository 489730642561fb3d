"""What the tools share: the files they read and write (named in dvc.yaml's ``vars.paths``) and the recipe inputs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..config.layout import dvc_paths


@dataclass(frozen=True)
class ToolPaths:
    """A tool's inputs (the stages' prepared and tokenized data; the checkpoint folders, to name the stage that
    builds a missing one) and its two outputs."""

    prepared: Path
    tokenized: Path
    demo_encoder: Path
    stage1_model: Path
    json: Path
    plot: Path
    mlm_model: Path = Path("models/mlm")   # the masked-LM phase's output: Stage 1 starts there when it ran

    @classmethod
    def from_layout(cls, layout: dict[str, str], json_key: str, plot_key: str, json: str | None = None,
                    plot: str | None = None) -> ToolPaths:
        """From dvc.yaml's layout: the outputs named ``json_key`` / ``plot_key`` (or ``json`` / ``plot`` instead)."""
        return cls(*(Path(layout[k]) for k in ("prepared", "tokenized", "demo_encoder", "stage1_model")),
                   Path(json or layout[json_key]), Path(plot or layout[plot_key]), Path(layout["mlm_model"]))

    @classmethod
    def of_project(cls, root: str | Path, json_key: str, plot_key: str, **outputs) -> ToolPaths:
        return cls.from_layout(dvc_paths(root), json_key, plot_key, **outputs)

    def inputs(self, p=None):
        """The :class:`~twohead.train.recipe.Inputs` of a recipe (imported here: the tools' flags load no torch);
        with params ``p`` whose masked-LM phase is on, Stage 1's recipe starts from its output, as the stage does."""
        from ..train.recipe import Inputs

        on = p is not None and p.mlm.epochs > 0
        return Inputs(self.prepared, self.tokenized, ((self.demo_encoder, "build_demo_encoder"),
                                                      (self.stage1_model, "pretrain_stage1"),
                                                      (self.mlm_model, "pretrain_mlm")),
                      start=self.mlm_model if on else None)

    def with_outputs(self, json: Path, plot: Path) -> ToolPaths:
        return replace(self, json=Path(json), plot=Path(plot))
