"""mlflow run . -e etl: validate and split the reference and current data."""

from mlcycle.cli import entry_point
from mlcycle.steps.etl import EtlParams, execute

main = entry_point("etl", EtlParams, execute, __doc__)

if __name__ == "__main__":
    main()
