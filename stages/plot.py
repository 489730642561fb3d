"""Stage plot: PNG learning curves, band recall, per-class recall, top confusions and data maps."""

import sys
from pathlib import Path

# Import the package from the src/ beside this script: the copy DVC hashed for this run's deps. An editable
# install would otherwise serve another checkout's code (e.g. the workspace, while `dvc exp run --queue`
# runs this copy in a temporary folder).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from twohead.pipeline.stage_main import exit_on_interrupt, run_stage  # noqa: E402

exit_on_interrupt("plot")  # Ctrl-C while the imports below load: one line, status 130
from twohead.data.io import read_json  # noqa: E402
from twohead.evaluate.summary import headline_lines  # noqa: E402
from twohead.pipeline.plot import PlotPaths, run  # noqa: E402


def main(p, paths: PlotPaths) -> None:
    made = run(p, paths)
    print(f"[plot] wrote {len(made)} figures to {paths.figures} and {paths.summary}")
    print(headline_lines(read_json(paths.test_metrics)))  # the run's figures, last thing dvc repro prints


if __name__ == "__main__":
    run_stage("plot", main, PlotPaths)
