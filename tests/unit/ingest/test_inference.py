"""The inference log's handle: a score run, and what monitor and feedback are told when
the run given is not one that left a batch."""

import mlflow
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.ingest import inference


@pytest.mark.integration
def test_a_score_run_that_failed_is_named_as_failed_not_as_scored_before_the_log(tracking_uri):
    # monitor -P score_run=<a failed score> said the run was "scored before the inference
    # log existed", sending the user to look for an old version instead of the failure.
    with mlflow.start_run() as run:
        mlflow.set_tag("mlcycle.step", "score")
    mlflow.MlflowClient().set_terminated(run.info.run_id, "FAILED")
    with pytest.raises(MlcycleError, match=r"score run \w+ ended FAILED.*score the batch again"):
        inference.read_batch(run.info.run_id, "m")
