"""Stage build_demo_encoder: a small DeBERTa-v3-layout encoder + SentencePiece tokenizer, from scratch."""

import sys
from pathlib import Path

# Import the package from the src/ beside this script: the copy DVC hashed for this run's deps. An editable
# install would otherwise serve another checkout's code (e.g. the workspace, while `dvc exp run --queue`
# runs this copy in a temporary folder).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from twohead.pipeline.stage_main import exit_on_interrupt, run_stage  # noqa: E402

exit_on_interrupt("build_demo_encoder")  # Ctrl-C while the imports below load: one line, status 130
from twohead.pipeline.build_demo_encoder import DemoEncoderPaths, run  # noqa: E402


def main(p, paths: DemoEncoderPaths) -> None:
    print(f"[build_demo_encoder] wrote {run(p, paths)}")


if __name__ == "__main__":
    run_stage("build_demo_encoder", main, DemoEncoderPaths)
