"""Stage tokenize (file not named tokenize.py: that would shadow the standard library module): prepared rows → token ids."""

from twohead.cli import run_stage
from twohead.params import Params
from twohead.tokenization import run_tokenize


def main(p: Params) -> None:
    s = run_tokenize(p, prepared_dir="data/prepared", out_dir="data/tokenized")
    print(
        f"[tokenize] {s['rows']} rows at {s['rows_per_second']:,.0f} rows/s; length mean {s['mean_length']:.1f},"
        f" p95 {s['p95_length']:.0f}, max {s['max_length_seen']}; truncated {s['truncated_share']:.1%}"
        f" (max_length {s['max_length']}); tokenizer {s['tokenizer']}"
    )


if __name__ == "__main__":
    run_stage("tokenize", main)
