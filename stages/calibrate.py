"""Stage calibrate: temperatures, the Task2 class-prior correction and the Decline rule, chosen on val."""

import sys
from pathlib import Path

# Import the package from the src/ beside this script: the copy DVC hashed for this run's deps. An editable
# install would otherwise serve another checkout's code (e.g. the workspace, while `dvc exp run --queue`
# runs this copy in a temporary folder).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from twohead.pipeline.stage_main import exit_on_interrupt, run_stage  # noqa: E402

exit_on_interrupt("calibrate")  # Ctrl-C while the imports below load: one line, status 130
from twohead.pipeline.calibrate import CalibratePaths, run  # noqa: E402


def main(p, paths: CalibratePaths) -> None:
    h = run(p, paths)
    rule = f"Decline if P(Pick) < {h['pick_threshold']:g}"
    if h["rule"] == "pick_or_maxprob":
        rule += f" or Task2 max-prob < {h['maxprob_threshold']:g}"
    print(f"[calibrate] on {h['val_rows']} val rows: T1 {h['temperature_task1']:.3g}, T2 {h['temperature_task2']:.3g}"
          f" (Task2 ECE {h['val_ece_task2']['raw']:.3f} -> {h['val_ece_task2']['calibrated']:.3f}); prior tau"
          f" {h['tau']:g}; {rule} (val {h['objective']} {h['val_objective']['decided']:.4f} vs"
          f" {h['val_objective']['plain_threshold']:.4f} at 0.5) -> {paths.decision}")


if __name__ == "__main__":
    run_stage("calibrate", main, CalibratePaths)
