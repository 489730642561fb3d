"""Stage pretrain_stage1: Pick/Decline pretraining of stage1.base_model (skipped when you bring your own checkpoint)."""

from twohead.pipeline.pretrain_stage1 import Stage1Paths, run
from twohead.pipeline.runner import run_stage


def main(p, paths: Stage1Paths) -> None:
    m = run(p, paths)
    if m["trained"]:
        print(f"[pretrain_stage1] val Pick/Decline acc {m['val_acc']:.4f}, Pick F1 {m['val_f1_pick']:.4f} "
              f"-> {paths.stage1_model}")
    else:
        print(f"[pretrain_stage1] skipped: Stage 2 starts from {p.model.stage1_checkpoint}")


if __name__ == "__main__":
    run_stage("pretrain_stage1", main, Stage1Paths)
