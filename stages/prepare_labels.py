"""Stage prepare_labels: raw table → prepared splits, label maps, class weights, bands + summary metrics."""

import sys
from pathlib import Path

# Import the package from the src/ beside this script: the copy DVC hashed for this run's deps. An editable
# install would otherwise serve another checkout's code (e.g. the workspace, while `dvc exp run --queue`
# runs this copy in a temporary folder).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from twohead.pipeline.stage_main import exit_on_interrupt, run_stage  # noqa: E402

exit_on_interrupt("prepare_labels")  # Ctrl-C while the imports below load: one line, status 130
from twohead.pipeline.prepare_labels import PreparePaths, run  # noqa: E402


def main(p, paths: PreparePaths) -> None:
    summary = run(p, paths)
    rows = ", ".join(f"{k} {v['rows']}" for k, v in summary["splits"].items())
    print(f"[prepare_labels] {summary['n_classes']} categories; rows: {rows}; dropped: {summary['dropped'] or 'none'}")


if __name__ == "__main__":
    run_stage("prepare_labels", main, PreparePaths)
