"""mlflow run . -e watch: decide whether the model needs retraining, record why, retrain."""

from entrypoints import later
from mlcycle.cli import entry_point
from mlcycle.steps.params.watch import WatchParams

main = entry_point("watch", WatchParams, later("mlcycle.steps.watch"), __doc__)

if __name__ == "__main__":
    main()
