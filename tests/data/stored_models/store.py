"""Writes the stored models of tests/unit/test_stored_models.py: a forest (regression)
and a network (classification), each logged by its family's own `log` with the code of
the commit that added them, and what they answered then (`<name>.json`).

Run from the project root: `python -m tests.data.stored_models.store`. Running it again
replaces the record with the current code's, which is not what the test is for: do it
only when a stored model's format is meant to change."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from tests.unit.networks import BIN, REG, TINY, labelled, rows

HERE = Path(__file__).resolve().parent
TRAINING_ROWS = 40


def probe_rows(frame: pd.DataFrame, schema) -> pd.DataFrame:
    """A dozen raw rows with missing numbers, missing and unseen categories."""
    probe = frame[schema.features].head(12).copy()
    probe.loc[3, "c"] = "never seen"
    probe.loc[5, ["x", "z", "c"]] = None
    return probe


def answers(model_dir: Path, probe: pd.DataFrame, task: str) -> dict:
    import mlflow

    model = mlflow.pyfunc.load_model(str(model_dir))
    out = {"predict": np.asarray(model.predict(probe)).tolist()}
    if task == "classification":
        proba = model.predict(probe, params={"predict_method": "predict_proba"})
        out["predict_proba"] = np.asarray(proba, dtype="float64").tolist()
    return out


def store(name: str, family, model, schema, train: pd.DataFrame) -> None:
    import mlflow

    out = HERE / name
    shutil.rmtree(out, ignore_errors=True)
    with mlflow.start_run():
        info = family.log(model, schema, train, None)
    mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(out))
    # The copy of the package that travels with a model is left out: a fresh process (the
    # scoring server) imports that copy; a process that has imported mlcycle (retrain,
    # monitor, score, this test) answers with the project's own modules: what is tested.
    shutil.rmtree(out / "code", ignore_errors=True)
    # MLflow's copies of the project's uv.lock and pyproject.toml (environment files, not
    # read on load): 0.7 MB, and a pyproject.toml here would reconfigure ruff.
    for extra in ("uv.lock", "pyproject.toml"):
        (out / extra).unlink(missing_ok=True)
    stored = json.loads(probe_rows(train, schema).to_json(orient="split", index=False))
    # Answered on the rows as read back from the JSON (its numbers are rounded), as the
    # test reads them.
    record = {"rows": stored, **answers(out, read_rows(stored), schema.task)}
    (HERE / f"{name}.json").write_text(json.dumps(record) + "\n")


def read_rows(stored: dict) -> pd.DataFrame:
    return pd.DataFrame(stored["data"], columns=stored["columns"])


def main() -> None:
    import mlflow

    from mlcycle.models.families import get
    from mlcycle.models.families.rf import ForestParams
    from tests.conftest import sqlite_store

    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(sqlite_store(Path(tmp)))
        rf, nn = get("rf"), get("nn")
        train = rows(TRAINING_ROWS, seed=4)
        forest = rf.fit(REG, ForestParams(n_estimators=3, max_depth=4, seed=1), train)
        store("forest", rf, forest, REG, train)
        train = labelled(BIN, TRAINING_ROWS, seed=4)
        store("network", nn, nn.fit(BIN, TINY, train), BIN, train)


if __name__ == "__main__":
    main()
