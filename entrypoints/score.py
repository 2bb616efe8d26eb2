"""mlflow run . -e score: predictions of a registered model on a CSV, into a Parquet file."""

from entrypoints import later
from mlcycle.cli import entry_point, run_process
from mlcycle.steps.params.score import ScoreParams


def output_lines(scored) -> list[str]:
    return [f"predictions: {scored.output} ({scored.rows} rows)"]


main = entry_point("score", ScoreParams, later("mlcycle.steps.score"), __doc__, show=output_lines)

if __name__ == "__main__":
    run_process(main)
