"""The real MLflow clients a user runs: `mlflow run` with uv, `mlflow run` from a git
URL served by a real git daemon, and `mlflow models serve` answering HTTP."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests

from mlcycle import config
from mlcycle.ingest.datasets import latest_etl_run
from tests.conftest import (
    BIN,
    ROOT,
    assert_ok,
    assert_raw_row_contract,
    mlflow_run,
    run_step,
    sqlite_store,
    step_env,
)

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"server exited with {proc.returncode}:\n"
                f"{proc.stdout.read() if proc.stdout else ''}"
            )
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _etl_runs():
    return mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = 'etl'",
    )


def test_mlflow_run_with_uv_builds_an_isolated_env_from_conda_yaml(tracking_uri):
    """conda.yaml -> a virtualenv made by MLflow and uv; the step runs inside it."""
    result = mlflow_run("etl", tracking_uri, env_manager="uv", timeout=1500)
    assert_ok(result)
    (run,) = _etl_runs()
    assert run.info.status == "FINISHED"
    python = run.data.tags["mlcycle.python"]
    # A virtualenv of its own (both link to the same base interpreter, so compare folders).
    assert Path(python).parent.parent != Path(sys.executable).parent.parent, python
    assert ".venv" not in python.split(os.sep), python
    # The isolated interpreter carries the pins of conda.yaml, not whatever is here.
    probe = subprocess.run(
        [
            python,
            "-c",
            "import mlflow, pandas, psycopg; "
            "print(mlflow.__version__, pandas.__version__, psycopg.__version__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.split() == ["3.17.2", "2.3.3", "3.3.9"]


@pytest.fixture
def git_daemon(tmp_path):
    """A bare clone of this repository served on loopback by a real git daemon."""
    base = tmp_path / "git"
    base.mkdir()
    bare = base / "project.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(ROOT), str(bare)], check=True)
    # A commit SHA as --version needs the server to hand out any reachable object.
    subprocess.run(
        ["git", "-C", str(bare), "config", "uploadpack.allowAnySHA1InWant", "true"], check=True
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            f"--base-path={base}",
            "--export-all",
            "--reuseaddr",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    commit = subprocess.run(
        ["git", "-C", str(bare), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    yield f"git://127.0.0.1:{port}/project.git", commit
    stop(proc)


def test_mlflow_run_from_a_git_url_at_a_commit(tracking_uri, git_daemon, tmp_path):
    url, commit = git_daemon
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = mlflow_run(
        "etl", tracking_uri, uri=url, extra_args=("--version", commit), cwd=elsewhere
    )
    assert_ok(result)
    (run,) = _etl_runs()
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.source.git.commit"] == commit
    assert run.data.tags["mlflow.source.name"] == url
    # It read the data of MLflow's own checkout, yet landed in this store.
    sources = [i.dataset.source for i in run.inputs.dataset_inputs]
    assert len(sources) == 2
    assert all("df_" in s and str(ROOT / "data") not in s for s in sources), sources

    # No MLFLOW_TRACKING_URI at all (MLflow's default, sqlite:///mlflow.db), or the same
    # relative URI exported, which MLflow hands to the step as it is: either way the run
    # lands in the folder `mlflow run` was started from, not in the temporary checkout.
    for folder, exported in (("no-uri", None), ("relative-uri", "sqlite:///mlflow.db")):
        user = tmp_path / folder
        user.mkdir()
        env = step_env(tracking_uri)
        env.pop("MLFLOW_TRACKING_URI")
        if exported:
            env["MLFLOW_TRACKING_URI"] = exported
        result = subprocess.run(
            [str(BIN / "mlflow"), "run", url, "--version", commit, "-e", "etl"]
            + ["--env-manager", "local"],
            cwd=user,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert_ok(result)
        mlflow.set_tracking_uri(f"sqlite:///{user / 'mlflow.db'}")
        (run,) = _etl_runs()
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.source.name"] == url
        artifacts = mlflow.MlflowClient().list_artifacts(run.info.run_id, "datasets")
        assert "datasets/schema.json" in {a.path for a in artifacts}, folder


# ---------------------------------------------------------------- serving
RAW_COLUMNS = [
    "age",
    "taille",
    "poids",
    "sexe",
    "sport_licence",
    "niveau_etude",
    "region",
    "smoker",
    "nationalité_francaise",
    "revenu_estime_mois",
]


@pytest.fixture(scope="module")
def served_store(tmp_path_factory):
    """A store whose champion is a forest (trained once for the module, by the real
    baseline command in this process: the servers are what is tested here)."""
    from click.testing import CliRunner

    from entrypoints.baseline import main as baseline_command

    folder = tmp_path_factory.mktemp("served")
    uri = sqlite_store(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        done = CliRunner().invoke(baseline_command, ["--n-estimators", "20"])
    assert done.exit_code == 0, (done.output, done.exception)
    return uri


def serve(
    uri: str, model_uri: str, env_manager: str = "local", timeout: float = 120
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            env_manager,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=step_env(uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/ping", proc, timeout)
    return proc, base


def raw_rows(n: int = 3) -> pd.DataFrame:
    """n raw rows as a client sends them, with holes in rows 0 and 1."""
    rows = pd.read_csv(ROOT / "data" / "df_new.csv")[RAW_COLUMNS].head(n)
    rows.loc[0, "revenu_estime_mois"] = None
    rows.loc[1, "region"] = None
    return rows


def check_server(base: str, names_column: bool = True) -> None:
    rows = raw_rows()
    split = {
        "dataframe_split": {
            "columns": list(rows.columns),
            "data": rows.astype(object).where(rows.notna(), None).values.tolist(),
        }
    }
    records = {
        "dataframe_records": rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    }
    for body in (split, records):
        answer = requests.post(f"{base}/invocations", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 3

    def post(data, content_type="application/json"):
        return requests.post(
            f"{base}/invocations", data=data, timeout=30, headers={"Content-Type": content_type}
        )

    bad = {
        "malformed JSON": post("{not json"),
        "empty body": post(""),
        "missing column": requests.post(
            f"{base}/invocations",
            timeout=30,
            json={
                "dataframe_records": [
                    {k: v for k, v in r.items() if k != "age"} for r in records["dataframe_records"]
                ]
            },
        ),
        "wrong type": requests.post(
            f"{base}/invocations",
            timeout=30,
            json={"dataframe_records": [dict(records["dataframe_records"][2], age="old")]},
        ),
    }
    record = records["dataframe_records"][2]
    for case, value in (("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e308", "1e308")):
        # Python's JSON reads Infinity; 1e308 is finite but beyond what float32 holds.
        body = json.dumps({"dataframe_records": [dict(record, age=0)]}).replace(
            '"age": 0', f'"age": {value}'
        )
        bad[case] = post(body)
    for case, answer in bad.items():
        assert 400 <= answer.status_code < 500, (case, answer.status_code, answer.text)
        assert answer.json().get("message"), case
    assert "age" in bad["missing column"].json()["message"]
    # mlcycle's models name the column; MLflow's stock sklearn flavour (forests logged by
    # earlier versions) answers its generic 400.
    for case in ("Infinity", "-Infinity", "1e308") if names_column else ():
        assert "column 'age'" in bad[case].json()["message"], (case, bad[case].text)
    # Served inputs typed strictly (docs/serving.md): true/false or a string is not a
    # number, and a number is not a category, alone in its column or beside values of the
    # right type.
    if names_column:
        other = records["dataframe_records"][1]
        for field, value in (("age", True), ("age", "34"), ("region", 7)):
            for rows in ([dict(record, **{field: value})], [other, dict(record, **{field: value})]):
                answer = post(json.dumps({"dataframe_records": rows}))
                assert answer.status_code == 400, (field, value, len(rows), answer.text)
                assert f"column {field!r}" in answer.json()["message"], answer.text
    # NaN is how JSON writers spell a missing number: answered like null.
    nan = post(json.dumps({"dataframe_records": [dict(record, age=float("nan"))]}))
    assert nan.status_code == 200 and math.isfinite(nan.json()["predictions"][0]), nan.text
    check_mlflow_server_answers(base, records["dataframe_records"][:1])
    return bad["wrong type"].json()


def check_mlflow_server_answers(base: str, records: list) -> None:
    """What MLflow's scoring server itself answers before any model code runs, as
    docs/serving.md states it (these are MLflow's, not the project's)."""
    body = json.dumps({"dataframe_records": records})
    url = f"{base}/invocations"
    # Without a Content-Type header MLflow's server fails with a 500; an empty one is a 415.
    no_type = requests.post(url, data=body, timeout=30)
    assert "Content-Type" not in no_type.request.headers
    assert no_type.status_code == 500, no_type.text
    empty = requests.post(url, data=body, timeout=30, headers={"Content-Type": ""})
    assert empty.status_code == 415, empty.text
    text = requests.post(url, data=body, timeout=30, headers={"Content-Type": "text/plain"})
    assert text.status_code == 415, text.text
    assert requests.get(url, timeout=30).status_code == 405
    # JSON nested 1,000 deep already exhausts the server's parser: MLflow answers 500.
    nested = "[" * 1000 + "]" * 1000
    deep = requests.post(url, data=nested, timeout=30, headers={"Content-Type": "application/json"})
    assert deep.status_code == 500, deep.text[:300]


def test_served_forest_champion_answers_raw_rows(served_store):
    """baseline's forest, compiled: it reads its own input, as the network does."""
    mlflow.set_tracking_uri(served_store)
    champion = mlflow.MlflowClient().get_model_version_by_alias("loan-amount", "champion")
    assert champion.tags["mlcycle.forest_engine"] == "treelite"
    proc, base = serve(served_store, "models:/loan-amount@champion")
    try:
        wrong_type = check_server(base)
    finally:
        stop(proc)
    assert "column 'age' should be numeric but holds 'old'" in wrong_type["message"]


def test_served_network_champion_answers_raw_rows(served_store):
    """The Keras network behind the same HTTP contract, as @champion of its own model."""
    # One candidate (a network from scratch on the current rows): what is served is any
    # network retrain logs, not the choice among candidates (test_retrain.py tests that).
    args = ("--model-name", "loan-nn", "--epochs", "2", "--strategy", "scratch")
    args += ("--window", "current")
    assert_ok(run_step("retrain", served_store, *args))
    mlflow.set_tracking_uri(served_store)
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("loan-nn", "challenger").version
    assert client.get_model_version("loan-nn", version).tags["mlcycle.family"] == "nn"
    client.set_registered_model_alias("loan-nn", "champion", version)
    schema = json.loads(
        mlflow.artifacts.load_text(f"runs:/{latest_etl_run()}/datasets/schema.json")
    )
    assert_raw_row_contract("models:/loan-nn@champion", schema)
    proc, base = serve(served_store, "models:/loan-nn@champion")
    try:
        wrong_type = check_server(base)
    finally:
        stop(proc)
    # The network reads its own input: the message names the column and the value.
    assert "column 'age' should be numeric but holds 'old'" in wrong_type["message"]


def test_make_serve_serves_the_champion(served_store):
    port = free_port()
    proc = subprocess.Popen(
        ["make", "serve", f"PORT={port}"],
        cwd=ROOT,
        env=step_env(served_store),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", proc)
        rows = raw_rows().head(1).astype(object)
        answer = requests.post(
            f"http://127.0.0.1:{port}/invocations",
            timeout=30,
            json={"dataframe_records": rows.where(rows.notna(), None).to_dict(orient="records")},
        )
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_git_daemon_is_available():
    """The git-URL test needs git's own daemon: a real component, installed, not mocked."""
    assert shutil.which("git")
    assert subprocess.run(["git", "daemon", "--help"], capture_output=True).returncode in (0, 1)
