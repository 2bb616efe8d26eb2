"""mlflow run . -e optimize: tune the forest or the network with Optuna, on current train."""

from mlcycle.cli import entry_point
from mlcycle.steps.optimize import OptimizeParams, execute

main = entry_point("optimize", OptimizeParams, execute, __doc__)

if __name__ == "__main__":
    main()
