"""Stage evaluate: the Stage-2 model on test (and val): metrics, per-class/band tables, predictions, worst-K."""

import sys
from pathlib import Path

# Import the package from the src/ beside this script: the copy DVC hashed for this run's deps. An editable
# install would otherwise serve another checkout's code (e.g. the workspace, while `dvc exp run --queue`
# runs this copy in a temporary folder).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from twohead.pipeline.stage_main import exit_on_interrupt, run_stage  # noqa: E402

exit_on_interrupt("evaluate")  # Ctrl-C while the imports below load: one line, status 130
from twohead.evaluate.summary import headline_lines  # noqa: E402
from twohead.pipeline.evaluate import EvaluatePaths, run  # noqa: E402


def main(p, paths: EvaluatePaths) -> None:
    print(headline_lines(run(p, paths)))


if __name__ == "__main__":
    run_stage("evaluate", main, EvaluatePaths)
