"""Stage build_demo_encoder: a small DeBERTa-v3-layout encoder + SentencePiece tokenizer, from scratch."""

from twohead.cli import run_stage
from twohead.demo import build_demo_encoder
from twohead.params import Params


def main(p: Params) -> None:
    out = build_demo_encoder(p.demo_encoder)
    print(f"[build_demo_encoder] wrote {out}")


if __name__ == "__main__":
    run_stage("build_demo_encoder", main)
