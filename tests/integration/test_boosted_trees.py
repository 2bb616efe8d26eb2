"""The boosted-trees family through the real commands: `mlflow run -e baseline -P
family=hgb` registers a compiled raw-row model that `mlflow models serve` answers (a 400
naming the column) and `score` scores; optimize's first trial is the family's defaults
and its best never falls below them."""

import json

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
import requests
from click.testing import CliRunner

from entrypoints.optimize import main as optimize_command
from mlcycle import config
from mlcycle.ingest.datasets import load_splits
from mlcycle.models import selection
from mlcycle.models.families import hgb
from mlcycle.models.served_forest import COMPILED, ENGINE_TAG
from mlcycle.models.serving import METADATA_KEY
from mlcycle.scaleout import optuna_storage
from mlcycle.steps import score as score_step
from mlcycle.steps.etl import EtlParams
from mlcycle.steps.etl import execute as etl_execute
from mlcycle.steps.optimize import BEST_PARAMS, refit_params
from tests.conftest import ROOT, assert_ok, assert_raw_row_contract, mlflow_run
from tests.integration.test_clients import check_server, raw_rows, serve, stop

pytestmark = pytest.mark.integration

NAME = config.DEFAULT_MODEL_NAME
BATCH = ROOT / "data" / "stream" / "batch_02.csv"


@pytest.fixture
def etl_run(tracking_uri) -> str:
    """An etl run on the bundled data, made in-process (a subprocess costs ~15 s)."""
    with mlflow.start_run(run_name="etl") as run:
        mlflow.set_tag(config.STEP_TAG, "etl")
        etl_execute(EtlParams())
    return run.info.run_id


def test_baseline_family_hgb_is_served_and_scored_as_the_forest_is(tracking_uri, etl_run, tmp_path):
    assert_ok(mlflow_run("baseline", tracking_uri, {"etl_run": etl_run, "family": "hgb"}))
    (run,) = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = 'baseline'",
    )
    assert run.data.params["family"] == "hgb"
    assert run.data.params["hgb.early_stopping"] == "True"
    assert run.data.metrics["reference_test_r2"] > 0.8
    version = mlflow.MlflowClient().get_model_version_by_alias(NAME, "champion")
    assert version.tags["mlcycle.family"] == "hgb" and version.tags[ENGINE_TAG] == COMPILED
    uri = f"models:/{NAME}/{version.version}"
    assert mlflow.models.get_model_info(uri).metadata[METADATA_KEY] == "hgb"
    schema = json.loads(mlflow.artifacts.load_text(f"runs:/{etl_run}/datasets/schema.json"))
    assert_raw_row_contract(uri, schema)

    in_process = mlflow.pyfunc.load_model(uri).predict(raw_rows(10))
    proc, base = serve(tracking_uri, f"models:/{NAME}@champion")
    try:
        check_server(base)  # raw rows, holes, and a 400 naming the column
        rows = raw_rows(10)
        body = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")

        answer = requests.post(f"{base}/invocations", json={"dataframe_records": body}, timeout=30)
    finally:
        stop(proc)
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["predictions"], in_process, rtol=1e-12)

    output = tmp_path / "scored.parquet"
    with mlflow.start_run():
        score_step.execute(score_step.ScoreParams(input=str(BATCH), output=str(output)))
    batch = pd.read_csv(BATCH)
    scored = pd.read_parquet(output)
    assert len(scored) == len(batch)
    model = mlflow.pyfunc.load_model(uri)
    features = model.metadata.get_input_schema().input_names()
    np.testing.assert_allclose(scored["prediction"], model.predict(batch[features]), rtol=1e-12)


def test_optimize_hgb_tries_the_defaults_first_and_never_ends_below_them(
    tracking_uri, etl_run, tmp_path
):
    journal = tmp_path / "study.journal"
    args = ["--etl-run", etl_run, "--family", "hgb", "--n-trials", "4", "--storage", str(journal)]
    result = CliRunner().invoke(optimize_command, args)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(
        study_name=f"{NAME}-hgb-r2",
        storage=optuna_storage.open_storage(optuna_storage.parse_storage(str(journal))),
    )
    first = study.trials[0]
    assert first.params == hgb.default_trial("regression")
    assert study.best_value >= first.value
    (run,) = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = 'optimize'",
    )
    metrics = run.data.metrics
    # The best parameters, fitted on current train less the judging slice, scored on it:
    # a slice no trial saw (the trials learned and were scored on the rest).
    assert {"validation_r2", "validation_mae", "best_validation_r2"} <= set(metrics)
    schema, splits = load_splits(etl_run)
    best = refit_params(
        json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/{BEST_PARAMS}"))
    )
    judged = selection.slice_metrics(hgb, schema, best, splits.current_train, seed=42)
    assert metrics["validation_r2"] == pytest.approx(judged["validation_r2"], abs=1e-9)
    challenger = mlflow.MlflowClient().get_model_version_by_alias(NAME, "challenger")
    assert challenger.tags["mlcycle.family"] == "hgb"
