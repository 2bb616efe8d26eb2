"""Shared fixtures: a private tracking store per test, and ways to run the real steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcycle import config

ROOT = config.PROJECT_ROOT
BIN = Path(sys.executable).parent


def sqlite_store(folder: Path) -> str:
    """A new SQLite store whose artifacts stay in folder too. Left to itself, the first
    process to open the store puts them under ./mlruns of its working directory: the
    project folder, mixing every test's models with the user's own."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    SqlAlchemyStore(uri, (folder / "artifacts").as_uri())
    return uri


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
    """One SQLite store shared by a module's tests (creating one costs ~10 s here); each
    test uses names of its own."""
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
