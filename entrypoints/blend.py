"""mlflow run . -e blend: a weighted blend of main's candidates, kept when it is better."""

from entrypoints import later
from mlcycle.cli import entry_point, run_process
from mlcycle.steps.params.blend import BlendParams

main = entry_point("blend", BlendParams, later("mlcycle.steps.blend"), __doc__)

if __name__ == "__main__":
    run_process(main)
