"""mlflow run . -e optimize: tune the forest or the network with Optuna, on current train."""

from entrypoints import later
from mlcycle.cli import entry_point, run_process
from mlcycle.steps.params.optimize import OptimizeParams

main = entry_point("optimize", OptimizeParams, later("mlcycle.steps.optimize"), __doc__)

if __name__ == "__main__":
    run_process(main)
