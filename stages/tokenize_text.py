"""Stage tokenize: prepared rows → token ids.

(Not named tokenize.py: that would shadow the standard library module.)"""

import sys
from pathlib import Path

# Import the package from the src/ beside this script: the copy DVC hashed for this run's deps. An editable
# install would otherwise serve another checkout's code (e.g. the workspace, while `dvc exp run --queue`
# runs this copy in a temporary folder).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from twohead.pipeline.stage_main import exit_on_interrupt, run_stage  # noqa: E402

exit_on_interrupt("tokenize")  # Ctrl-C while the imports below load: one line, status 130
from twohead.pipeline.tokenize import TokenizePaths, run  # noqa: E402


def main(p, paths: TokenizePaths) -> None:
    s = run(p, paths)
    print(
        f"[tokenize] {s['rows']} rows at {s['rows_per_second']:,.0f} rows/s; length mean {s['mean_length']:.1f},"
        f" p95 {s['p95_length']:.0f}, max {s['max_length_seen']}; truncated {s['truncated_share']:.1%}"
        f" (max_length {s['max_length']}); tokenizer {s['tokenizer']}; unknown tokens"
        f" {s['coverage']['unknown_share']:.2%}, characters its normaliser changes"
        f" {s['coverage']['normaliser_changed_share']:.2%}"
    )


if __name__ == "__main__":
    run_stage("tokenize", main, TokenizePaths)
