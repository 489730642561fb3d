"""Stage evaluate: the Stage-2 model on test (and val): metrics, per-class/band tables, predictions, worst-K."""

from twohead.pipeline.evaluate import EvaluatePaths, run
from twohead.pipeline.runner import run_stage


def main(p, paths: EvaluatePaths) -> None:
    r = run(p, paths)["test"]
    print(f"[evaluate] test: Task2 acc {r['task2']['acc']:.4f}, macro-F1 {r['task2']['macro_f1']:.4f}; "
          f"Task1 acc {r['task1']['acc']:.4f}, Pick F1 {r['task1']['f1_pick']:.4f}; "
          f"combined (N+Decline) acc {r['combined']['acc']:.4f}")


if __name__ == "__main__":
    run_stage("evaluate", main, EvaluatePaths)
