"""Stage pretrain_stage1: Pick/Decline pretraining of stage1.base_model (skipped when you bring your own checkpoint)."""

import sys
from pathlib import Path

# Import the package from the src/ beside this script: the copy DVC hashed for this run's deps. An editable
# install would otherwise serve another checkout's code (e.g. the workspace, while `dvc exp run --queue`
# runs this copy in a temporary folder).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from twohead.pipeline.stage_main import exit_on_interrupt, run_stage  # noqa: E402

exit_on_interrupt("pretrain_stage1")  # Ctrl-C while the imports below load: one line, status 130
from twohead.pipeline.pretrain_stage1 import Stage1Paths, run  # noqa: E402


def main(p, paths: Stage1Paths) -> None:
    m = run(p, paths)
    if m["trained"]:
        print(f"[pretrain_stage1] val Pick/Decline acc {m['val_acc']:.4f}, Pick F1 {m['val_f1_pick']:.4f} "
              f"-> {paths.stage1_model}")
    else:
        print(f"[pretrain_stage1] skipped: Stage 2 starts from {p.model.stage1_checkpoint}")


if __name__ == "__main__":
    run_stage("pretrain_stage1", main, Stage1Paths)
