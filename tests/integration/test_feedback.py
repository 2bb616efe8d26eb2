"""The production loop's first half through the real steps (`python -m entrypoints.score`,
then the real `mlflow run . -e feedback`): `score` logs each batch to the inference log,
`feedback` joins labels that come later (a subset of two batches, with an unknown id and
a duplicate), logs realised metrics per batch, and writes rows `etl` takes as its current
file."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from entrypoints.feedback import main as feedback_command
from mlcycle import config
from mlcycle.ingest import inference
from mlcycle.monitoring.metrics import classification_metrics, regression_metrics
from mlcycle.steps import score as score_step
from tests.conftest import ROOT, assert_ok, flags, mlflow_run, run_step
from tests.integration.test_lifecycle import _champion, _etl, _forest, _runs

pytestmark = pytest.mark.integration

BATCH = ROOT / "data" / "stream" / "batch_02.csv"
NAME = config.DEFAULT_MODEL_NAME
TARGET = "montant_pret"


def test_score_twice_then_late_labels_give_exact_counts_and_realised_metrics_per_batch(
    tracking_uri, tmp_path
):
    etl_run = _etl()
    _champion(_forest(etl_run))
    batch = pd.read_csv(BATCH)
    unlabelled = tmp_path / "batch.csv"
    batch.drop(columns=[TARGET]).to_csv(unlabelled, index=False)

    # The same file scored twice: two batches, two partitions, distinct ids.
    for name in ("first", "second"):
        params = {"input": unlabelled, "output": tmp_path / f"{name}.parquet"}
        assert_ok(run_step("score", tracking_uri, *flags(params)))
    first, second = (run.info.run_id for run in _runs("score"))
    assert sorted(inference.partitions(NAME)) == sorted([first, second])
    table = inference.read_table(NAME)
    assert len(table) == 2 * len(batch) and table["prediction_id"].is_unique
    assert table["score_run"].tolist() == [first] * len(batch) + [second] * len(batch)
    one = inference.read_batch(first)
    out = pd.read_parquet(tmp_path / "first.parquet")
    assert list(out.columns) == ["prediction_id", "nom", "prenom", "row", "prediction"]
    assert out["prediction_id"].tolist() == one["prediction_id"].tolist()
    assert out["prediction_id"].tolist() == [f"{first}-{i}" for i in range(len(batch))]
    np.testing.assert_array_equal(one["prediction"], out["prediction"])
    np.testing.assert_allclose(one["age"], batch["age"])  # the features as read
    assert one["region"].tolist() == batch["region"].tolist()
    assert (one["model_version"] == "1").all() and one["scored_at"].dt.tz is not None
    tags = mlflow.get_run(first).data.tags
    assert tags["mlcycle.inference_table"] == str(inference.partition_dir(NAME, first))

    # Labels for rows 0-99 of the first batch and 200-249 of the second, an id nobody
    # scored, and row 5 given twice (a wrong value first: the last one is kept).
    ids = [f"{first}-{i}" for i in range(100)] + [f"{second}-{i}" for i in range(200, 250)]
    truth = batch[TARGET].tolist()
    values = truth[:100] + truth[200:250]
    ids += [f"{first}-99999", f"{first}-5"]
    values += [1.0, truth[5]]
    labels = tmp_path / "labels.csv"
    frame = pd.DataFrame({"prediction_id": [ids[-1], *ids], TARGET: [0.0, *values]})
    frame.to_csv(labels, index=False)
    joined = tmp_path / "labelled.csv"
    result = mlflow_run("feedback", tracking_uri, {"labels": labels, "output": joined})
    assert_ok(result)
    assert "1 label(s) name a prediction_id the inference log" in result.stderr

    (parent,) = _runs("feedback")
    metrics = parent.data.metrics
    assert metrics["labels_read"] == 153 and metrics["labels_joined"] == 150
    assert (metrics["unknown_labels"], metrics["duplicate_labels"]) == (1, 2)
    assert metrics["wrong_type_labels"] == metrics["other_model_labels"] == 0
    assert metrics["batches_touched"] == 2
    assert parent.data.tags["mlcycle.feedback.output"] == str(joined)

    children = _runs("feedback_batch")
    assert [c.data.tags["mlcycle.score_run"] for c in children] == [first, second]
    assert all(c.data.tags["mlcycle.model_version"] == "1" for c in children)
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    predicted = {
        first: pd.read_parquet(tmp_path / "first.parquet"),
        second: pd.read_parquet(tmp_path / "second.parquet"),
    }
    for child, rows in zip(children, (range(100), range(200, 250)), strict=True):
        rows = list(rows)
        run = child.data.tags["mlcycle.score_run"]
        expected = regression_metrics(
            [truth[i] for i in rows], predicted[run]["prediction"].iloc[rows]
        )
        got = child.data.metrics
        for metric, value in expected.items():
            assert got[f"realised_{metric}"] == pytest.approx(value, rel=1e-9), metric
        assert got["labelled_rows"] == len(rows)
        assert got["label_coverage"] == pytest.approx(len(rows) / len(batch))
        assert got["label_lag_seconds"] > 0
        (dataset,) = child.inputs.dataset_inputs
        assert dataset.dataset.name == f"labels-{run[:8]}"

    # The labelled rows: the original data's columns, accepted by etl as current.
    labelled = pd.read_csv(joined)
    assert list(labelled.columns) == [*batch.columns, "prediction_id"]
    assert len(labelled) == 150
    by_id = labelled.set_index("prediction_id")
    assert by_id.loc[f"{first}-5", TARGET] == truth[5]
    assert by_id.loc[f"{second}-210", "nom"] == batch["nom"][210]
    current_etl = _etl(current=str(joined))
    assert mlflow.get_run(current_etl).data.metrics["current_train_rows"] > 0


def test_a_classifier_labelled_by_identifiers_gets_realised_f1_and_auc_from_its_probabilities(
    tracking_uri, tmp_path, classification_csvs
):
    """In-process (the command above went through mlflow run): labels by customer_id,
    one of them a class the model does not know."""
    old, new = classification_csvs
    etl_run = _etl(reference=str(old), current=str(new), target="churn", drop_columns="customer_id")
    version = _forest(etl_run, model_name="churn")
    rows = pd.read_csv(new)
    unlabelled = tmp_path / "new.csv"
    rows.drop(columns=["churn"]).to_csv(unlabelled, index=False)
    output = tmp_path / "scored.parquet"
    params = score_step.ScoreParams(
        model_uri=f"models:/churn/{version}", model_name="churn", input=str(unlabelled),
        output=str(output),
    )  # fmt: skip
    with mlflow.start_run():
        score_step.execute(params)
    scored = pd.read_parquet(output)

    labels = rows[["customer_id", "churn"]].iloc[:120].copy()
    labels.loc[7, "churn"] = "maybe"
    labels.to_csv(tmp_path / "labels.csv", index=False)
    result = CliRunner().invoke(
        feedback_command,
        ["--labels", str(tmp_path / "labels.csv"), "--model-name", "churn",
         "--output", str(tmp_path / "labelled.csv")],
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)

    (parent,) = _runs("feedback")
    assert parent.data.metrics["wrong_type_labels"] == 1
    assert parent.data.metrics["labels_joined"] == 119
    assert parent.data.tags["mlcycle.feedback.key"] == "customer_id"
    (child,) = _runs("feedback_batch")
    kept = [i for i in range(120) if i != 7]
    truth = rows["churn"].iloc[kept]
    proba = scored[["proba_no", "proba_yes"]].iloc[kept].set_axis(["no", "yes"], axis=1)
    expected = classification_metrics(truth, scored["prediction"].iloc[kept], proba)
    for metric, value in expected.items():
        assert child.data.metrics[f"realised_{metric}"] == pytest.approx(value), metric
    assert child.data.metrics["label_coverage"] == pytest.approx(119 / len(rows))
