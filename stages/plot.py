"""Stage plot: PNG learning curves, band recall, per-class recall and top confusions from the CSVs."""

from twohead.cli import run_stage
from twohead.params import Params
from twohead.plots import run_plots


def main(p: Params) -> None:
    made = run_plots(p)
    print(f"[plot] wrote {', '.join(str(m) for m in made)}")


if __name__ == "__main__":
    run_stage("plot", main)
