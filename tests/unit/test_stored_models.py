"""Models logged by an earlier layout of the package still load and answer the same: the
forest and the network under tests/data/stored_models were logged by the code of the
commit that added them (tests/data/stored_models/store.py), their answers stored beside
them. Their models-from-code files name `mlcycle.served_forest` and `mlcycle.network`
(re-exported there since the package was grouped into wings)."""

import inspect
import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

import mlcycle
from tests.data.stored_models.store import HERE, read_rows

PACKAGE = Path(mlcycle.__file__).resolve().parent


def stored(name: str):
    record = json.loads((HERE / f"{name}.json").read_text())
    return mlflow.pyfunc.load_model(str(HERE / name)), read_rows(record["rows"]), record


@pytest.mark.parametrize("name", ["forest", "network"])
def test_a_stored_model_loads_with_the_current_package(name):
    model, _, _ = stored(name)
    inner = type(model.unwrap_python_model())
    # Answered by this checkout's modules, not a copy travelling with the model.
    assert Path(inspect.getfile(inner)).resolve().is_relative_to(PACKAGE)


def test_the_stored_forest_predicts_what_it_predicted_when_logged():
    model, rows, record = stored("forest")
    assert np.asarray(model.predict(rows)).tolist() == record["predict"]


def test_the_stored_network_predicts_labels_and_probabilities_as_when_logged():
    model, rows, record = stored("network")
    assert np.asarray(model.predict(rows)).tolist() == record["predict"]
    proba = model.predict(rows, params={"predict_method": "predict_proba"})
    assert list(proba.columns) == ["no", "yes"]
    # Keras' float32 forward: another CPU's kernels (these answers were stored on an AMD
    # EPYC, this suite also runs on Intel Xeons) round differently in the last bits.
    np.testing.assert_allclose(
        np.asarray(proba, dtype="float64"), record["predict_proba"], rtol=1e-6, atol=0
    )
