"""Stage pretrain_mlm: masked-LM adaptation of stage1.base_model to your texts before Stage 1 (mlm.epochs: 0 = off)."""

import sys
from pathlib import Path

# Import the package from the src/ beside this script: the copy DVC hashed for this run's deps (see
# stages/pretrain_stage1.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from twohead.pipeline.stage_main import exit_on_interrupt, run_stage  # noqa: E402

exit_on_interrupt("pretrain_mlm")  # Ctrl-C while the imports below load: one line, status 130
from twohead.pipeline.pretrain_mlm import MlmPaths, run  # noqa: E402


def main(p, paths: MlmPaths) -> None:
    m = run(p, paths)
    if m["trained"]:
        print(f"[pretrain_mlm] val masked-LM loss {m['val_loss']:.4f}, masked-token acc {m['val_acc']:.4f}"
              f" -> {paths.mlm_model}")
    else:
        print(f"[pretrain_mlm] skipped: {m['reason']}")


if __name__ == "__main__":
    run_stage("pretrain_mlm", main, MlmPaths)
