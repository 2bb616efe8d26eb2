"""mlflow run . -e rollback: make an earlier version the champion again, recorded in the ledger."""

from mlcycle.cli import entry_point
from mlcycle.steps.rollback import RollbackParams, execute

main = entry_point("rollback", RollbackParams, execute, __doc__)

if __name__ == "__main__":
    main()
