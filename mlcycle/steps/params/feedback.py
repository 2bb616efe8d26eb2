"""feedback's parameters: the entry point's options and their checks."""

from __future__ import annotations

from dataclasses import dataclass

from mlcycle.errors import MlcycleError
from mlcycle.params import check, model_name_param, param
from mlcycle.steps.params.score import input_path


@dataclass(frozen=True)
class FeedbackParams:
    labels: str = param(
        "", "CSV of labels: prediction_id (or the identifier columns) and the target"
    )
    model_name: str = model_name_param()
    output: str = param(
        "",
        "CSV of the labelled rows (a current file for etl/main); empty: "
        "feedback/<model_name>/<UTC time>.csv where mlflow run started",
    )

    def validate(self) -> FeedbackParams:
        check(self)
        if not self.labels.strip():
            raise MlcycleError("parameter labels: name the CSV of labels (-P labels=FILE)")
        if self.output and not self.output.endswith((".csv", "/")):
            raise MlcycleError(
                f"parameter output: the labelled rows are written as CSV, so name the file "
                f"*.csv (or give a folder ending with /), got {self.output!r}"
            )
        if not input_path(self.labels).is_file():  # before any run opens
            raise MlcycleError(f"labels file not found: {input_path(self.labels)}")
        return self
