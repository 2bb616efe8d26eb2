"""mlflow run . -e baseline: train the RandomForest champion on reference train."""

from mlcycle.cli import entry_point
from mlcycle.steps.baseline import BaselineParams, execute

main = entry_point("baseline", BaselineParams, execute, __doc__)

if __name__ == "__main__":
    main()
