"""Stage plot: PNG learning curves, band recall, per-class recall, top confusions and data maps."""

from twohead.pipeline.plot import PlotPaths, run
from twohead.pipeline.runner import run_stage


def main(p, paths: PlotPaths) -> None:
    print(f"[plot] wrote {', '.join(str(m) for m in run(p, paths))}")


if __name__ == "__main__":
    run_stage("plot", main, PlotPaths)
