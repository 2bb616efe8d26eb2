"""The inference table as its readers see it: one scored batch, found through its score run.

Every score run tags `mlcycle.inference_table` with the absolute path of its batch's
partition folder (`<state>/inference/<model_name>/score_run=<run_id>/part-*.parquet`):
`prediction_id`, `scored_at`, `model_version`, `row`, the identifiers, the features as
read, `prediction` and `proba_<class>` for classifiers."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from mlcycle import config
from mlcycle.errors import MlcycleError

TABLE_TAG = "mlcycle.inference_table"
PROBA_PREFIX = "proba_"


def score_run(run_id: str):
    """The score run with this id; one line when it is not one."""
    try:
        run = mlflow.get_run(run_id)
    except MlflowException as exc:
        raise MlcycleError(f"parameter score_run: no run {run_id!r} in the tracking store") from exc
    if run.data.tags.get(config.STEP_TAG) != "score":
        raise MlcycleError(
            f"parameter score_run: run {run_id} is a "
            f"{run.data.tags.get(config.STEP_TAG) or 'non-mlcycle'} run, not a score run"
        )
    return run


def read_batch(score_run_id: str) -> pd.DataFrame:
    """Every row the score run scored, in input order, from its inference table partition."""
    run = score_run(score_run_id)
    folder = run.data.tags.get(TABLE_TAG)
    if not folder:
        raise MlcycleError(
            f"parameter score_run: score run {score_run_id} has no tag {TABLE_TAG} "
            "(scored before the inference log existed): score the batch again"
        )
    path = Path(folder)
    if not path.is_dir() or not any(path.glob("*.parquet")):
        raise MlcycleError(
            f"parameter score_run: the inference table of score run {score_run_id} is missing: "
            f"{path}"
        )
    frame = pd.read_parquet(path)
    if "row" in frame.columns:
        frame = frame.sort_values("row", kind="stable").reset_index(drop=True)
    return frame
