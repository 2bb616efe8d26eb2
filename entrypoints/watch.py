"""mlflow run . -e watch: decide whether the model needs retraining, record why, retrain."""

from entrypoints import later
from mlcycle.cli import entry_point, run_process
from mlcycle.steps.params.watch import WatchParams

main = entry_point("watch", WatchParams, later("mlcycle.steps.watch"), __doc__)

if __name__ == "__main__":
    run_process(main)
