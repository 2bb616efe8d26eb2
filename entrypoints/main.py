"""mlflow run . (entry point main): etl -> baseline -> optimize -> retrain -> monitor, as
child runs of one parent, reusing finished identical steps."""

from entrypoints import later
from mlcycle.cli import entry_point, run_process
from mlcycle.steps.params.main import MainParams

main = entry_point("main", MainParams, later("mlcycle.steps.main"), __doc__)

if __name__ == "__main__":
    run_process(main)
