"""mlflow run . (entry point main): etl -> baseline -> optimize -> retrain -> monitor, as
child runs of one parent, reusing finished identical steps."""

from mlcycle.cli import entry_point
from mlcycle.steps.main import MainParams, execute

main = entry_point("main", MainParams, execute, __doc__)

if __name__ == "__main__":
    main()
