"""mlflow run . -e watch: decide whether the model needs retraining, record why, retrain."""

from mlcycle.cli import entry_point
from mlcycle.steps.watch import WatchParams, execute

main = entry_point("watch", WatchParams, execute, __doc__)

if __name__ == "__main__":
    main()
