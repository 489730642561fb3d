"""Stage train_stage2: the plain two-head multi-task recipe (logic: src/twohead/pipeline/train_stage2.py)."""

import os

from twohead.pipeline.runner import run_stage
from twohead.pipeline.train_stage2 import TrainPaths, run


def main(p, paths: TrainPaths) -> None:
    m = run(p, paths)
    if os.environ.get("RANK", "0") != "0":  # under accelerate launch / torchrun: one summary line
        return
    print(f"[train_stage2] done: val Task2 acc {m['val_acc_task2']:.4f}, macro-F1 {m['val_macro_f1_task2']:.4f}; "
          f"val Task1 acc {m['val_acc_task1']:.4f}; kept epoch {m['kept_epoch']} -> {paths.stage2_model}")


if __name__ == "__main__":
    run_stage("train_stage2", main, TrainPaths)
