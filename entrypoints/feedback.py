"""mlflow run . -e feedback: labels that came late, joined to the inference log."""

from entrypoints import later
from mlcycle.cli import entry_point, run_process
from mlcycle.steps.params.feedback import FeedbackParams


def output_lines(result) -> list[str]:
    return [f"labelled rows: {result.output} ({result.joined.counts['labels_joined']} rows)"]


main = entry_point(
    "feedback", FeedbackParams, later("mlcycle.steps.feedback"), __doc__, show=output_lines
)

if __name__ == "__main__":
    run_process(main)
