"""mlflow run . -e blend: a weighted blend of main's candidates, kept when it is better."""

from mlcycle.cli import entry_point
from mlcycle.steps.blend import BlendParams, execute

main = entry_point("blend", BlendParams, execute, __doc__)

if __name__ == "__main__":
    main()
