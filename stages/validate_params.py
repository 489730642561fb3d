"""Stage validate_params: refuse a params.yaml the schema refuses, before anything else runs (see the module)."""

import sys
from pathlib import Path

# Import the package from the src/ beside this script: the copy DVC hashed for this run's deps. An editable
# install would otherwise serve another checkout's code (e.g. the workspace, while `dvc exp run --queue`
# runs this copy in a temporary folder).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from twohead.pipeline.stage_main import exit_on_interrupt, run_stage  # noqa: E402

exit_on_interrupt("validate_params")  # Ctrl-C while the imports below load: one line, status 130
from twohead.pipeline.validate_params import ValidateParamsPaths, run  # noqa: E402


def main(p, paths: ValidateParamsPaths) -> None:
    run(p, paths)
    print(f"[validate_params] params.yaml: valid -> {paths.params_valid}")


if __name__ == "__main__":
    run_stage("validate_params", main, ValidateParamsPaths)
