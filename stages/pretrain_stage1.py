"""Stage pretrain_stage1: Pick/Decline pretraining of stage1.base_model (skipped when you bring your own checkpoint)."""

from twohead.cli import register_user_error, run_stage
from twohead.device import DeviceError
from twohead.params import Params
from twohead.stage1 import run_stage1
from twohead.train import TrainingError


def main(p: Params) -> None:
    m = run_stage1(p)
    if m["trained"]:
        print(f"[pretrain_stage1] val Pick/Decline acc {m['val_acc']:.4f}, Pick F1 {m['val_f1_pick']:.4f} "
              f"-> {p.stage1.output_dir}")
    else:
        print(f"[pretrain_stage1] skipped: Stage 2 starts from {p.model.stage1_checkpoint}")


if __name__ == "__main__":
    register_user_error(DeviceError)
    register_user_error(TrainingError)
    run_stage("pretrain_stage1", main)
