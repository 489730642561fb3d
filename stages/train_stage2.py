"""Stage train_stage2: the plain two-head multi-task recipe (logic: src/twohead/pipeline/train_stage2.py)."""

import os
import sys
from pathlib import Path

# Import the package from the src/ beside this script: the copy DVC hashed for this run's deps. An editable
# install would otherwise serve another checkout's code (e.g. the workspace, while `dvc exp run --queue`
# runs this copy in a temporary folder).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from twohead.pipeline.stage_main import exit_on_interrupt, run_stage  # noqa: E402

exit_on_interrupt("train_stage2")  # Ctrl-C while the imports below load: one line, status 130
from twohead.pipeline.train_stage2 import TrainPaths, run  # noqa: E402


def main(p, paths: TrainPaths) -> None:
    m = run(p, paths)
    if os.environ.get("RANK", "0") != "0":  # under accelerate launch / torchrun: one summary line
        return
    print(f"[train_stage2] done: val Task2 acc {m['val_acc_task2']:.4f}, macro-F1 {m['val_macro_f1_task2']:.4f}; "
          f"val Task1 acc {m['val_acc_task1']:.4f}; kept epoch {m['kept_epoch']} -> {paths.stage2_model}")


if __name__ == "__main__":
    run_stage("train_stage2", main, TrainPaths)
