"""`score` with engine=spark: a real standalone cluster (one master, two workers of one
core, started from PySpark's own launcher on loopback, shared by the module) and
`local[*]`; the output, sorted by `row`, equals the pandas engine's for the forest and
the network (regression) and for a classifier's labels and probabilities; mistakes are
one line.

Kept cheap, since every Spark start costs a JVM and Python workers on 2 cores: the
models are fitted directly (a forest of 5 trees, a network of one epoch), not by the
steps that train them; each test starts Spark once; the input is cut into 3 partitions,
still with files read as several splits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyspark
import pytest
from click.testing import CliRunner

from entrypoints.score import main as score_command
from mlcycle import config
from mlcycle.ingest import inference
from mlcycle.ingest.datasets import load_splits
from mlcycle.models.families import nn
from mlcycle.models.families.rf import ForestParams
from mlcycle.models.families.rf import fit as fit_forest
from mlcycle.models.network import NetworkParams
from mlcycle.models.served_forest import log_forest
from mlcycle.steps import score as score_step
from tests.conftest import ROOT, assert_ok, make_classification_csv, mlflow_run, run_step
from tests.integration.test_lifecycle import _champion, _etl

pytestmark = pytest.mark.integration

NAME = config.DEFAULT_MODEL_NAME
CHURN = "churn-model"
BATCH = ROOT / "data" / "stream" / "batch_02.csv"
# Splits of 16 kB: the batch's parts (7, 18 and 19 kB) are read as 5 splits, two files
# cut in two, packed into 3 partitions: the row positions must survive that. Few
# partitions keep the tasks (and Python workers' calls) few.
SMALL_SPLITS = (
    "--conf spark.sql.files.maxPartitionBytes=16k --conf spark.sql.files.openCostInBytes=0 "
    "--conf spark.sql.shuffle.partitions=2 pyspark-shell"
)


@pytest.fixture(scope="module", autouse=True)
def _short_lived_jvms():
    """Every JVM here (daemons, drivers, executors) lives a minute on a few kB: the
    client compiler alone and one GC thread spare the 2 cores the optimizing compiler's
    and parallel GC's threads would take from the Python workers."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAVA_TOOL_OPTIONS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        yield


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as reply:
            return int(json.load(reply).get("aliveworkers", 0))
    except OSError:
        return 0


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory):
    """spark://127.0.0.1:PORT with two workers of one core each; stopped afterwards."""
    folder = tmp_path_factory.mktemp("spark-cluster")
    spark_class = str(Path(pyspark.__file__).parent / "bin" / "spark-class")
    env = dict(
        os.environ,
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOG_DIR=str(folder),
        SPARK_WORKER_DIR=str(folder / "work"),
        SPARK_NO_DAEMONIZE="1",
    )
    port, ui_port = _free_port(), _free_port()
    master = f"spark://127.0.0.1:{port}"
    commands = [
        ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
         "--webui-port", str(ui_port)],
    ] + [
        ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
         "--memory", "2g", "--webui-port", str(_free_port()), "--work-dir",
         str(folder / f"work{i}"), master]
        for i in range(2)
    ]  # fmt: skip
    processes = []
    try:
        for i, command in enumerate(commands):
            with open(folder / f"daemon{i}.log", "wb") as out:
                processes.append(
                    subprocess.Popen(
                        [spark_class, *command], env=env, stdout=out, stderr=subprocess.STDOUT
                    )
                )
        deadline = time.monotonic() + 120
        while _alive_workers(ui_port) < 2:
            assert time.monotonic() < deadline, (folder / "daemon0.log").read_text()[-2000:]
            assert all(p.poll() is None for p in processes), "a Spark daemon exited"
            time.sleep(1)
        yield master
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _forest(etl_run: str, model_name: str) -> str:
    """A served forest of 5 trees, registered as baseline registers it."""
    schema, splits = load_splits(etl_run)
    pipeline = fit_forest(schema, ForestParams(n_estimators=5, n_jobs=1), splits.reference_train)
    with mlflow.start_run(run_name="forest"):
        info = log_forest(
            pipeline, schema, splits.reference_train, model_name,
            version_tags={"mlcycle.etl_run": etl_run},
        )  # fmt: skip
    return str(info.registered_model_version)


def _network(etl_run: str, model_name: str) -> str:
    """A network of one small layer and one epoch, logged and registered as retrain does
    (its quality is not the point: its answers on Spark against the pandas engine's are)."""
    schema, splits = load_splits(etl_run)
    params = NetworkParams(hidden_units=(8,), epochs=1, patience=0, validation_share=0.0)
    model = nn.fit(schema, params, splits.reference_train)
    with mlflow.start_run(run_name="network"):
        info = nn.log(
            model, schema, splits.reference_train, model_name,
            version_tags={"mlcycle.etl_run": etl_run},
        )  # fmt: skip
    return str(info.registered_model_version)


@pytest.fixture(scope="module")
def models(module_tracking_uri, tmp_path_factory):
    """A forest (champion) and a network on the loan data; a forest on a churn-like CSV."""
    folder = tmp_path_factory.mktemp("churn")
    old = make_classification_csv(folder / "old.csv", rows=300, seed=1)
    new = make_classification_csv(folder / "new.csv", rows=300, seed=2, shift=1.0)
    loan_etl = _etl()
    forest = _forest(loan_etl, NAME)
    _champion(forest)
    churn_etl = _etl(
        reference=str(old), current=str(new), target="churn", drop_columns="customer_id"
    )
    return {
        "tracking_uri": module_tracking_uri,
        "loan_etl": loan_etl,
        "forest": forest,
        "churn_forest": _forest(churn_etl, CHURN),
        "churn_csv": new,
    }


def _parts(csv: Path, folder: Path, sizes=(100, 250)) -> Path:
    """The file cut into part files read in name order (unequal, so Spark, which packs
    splits by size, does not read them in that order)."""
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    folder.mkdir()
    bounds = [0, *np.cumsum(sizes), len(frame)]
    for i, (start, stop) in enumerate(zip(bounds, bounds[1:], strict=False)):
        frame.iloc[start:stop].to_csv(folder / f"part-{i:05d}.csv", index=False)
    return folder


def _pandas(model_uri: str, csv: Path, output: Path) -> pd.DataFrame:
    params = score_step.ScoreParams(model_uri=model_uri, input=str(csv), output=str(output))
    with mlflow.start_run():
        score_step.execute(params)
    return pd.read_parquet(output)


def _assert_same(spark_out: Path, expected: pd.DataFrame, classification: bool) -> None:
    """Sorted by row, the Spark output is the pandas one: labels equal, values to 1e-9."""
    got = pd.read_parquet(spark_out).sort_values("row").reset_index(drop=True)
    assert list(got.columns) == list(expected.columns)
    assert got["row"].tolist() == list(range(len(expected)))
    for col in expected.columns:
        if col == "prediction_id":  # <score run>-<row>: the runs differ, the rows agree
            run = got[col].iloc[0].rsplit("-", 1)[0]
            assert got[col].tolist() == [f"{run}-{r}" for r in got["row"]]
        elif col == "prediction" and not classification or col.startswith("proba_"):
            np.testing.assert_allclose(got[col], expected[col], rtol=1e-9, atol=1e-12)
        else:
            assert got[col].tolist() == expected[col].tolist(), col


def _score_run(step: str = "score"):
    return mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = '{step}'",
        order_by=["attributes.start_time DESC"],
    )[0]


def test_the_cluster_scores_a_folder_of_parts_as_the_pandas_engine_scores_the_file(
    models, spark_cluster, tmp_path, monkeypatch
):
    """The forest, the champion by default, through the real `mlflow run`."""
    uri = models["tracking_uri"]
    parts = _parts(BATCH, tmp_path / "batch")
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", SMALL_SPLITS)
    expected = _pandas(f"models:/{NAME}/{models['forest']}", BATCH, tmp_path / "pandas.parquet")
    output = tmp_path / "forest.parquet"
    result = mlflow_run(
        "score", uri,
        {"input": str(parts), "output": str(output), "engine": "spark",
         "spark_master": spark_cluster},
    )  # fmt: skip
    assert_ok(result)
    assert len(list(output.glob("part-*.parquet"))) >= 3  # several splits, several tasks
    _assert_same(output, expected, classification=False)
    run = _score_run()
    tags, metrics = run.data.tags, run.data.metrics
    assert (tags["mlcycle.engine"], tags["mlcycle.spark_master"]) == ("spark", spark_cluster)
    assert tags["mlcycle.model_version"] == models["forest"]
    assert metrics["input_rows"] == metrics["output_rows"] == len(expected) == 610
    assert metrics["prediction_mean"] == pytest.approx(expected["prediction"].mean(), rel=1e-9)
    assert metrics["prediction_std"] == pytest.approx(expected["prediction"].std(ddof=0))
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "batch" and str(parts) in dataset.dataset.source
    # The batch in the inference log, as the pandas engine logs it (read back by pyarrow).
    logged = inference.read_batch(run.info.run_id).sort_values("row", ignore_index=True)
    assert tags["mlcycle.inference_table"] == str(inference.partition_dir(NAME, run.info.run_id))
    got = pd.read_parquet(output).sort_values("row", ignore_index=True)
    assert logged["prediction_id"].tolist() == got["prediction_id"].tolist()
    assert logged["prediction_id"].iloc[0] == f"{run.info.run_id}-0"
    np.testing.assert_allclose(logged["prediction"], expected["prediction"], rtol=1e-9)
    np.testing.assert_allclose(logged["age"], pd.read_csv(BATCH)["age"])
    assert str(logged["scored_at"].dtype) == "datetime64[us, UTC]"
    assert (logged["model_version"] == models["forest"]).all()


def test_the_cluster_scores_the_network_through_the_entry_point(
    models, spark_cluster, tmp_path, monkeypatch
):
    """The network's code travels with the model to the workers, which run only the
    environment PYSPARK_PYTHON names (the project is not on their path)."""
    parts = _parts(BATCH, tmp_path / "batch")
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", SMALL_SPLITS)
    network = f"models:/{NAME}/{_network(models['loan_etl'], NAME)}"
    expected = _pandas(network, BATCH, tmp_path / "pandas-network.parquet")
    output = tmp_path / "network.parquet"
    result = run_step(
        "score", models["tracking_uri"], "--model-uri", network, "--input", str(parts),
        "--output", str(output), "--engine", "spark", "--spark-master", spark_cluster,
    )  # fmt: skip
    assert_ok(result)
    _assert_same(output, expected, classification=False)
    assert _score_run().data.tags["mlcycle.spark_master"] == spark_cluster


def test_a_classifier_gives_labels_and_probabilities_on_local_spark(models, tmp_path, monkeypatch):
    """local[*] in this process, a Parquet input of several row groups: labels and
    probabilities as the pandas engine's, and their summary in the run."""
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", SMALL_SPLITS)
    csv = models["churn_csv"]
    parquet = tmp_path / "churn.parquet"
    frame = pd.read_csv(csv, dtype={"customer_id": str, "plan": str})
    frame.to_parquet(parquet, row_group_size=100)
    model_uri = f"models:/{CHURN}/{models['churn_forest']}"
    expected = _pandas(model_uri, csv, tmp_path / "pandas.parquet")
    assert list(expected.columns) == [
        "prediction_id",
        "customer_id",
        "row",
        "prediction",
        "proba_no",
        "proba_yes",
    ]
    assert 0 < (expected["prediction"] == "yes").mean() < 1
    output = tmp_path / "spark.parquet"
    params = score_step.ScoreParams(
        model_uri=model_uri, input=str(parquet), output=str(output), engine="spark"
    )
    with mlflow.start_run() as run:
        scored = score_step.execute(params)
    assert scored.rows == scored.input_rows == len(expected)
    _assert_same(output, expected, classification=True)
    metrics = mlflow.get_run(run.info.run_id).data.metrics
    share = (expected["prediction"] == "yes").mean()
    assert metrics["prediction_share.yes"] == pytest.approx(share)
    assert metrics["proba_mean.no"] == pytest.approx(expected["proba_no"].mean())


def test_a_french_export_in_parts_with_placeholders_reads_on_local_spark_as_on_pandas(
    models, tmp_path, monkeypatch
):
    """cp1252, `;`, decimal commas, and etl's placeholders and infinities in a number
    column: missing values on both engines, counted alike in the run, the same
    predictions. On Spark the file is a folder of parts whose first part shows no decimal
    mark in poids (whole numbers): the later parts' decimal commas are read as such."""
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", SMALL_SPLITS)
    batch = pd.read_csv(BATCH, dtype=str, keep_default_na=False)
    batch.loc[:99, "poids"] = batch.loc[:99, "poids"].str.split(".").str[0]
    for i, value in enumerate(["NA", "n/a", "?", "#N/A", "inf", "-Infinity", "1e999"]):
        batch.loc[5 + 80 * i, "poids"] = value
    batch["poids"] = batch["poids"].str.replace(".", ",", regex=False)
    path = tmp_path / "lot.csv"
    batch.to_csv(path, sep=";", index=False, encoding="cp1252")
    parts = tmp_path / "lot"
    parts.mkdir()
    for i, (start, stop) in enumerate([(0, 100), (100, 350), (350, len(batch))]):
        part = parts / f"part-{i}.csv"
        batch.iloc[start:stop].to_csv(part, sep=";", index=False, encoding="cp1252")
    model_uri = f"models:/{NAME}/{models['forest']}"
    pandas_out = tmp_path / "pandas.parquet"
    with mlflow.start_run() as pandas_run:
        score_step.execute(
            score_step.ScoreParams(model_uri=model_uri, input=str(path), output=str(pandas_out))
        )
    expected = pd.read_parquet(pandas_out)
    counted = mlflow.get_run(pandas_run.info.run_id).data.metrics
    output = tmp_path / "spark.parquet"
    params = score_step.ScoreParams(
        model_uri=model_uri, input=str(parts), output=str(output), engine="spark"
    )
    with mlflow.start_run() as run:
        score_step.execute(params)
    _assert_same(output, expected, classification=False)
    assert (
        pd.read_parquet(output).sort_values("row")["nom"].tolist()[:3] == batch["nom"][:3].tolist()
    )
    metrics = mlflow.get_run(run.info.run_id).data.metrics
    for kind, count in (("placeholders", 4), ("infinite", 3)):
        key = f"input_{kind}_as_missing"
        assert metrics[key] == counted[key] == count, key


def test_spark_mistakes_are_one_line(models, tmp_path):
    def invoke(*args):
        return CliRunner().invoke(score_command, ["--engine", "spark", *map(str, args)])

    # A master nobody listens on: refused at once, not after Spark's minute of retries.
    started = time.monotonic()
    result = invoke("--input", BATCH, "--spark-master", f"spark://127.0.0.1:{_free_port()}")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("mlcycle error: parameter spark_master spark://127.0.0.1:")
    assert "no Spark master answers" in result.output
    assert time.monotonic() - started < 30

    result = invoke("--input", BATCH, "--spark-master", "spark:/host")
    assert result.exit_code == 2 and result.output == (
        "mlcycle error: parameter spark_master must be local[*], local[N], spark://HOST:PORT, "
        "yarn or k8s://URL, got 'spark:/host'\n"
    )

    # Columns the model needs, missing from a part: named before Spark starts.
    folder = tmp_path / "parts"
    folder.mkdir()
    pd.read_csv(BATCH).drop(columns=["age", "region"]).to_csv(folder / "a.csv", index=False)
    result = invoke("--input", folder, "--output", tmp_path / "out.parquet")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "lacks column(s) the model reads: age, region" in result.output
    assert not (tmp_path / "out.parquet").exists()

    # A missing input: said so (it was an IndexError).
    result = invoke("--input", tmp_path / "nope.csv", "--output", tmp_path / "out.parquet")
    assert result.output == f"mlcycle error: input file not found: {tmp_path / 'nope.csv'}\n"


def test_java_missing_is_said_with_how_to_install_it(monkeypatch, tmp_path):
    from mlcycle.errors import MlcycleError
    from mlcycle.scaleout import spark_session

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MlcycleError, match="no java on PATH.*openjdk-17-jre-headless"):
        spark_session.java_command()
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(MlcycleError, match="has no bin/java"):
        spark_session.java_command()
