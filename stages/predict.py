"""Stage predict: score a table of new articles (params: predict.*) with the trained Stage-2 model."""

from twohead.pipeline.predict import PredictPaths, run
from twohead.pipeline.runner import run_stage


def main(p, paths: PredictPaths) -> None:
    s = run(p, paths)
    print(f"[predict] {s['rows']} rows scored ({s['picked']} Pick at threshold {s['pick_threshold']:g};"
          f" {s['skipped']} empty) -> {paths.scored}")


if __name__ == "__main__":
    run_stage("predict", main, PredictPaths)
