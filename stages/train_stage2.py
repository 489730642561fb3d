"""Stage train_stage2: the plain two-head multi-task recipe (see src/twohead/train.py)."""

import os

from twohead.cli import register_user_error, run_stage
from twohead.device import DeviceError
from twohead.params import Params
from twohead.train import TrainingError, run_train


def main(p: Params) -> None:
    m = run_train(p)
    if os.environ.get("RANK", "0") != "0":  # under accelerate launch / torchrun: one summary line
        return
    print(f"[train_stage2] done: val Task2 acc {m['val_acc_task2']:.4f}, macro-F1 {m['val_macro_f1_task2']:.4f}; "
          f"val Task1 acc {m['val_acc_task1']:.4f}; kept epoch {m['kept_epoch']} -> models/stage2")


if __name__ == "__main__":
    register_user_error(DeviceError)
    register_user_error(TrainingError)
    run_stage("train_stage2", main)
