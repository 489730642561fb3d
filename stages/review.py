"""Stage review: where the labels lose — label issues (cleanlab), confusable pairs and merge gains, conflicting
duplicates; the queue a person reads before writing data.corrections."""

import sys
from pathlib import Path

# Import the package from the src/ beside this script: the copy DVC hashed for this run's deps (see evaluate.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from twohead.pipeline.stage_main import exit_on_interrupt, run_stage  # noqa: E402

exit_on_interrupt("review")  # Ctrl-C while the imports below load: one line, status 130
from twohead.pipeline.review import ReviewPaths, report, run  # noqa: E402


def main(p, paths: ReviewPaths) -> None:
    for line in report(run(p, paths)):
        print(f"[review] {line}")


if __name__ == "__main__":
    run_stage("review", main, ReviewPaths)
