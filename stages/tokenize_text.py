"""Stage tokenize: prepared rows → token ids.

(Not named tokenize.py: that would shadow the standard library module.)"""

from twohead.pipeline.runner import run_stage
from twohead.pipeline.tokenize import TokenizePaths, run


def main(p, paths: TokenizePaths) -> None:
    s = run(p, paths)
    print(
        f"[tokenize] {s['rows']} rows at {s['rows_per_second']:,.0f} rows/s; length mean {s['mean_length']:.1f},"
        f" p95 {s['p95_length']:.0f}, max {s['max_length_seen']}; truncated {s['truncated_share']:.1%}"
        f" (max_length {s['max_length']}); tokenizer {s['tokenizer']}"
    )


if __name__ == "__main__":
    run_stage("tokenize", main, TokenizePaths)
