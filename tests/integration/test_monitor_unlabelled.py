"""`monitor -P score_run=<id>`: a batch scored without labels, monitored through the real
`mlflow run`, its page opened in Chromium. The batch is data/stream/batch_01.csv scored by
the real score step; its inference-table partition is the one the score run tags (written
here per the loop contract when score does not write one itself)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from click.testing import CliRunner

from entrypoints.score import main as score_command
from mlcycle import config
from mlcycle.ingest import inference
from mlcycle.ingest.datasets import load_splits
from mlcycle.lifecycle import registry
from mlcycle.models.families import rf
from mlcycle.models.served_forest import log_forest
from mlcycle.steps.etl import EtlParams, execute
from tests.conftest import assert_ok, mlflow_run
from tests.integration.test_report_browser import ARGS, Visit, chromium, open_page

pytestmark = pytest.mark.integration

NAME = "loan-amount"
BATCH = config.DATA_DIR / "stream" / "batch_01.csv"


def _etl() -> str:
    params = EtlParams()
    with mlflow.start_run(run_name="etl") as run:
        mlflow.set_tag(config.STEP_TAG, "etl")
        mlflow.log_params(vars(params))
        execute(params)
    return run.info.run_id


def _champion(etl_run: str) -> str:
    """A forest fitted on the new rows, registered with its etl run, made champion."""
    schema, splits = load_splits(etl_run)
    pipeline = rf.fit(schema, rf.ForestParams(n_estimators=30, n_jobs=1), splits.current_train)
    with mlflow.start_run(run_name="forest"):
        mlflow.set_tags({config.STEP_TAG: "baseline", "mlcycle.etl_run": etl_run})
        info = log_forest(
            pipeline, schema, splits.current_train, NAME, {"mlcycle.etl_run": etl_run}
        )
    version = str(info.registered_model_version)
    registry.set_alias(NAME, config.CHAMPION, version)
    return version


def write_partition(score_run: str, folder: Path) -> Path:
    """The batch's inference-table partition as the contract lays it out, unless the score
    run already tagged one: ids, time, version, row, identifiers, features as read, the
    prediction."""
    run = mlflow.get_run(score_run)
    if run.data.tags.get(inference.TABLE_TAG):
        return Path(run.data.tags[inference.TABLE_TAG])
    scored = pd.read_parquet(run.data.tags["mlcycle.output"]).sort_values("row")
    read = pd.read_csv(run.data.params["input"])
    table = read.iloc[scored["row"].to_numpy()]
    table = table.reset_index(drop=True)
    table.insert(0, "prediction_id", [f"{score_run}-{r}" for r in scored["row"]])
    table.insert(1, "scored_at", pd.Timestamp.now(tz="UTC"))
    table.insert(2, "model_version", run.data.tags["mlcycle.model_version"])
    table.insert(3, "row", scored["row"].to_numpy())
    table["prediction"] = scored["prediction"].to_numpy()
    partition = folder / "inference" / NAME / f"score_run={score_run}"
    partition.mkdir(parents=True)
    table.to_parquet(partition / "part-00000.parquet", index=False)
    mlflow.MlflowClient().set_tag(score_run, inference.TABLE_TAG, str(partition))
    return partition


@pytest.fixture(scope="module")
def unlabelled_run(module_tracking_uri, tmp_path_factory):
    """etl, a champion, score of batch_01 (no label used), then the real mlflow run of
    monitor on that score run."""
    folder = tmp_path_factory.mktemp("unlabelled")
    etl_run = _etl()
    version = _champion(etl_run)
    # The labels are gone before scoring: the batch as production would get it.
    batch = folder / "batch_01.csv"
    pd.read_csv(BATCH).drop(columns=[config.DEFAULT_TARGET]).to_csv(batch, index=False)
    scored = CliRunner().invoke(
        score_command, ["--input", str(batch), "--output", str(folder / "batch_01.parquet")]
    )
    assert scored.exit_code == 0, scored.output
    (score_run,) = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = 'score'",
    )
    write_partition(score_run.info.run_id, folder)
    aliases_before = dict(registry.client().get_registered_model(NAME).aliases)
    result = mlflow_run(
        "monitor",
        module_tracking_uri,
        {"score_run": score_run.info.run_id, "output": folder / "reports"},
    )
    assert_ok(result)
    (run,) = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = 'monitor'",
    )
    return {
        "run": run,
        "score_run": score_run.info.run_id,
        "version": version,
        "aliases_before": aliases_before,
        "folder": folder,
        "stdout": result.stdout + result.stderr,
    }


def test_label_free_monitor_logs_the_contract_and_moves_no_alias(unlabelled_run):
    run = unlabelled_run["run"]
    tags, metrics = run.data.tags, run.data.metrics
    assert run.info.status == "FINISHED"
    assert tags["mlcycle.monitor.labels"] == "absent"
    assert tags["mlcycle.score_run"] == unlabelled_run["score_run"]
    assert tags["mlcycle.model_name"] == NAME
    assert tags["mlcycle.champion_version"] == unlabelled_run["version"]
    assert {
        "estimated_r2",
        "estimated_r2_low",
        "estimated_r2_high",
        "estimated_mae",
        "estimated_rmse",
        "reference_r2",
        "prediction_drift_score",
        "drift_share",
        "n_drifted_columns",
        "dataset_drift",
        "batch_rows",
    } <= set(metrics)
    assert metrics["batch_rows"] == len(pd.read_csv(BATCH))
    assert metrics["estimated_r2_low"] <= metrics["estimated_r2"] <= metrics["estimated_r2_high"]
    # batch_01 is a covariate shift of df_new (data/README.md): a forest of df_new keeps
    # R² 0.89 on it; the estimate is of that order, not a constant.
    assert 0.75 < metrics["estimated_r2"] < 1.0
    # Nothing measured on labels is claimed: no test-split metric of either model.
    assert not any("_test_" in name for name in metrics), sorted(metrics)
    assert "mlcycle.promotion.decision" not in tags
    assert (
        dict(registry.client().get_registered_model(NAME).aliases)
        == (unlabelled_run["aliases_before"])
    )
    page = Path(tags["mlcycle.report"])
    html = page.read_text()
    verdict = html.split('id="estimated"')[0]
    assert "Labels are not in yet: no promotion is possible" in verdict
    assert f"Champion v{unlabelled_run['version']}: estimated R²" in verdict
    assert "relationship between the features" in verdict
    history = (page.parent / "history.json").read_text()
    assert '"labels": "absent"' in history and '"decision": "no labels"' in history
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "report")}
    assert {"report/report.html", "report/evidently.html", "report/history.json"} <= artifacts


def test_the_unlabelled_page_opens_in_chromium_with_the_verdict_on_screen(unlabelled_run):
    from playwright.sync_api import sync_playwright

    page_path = Path(unlabelled_run["run"].data.tags["mlcycle.report"])
    png = unlabelled_run["folder"] / "unlabelled.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=ARGS)
        try:
            visit = Visit()
            page = open_page(browser, page_path, visit)
            headline = page.locator("#headline").inner_text()
            assert headline.startswith(f"Champion v{unlabelled_run['version']}: estimated R²")
            assert "no promotion is possible" in page.locator("#labels-verdict").inner_text()
            box = page.locator("#verdict").bounding_box()
            assert box["y"] >= 0 and box["y"] + box["height"] <= 900
            assert "estimated" in page.locator("#history-table").inner_text()
            images = page.locator("img")
            assert images.count() == 1  # the history chart
            assert images.nth(0).evaluate("i => i.complete && i.naturalWidth > 100")
            page.screenshot(path=str(png))
            assert (visit.network, visit.errors, visit.dialogs) == ([], [], [])
        finally:
            browser.close()
    assert png.stat().st_size > 20_000
