"""mlflow run . -e etl: validate and split the reference and current data."""

from entrypoints import later
from mlcycle.cli import entry_point, run_process
from mlcycle.steps.params.etl import EtlParams

main = entry_point("etl", EtlParams, later("mlcycle.steps.etl"), __doc__)

if __name__ == "__main__":
    run_process(main)
