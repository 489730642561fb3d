"""Stage predict: score a table of new articles (params: predict.*) with the trained Stage-2 model."""

import sys
from pathlib import Path

# Import the package from the src/ beside this script: the copy DVC hashed for this run's deps. An editable
# install would otherwise serve another checkout's code (e.g. the workspace, while `dvc exp run --queue`
# runs this copy in a temporary folder).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from twohead.pipeline.stage_main import exit_on_interrupt, run_stage  # noqa: E402

exit_on_interrupt("predict")  # Ctrl-C while the imports below load: one line, status 130
from twohead.pipeline.predict import PredictPaths, run  # noqa: E402


def main(p, paths: PredictPaths) -> None:
    s = run(p, paths)
    print(f"[predict] {s['rows']} rows scored ({s['picked']} Pick at threshold {s['pick_threshold']:g};"
          f" {s['skipped']} empty, {s['truncated']} truncated, {s['unreadable']} mostly unknown tokens)"
          f" -> {paths.scored}")
    for notice in s["notices"][1 if s["skipped"] else 0:]:
        print(f"[predict] {notice}", file=sys.stderr)


if __name__ == "__main__":
    run_stage("predict", main, PredictPaths)
