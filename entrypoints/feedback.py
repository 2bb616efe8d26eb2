"""mlflow run . -e feedback: labels that came late, joined to the inference log."""

from mlcycle.cli import entry_point
from mlcycle.steps.feedback import FeedbackParams, execute


def output_lines(result) -> list[str]:
    return [f"labelled rows: {result.output} ({result.joined.counts['labels_joined']} rows)"]


main = entry_point("feedback", FeedbackParams, execute, __doc__, show=output_lines)

if __name__ == "__main__":
    main()
