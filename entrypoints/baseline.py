"""mlflow run . -e baseline: train the RandomForest champion on reference train."""

from entrypoints import later
from mlcycle.cli import entry_point, run_process
from mlcycle.steps.params.baseline import BaselineParams

main = entry_point("baseline", BaselineParams, later("mlcycle.steps.baseline"), __doc__)

if __name__ == "__main__":
    run_process(main)
