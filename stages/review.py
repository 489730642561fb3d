"""Stage review: where the labels lose — label issues (cleanlab), confusable pairs and merge gains, conflicting
duplicates; the queue a person reads before writing data.corrections."""

import sys
from pathlib import Path

# Import the package from the src/ beside this script: the copy DVC hashed for this run's deps (see evaluate.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from twohead.pipeline.stage_main import exit_on_interrupt, run_stage  # noqa: E402

exit_on_interrupt("review")  # Ctrl-C while the imports below load: one line, status 130
from twohead.pipeline.review import ReviewPaths, run  # noqa: E402


def main(p, paths: ReviewPaths) -> None:
    r = run(p, paths)
    for split in ("val", "test"):
        t2 = r["splits"][split]["task2"]
        print(f"[review] {split}: {t2['flagged']} of {t2['rows']} category labels flagged, cleanlab estimates"
              f" {t2['estimated_wrong_share']:.1%} wrong; {r['splits'][split]['task1']['flagged']} Pick/Decline"
              " labels flagged")
    top = r["top_pairs"][0] if r["top_pairs"] else None
    if top:
        print(f"[review] most confused pair: {top['a']} <-> {top['b']} ({top['a_as_b']} + {top['b_as_a']} test rows);"
              f" merged: {top['merge_gain']:+.1%} Task2 accuracy")
    print(f"[review] queue: {r['queue']['path']} ({r['queue']['rows']} rows)")


if __name__ == "__main__":
    run_stage("review", main, ReviewPaths)
