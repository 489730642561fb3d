"""Stage prepare_labels: raw table → data/prepared/ (splits, label maps, class weights, bands) + metrics/data.json."""

from twohead.cli import run_stage
from twohead.params import Params
from twohead.prepare import run_prepare


def main(p: Params) -> None:
    summary = run_prepare(p, out_dir="data/prepared", metrics_path="metrics/data.json")
    rows = ", ".join(f"{k} {v['rows']}" for k, v in summary["splits"].items())
    print(f"[prepare_labels] {summary['n_classes']} categories; rows: {rows}; dropped: {summary['dropped'] or 'none'}")


if __name__ == "__main__":
    run_stage("prepare_labels", main)
