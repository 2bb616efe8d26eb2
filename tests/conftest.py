"""Shared fixtures: a private tracking store per test, and ways to run the real steps."""

from __future__ import annotations

import atexit
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# Every relative output of the steps this suite runs (reports/, predictions/, .mlcycle/),
# in this process and the ones it starts, goes to a folder of the suite's own, never the
# checkout's: set before mlcycle is imported (config reads it for its STATE_DIR).
_OWN_OUTPUT_ROOT = None
if not os.environ.get("MLCYCLE_OUTPUT_ROOT"):
    _OWN_OUTPUT_ROOT = os.environ["MLCYCLE_OUTPUT_ROOT"] = tempfile.mkdtemp(prefix="mlcycle-suite-")

from mlcycle import config  # noqa: E402

ROOT = config.PROJECT_ROOT
BIN = Path(sys.executable).parent
# What the suite must leave as it found it in the checkout: a user's own work.
USERS_WORK = ("reports", "predictions", "mlflow.db", ".mlcycle")


def users_work(root: Path = ROOT) -> dict[str, tuple[int, int]]:
    """Every file of the user's work in the checkout: path -> (size, mtime in ns)."""
    found = {}
    for name in USERS_WORK:
        top = root / name
        for path in [top, *top.rglob("*")] if top.is_dir() else [top]:
            if path.is_file():
                stat = path.stat()
                found[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return found


# Seconds a file takes on one of two busy workers (`make test --durations`, rounded; the
# files trimmed of repeated process start-ups scaled by their measured CPU, after/before): the
# order `make test` hands files to its workers, longest first. xdist's own order (most tests
# first) left the few-test files of many `mlflow run`s (replay, main, team) to the end, and
# one worker ran them alone for minutes. A file not listed counts by its folder; the
# figures only order the files, a wrong one costs time, never a test.
FILE_SECONDS = {
    "tests/integration/test_replay.py": 190,
    "tests/integration/test_score_spark.py": 105,
    "tests/integration/test_team.py": 90,
    "tests/integration/test_main.py": 80,
    "tests/integration/test_monitor.py": 70,
    "tests/integration/test_signals.py": 65,
    "tests/integration/test_hostile_files.py": 65,
    "tests/integration/test_etl_baseline.py": 55,
    "tests/integration/test_clients.py": 55,
    "tests/integration/test_blend.py": 45,
    "tests/integration/test_lifecycle.py": 40,
    "tests/integration/test_optimize.py": 40,
    "tests/integration/test_retrain.py": 40,
    "tests/unit/models/test_candidates.py": 35,
    "tests/integration/test_watch.py": 30,
    "tests/integration/test_served_forest.py": 30,
    "tests/integration/test_uis.py": 30,
}
FOLDER_SECONDS = {"integration": 15, "unit": 1}


def file_seconds(path: str) -> int:
    """The measured seconds of a test file (FILE_SECONDS), else its folder's guess."""
    if path in FILE_SECONDS:
        return FILE_SECONDS[path]
    return next((s for folder, s in FOLDER_SECONDS.items() if f"/{folder}/" in path), 1)


def pytest_collection_modifyitems(items):
    """Longest files first, each file's tests kept together and in their order: with
    `--dist loadfile --no-loadscope-reorder` the two workers then end close together."""
    items.sort(key=lambda item: -file_seconds(item.nodeid.split("::", 1)[0]))


@pytest.fixture(scope="session", autouse=True)
def _the_checkout_is_left_alone():
    """Fails the session (an error at its last teardown) when a test wrote, changed or
    removed anything of the checkout's reports/, predictions/, mlflow.db or .mlcycle/:
    after `make run` then `make test`, latest.html was once a test's page."""
    before = users_work()
    yield
    if _OWN_OUTPUT_ROOT:
        shutil.rmtree(_OWN_OUTPUT_ROOT, ignore_errors=True)
    after = users_work()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the suite changed the checkout's {', '.join(changed[:20])}"


_MIGRATED: list[Path] = []  # this process's migrated empty store, made once


def sqlite_store(folder: Path) -> str:
    """A new SQLite store whose artifacts stay in folder too. Left to itself, the first
    process to open the store puts them under ./mlruns of its working directory: the
    project folder, mixing every test's models with the user's own.

    Each is a copy of one empty store this process created once (MLflow's migrations take
    2-4 s a store, and a test run makes a hundred), its default experiment's artifact
    location moved to folder: the same empty store MLflow would have made there."""
    folder.mkdir(parents=True, exist_ok=True)
    db, artifacts = folder / "mlflow.db", (folder / "artifacts").as_uri()
    if not _MIGRATED:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        empty = Path(tempfile.mkdtemp(prefix="mlcycle-empty-store-"))
        atexit.register(shutil.rmtree, empty, True)
        store = SqlAlchemyStore(f"sqlite:///{empty / 'mlflow.db'}", artifacts)
        store.engine.dispose()
        _MIGRATED.append(empty / "mlflow.db")
    source, copy = sqlite3.connect(_MIGRATED[0]), sqlite3.connect(db)
    try:
        source.backup(copy)
        (default,) = copy.execute("SELECT experiment_id FROM experiments").fetchone()
        with copy:
            copy.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                (f"{artifacts}/{default}", default),
            )
    finally:
        source.close()
        copy.close()
    return f"sqlite:///{db}"


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh SQLite store for this test, for this process and the ones it starts; the
    inference log beside it (never the checkout's .mlcycle/)."""
    uri = sqlite_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLCYCLE_INFERENCE_DIR", str(tmp_path / "inference"))
    import mlflow

    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture(scope="module")
def module_tracking_uri(tmp_path_factory) -> str:
    """One SQLite store shared by a module's tests; each test uses names of its own."""
    import mlflow

    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("store")
        uri = sqlite_store(folder)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLCYCLE_INFERENCE_DIR", str(folder / "inference"))
        mlflow.set_tracking_uri(uri)
        yield uri
        mlflow.set_tracking_uri(None)


def step_env(tracking_uri: str, **extra) -> dict:
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=tracking_uri,
        PATH=f"{BIN}:{os.environ['PATH']}",
        TF_CPP_MIN_LOG_LEVEL="2",
        **extra,
    )
    env.pop("MLFLOW_RUN_ID", None)
    return env


def mlflow_run(
    entry: str,
    tracking_uri: str,
    params: dict | None = None,
    *,
    uri: str = ".",
    env_manager: str = "local",
    extra_args: tuple = (),
    timeout: int = 900,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess:
    """The real `mlflow run` command, as a user types it."""
    cmd = [str(BIN / "mlflow"), "run", uri, "-e", entry, "--env-manager", env_manager, *extra_args]
    for key, value in (params or {}).items():
        cmd += ["-P", f"{key}={value}"]
    return subprocess.run(
        cmd, cwd=cwd, env=step_env(tracking_uri), capture_output=True, text=True, timeout=timeout
    )


def run_step(module: str, tracking_uri: str, *args: str, timeout: int = 600):
    """An entry point script run directly, as `python -m entrypoints.X --flag value`."""
    return subprocess.run(
        [sys.executable, "-m", f"entrypoints.{module}", *args],
        cwd=ROOT,
        env=step_env(tracking_uri),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def flags(params: dict) -> list[str]:
    """An MLproject entry's parameters as its command's flags: `{"model_name": "x"}` ->
    `["--model-name", "x"]`: every entry in MLproject passes `{name}` as `--name-with-dashes`
    (tests/unit/test_project.py holds it to that), and the flags' defaults are MLproject's."""
    out: list[str] = []
    for key, value in params.items():
        out += [f"--{key.replace('_', '-')}", str(value)]
    return out


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def assert_raw_row_contract(model_uri: str, schema: dict) -> None:
    """The logged model declares raw rows (the features, no target, no identifiers) and
    carries an input example of such rows that it predicts."""
    import mlflow

    info = mlflow.models.get_model_info(model_uri)
    features = schema["numeric"] + schema["categorical"]
    assert sorted(info.signature.inputs.input_names()) == sorted(features)
    assert schema["target"] not in info.signature.inputs.input_names()
    assert not {"nom", "prenom"} & set(info.signature.inputs.input_names())
    example = mlflow.models.Model.load(model_uri).load_input_example(
        mlflow.artifacts.download_artifacts(model_uri)
    )
    assert list(example.columns) == features and len(example) >= 1
    assert len(mlflow.pyfunc.load_model(model_uri).predict(example)) == len(example)


def make_classification_csv(path: Path, rows: int = 300, seed: int = 0, shift: float = 0.0) -> Path:
    """A small churn-like CSV: numbers and text, holes in both, a text target."""
    rng = np.random.default_rng(seed)
    tenure = rng.normal(24 + shift * 10, 10, rows).round(1)
    spend = rng.normal(60 - shift * 5, 20, rows).round(2)
    plan = rng.choice(["basic", "plus", "pro"], rows)
    support = rng.poisson(2 + shift, rows).astype(float)
    score = -0.08 * tenure + 0.03 * spend + 0.5 * support + (plan == "basic") * 1.0
    churn = np.where(score + rng.normal(0, 0.8, rows) > np.median(score), "yes", "no")
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{seed}-{i}" for i in range(rows)],
            "tenure": tenure,
            "spend": spend,
            "plan": plan,
            "support_calls": support,
            "churn": churn,
        }
    )
    frame.loc[rng.random(rows) < 0.05, "spend"] = np.nan
    frame.loc[rng.random(rows) < 0.05, "plan"] = None
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def classification_csvs(tmp_path) -> tuple[Path, Path]:
    return (
        make_classification_csv(tmp_path / "old.csv", seed=1),
        make_classification_csv(tmp_path / "new.csv", seed=2, shift=1.0),
    )
