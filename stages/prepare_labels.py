"""Stage prepare_labels: raw table → prepared splits, label maps, class weights, bands + summary metrics."""

from twohead.pipeline.prepare_labels import PreparePaths, run
from twohead.pipeline.runner import run_stage


def main(p, paths: PreparePaths) -> None:
    summary = run(p, paths)
    rows = ", ".join(f"{k} {v['rows']}" for k, v in summary["splits"].items())
    print(f"[prepare_labels] {summary['n_classes']} categories; rows: {rows}; dropped: {summary['dropped'] or 'none'}")


if __name__ == "__main__":
    run_stage("prepare_labels", main, PreparePaths)
