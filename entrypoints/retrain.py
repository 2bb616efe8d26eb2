"""mlflow run . -e retrain: train a Keras network on the new data and register it as the
challenger, with the base model's metrics before and the new model's after."""

from mlcycle.cli import entry_point
from mlcycle.steps.retrain import RetrainParams, execute

main = entry_point("retrain", RetrainParams, execute, __doc__)

if __name__ == "__main__":
    main()
