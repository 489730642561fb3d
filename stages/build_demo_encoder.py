"""Stage build_demo_encoder: a small DeBERTa-v3-layout encoder + SentencePiece tokenizer, from scratch."""

from twohead.pipeline.build_demo_encoder import DemoEncoderPaths, run
from twohead.pipeline.runner import run_stage


def main(p, paths: DemoEncoderPaths) -> None:
    print(f"[build_demo_encoder] wrote {run(p, paths)}")


if __name__ == "__main__":
    run_stage("build_demo_encoder", main, DemoEncoderPaths)
