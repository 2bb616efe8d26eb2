"""mlflow run . -e retrain: train a Keras network on the new data and register it as the
challenger, with the base model's metrics before and the new model's after."""

from entrypoints import later
from mlcycle.cli import entry_point, run_process
from mlcycle.steps.params.retrain import RetrainParams

main = entry_point("retrain", RetrainParams, later("mlcycle.steps.retrain"), __doc__)

if __name__ == "__main__":
    run_process(main)
