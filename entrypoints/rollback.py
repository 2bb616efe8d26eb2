"""mlflow run . -e rollback: make an earlier version the champion again, recorded in the ledger."""

from entrypoints import later
from mlcycle.cli import entry_point, run_process
from mlcycle.steps.params.rollback import RollbackParams

main = entry_point("rollback", RollbackParams, later("mlcycle.steps.rollback"), __doc__)

if __name__ == "__main__":
    run_process(main)
