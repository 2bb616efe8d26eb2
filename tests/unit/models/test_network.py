"""The served network: its hyper-parameters as saved, preprocessing, predictions, and
save/load (the format logged models already in a registry are read with)."""

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.models.features import build_preprocessor
from mlcycle.models.network import NetworkModel, NetworkParams
from mlcycle.models.serving import Preprocessing
from mlcycle.models.training import fit_network
from mlcycle.monitoring.evaluate import predict_proba
from tests.conftest import ROOT
from tests.unit.networks import BIN, MULTI, REG, TINY, labelled, rows

# ---------------------------------------------------------------- NetworkParams


def test_params_defaults_are_the_documented_ones_and_frozen():
    p = NetworkParams()
    assert (
        p.hidden_units,
        p.dropout,
        p.learning_rate,
        p.batch_size,
        p.epochs,
        p.patience,
        p.seed,
        p.validation_share,
    ) == ((64, 32), 0.0, 1e-3, 32, 60, 10, 42, 0.15)
    with pytest.raises(AttributeError):
        p.epochs = 1  # type: ignore[misc]


def test_params_round_trip_through_json_types():
    p = NetworkParams(hidden_units=(16, 8, 4), dropout=0.2, learning_rate=0.01, epochs=5)
    assert NetworkParams.from_dict(p.to_dict()) == p
    assert p.to_dict()["hidden_units"] == [16, 8, 4]


def test_from_dict_is_tolerant_of_strings_and_extra_keys():
    p = NetworkParams.from_dict(
        {
            "hidden_units": "[32, 16]",
            "epochs": "60.0",
            "dropout": "0.1",
            "batch_size": 64.0,
            "family": "nn",
            "learning_rate": "",
            "patience": "0",
        }
    )
    assert p == NetworkParams(
        hidden_units=(32, 16), epochs=60, dropout=0.1, batch_size=64, patience=0
    )
    assert NetworkParams.from_dict({"hidden_units": "64,32"}).hidden_units == (64, 32)
    assert NetworkParams(hidden_units=[10]).hidden_units == (10,)
    with pytest.raises(MlcycleError, match="epochs"):
        NetworkParams.from_dict({"epochs": "2.5"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "parameter epochs must be >= 1, got 0"),
        ({"batch_size": 0}, "parameter batch_size must be >= 1"),
        ({"learning_rate": 0.0}, "parameter learning_rate must be > 0"),
        ({"dropout": 1.0}, "parameter dropout must be in [0, 1)"),
        ({"patience": -1}, "parameter patience must be >= 0"),
        ({"hidden_units": ()}, "parameter hidden_units"),
        ({"validation_share": 0.0}, "patience needs a validation slice"),
    ],
)
def test_bad_params_are_refused_with_the_name(change, message):
    with pytest.raises(MlcycleError) as err:
        NetworkParams(**change).validate()
    assert message in str(err.value)


# ---------------------------------------------------------------- preprocessing


def test_preprocessing_matches_the_forest_preprocessor():
    train, test = rows(120, seed=1), rows(40, seed=2)
    test.loc[0, "c"] = "never seen"
    expected = build_preprocessor(REG).fit(train[REG.features]).transform(test[REG.features])
    got = Preprocessing.fit(REG, train).transform(test[REG.features])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_preprocessing_takes_holes_missing_columns_and_refuses_text_numbers():
    pre = Preprocessing.fit(REG, rows())
    one = pd.DataFrame({"x": [None], "c": [np.nan]})  # z absent altogether
    out = pre.transform(one)
    assert out.shape == (1, pre.width) and np.isfinite(out).all()
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    with pytest.raises(ValueError, match="column 'x' should be numeric but holds 'abc'"):
        pre.transform(pd.DataFrame({"x": ["abc"], "z": [1.0], "c": ["a"]}))


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
@pytest.mark.parametrize("schema", [BIN, MULTI], ids=["binary", "multiclass"])
def test_classification_predicts_labels_and_probabilities(schema, bin_model):
    train = labelled(schema)
    model = bin_model if schema is BIN else fit_network(schema, TINY, train)[0]
    labels = model.predict(train)
    assert set(labels) <= set(schema.classes)
    proba = model.predict_proba(train)
    assert proba.shape == (len(train), len(schema.classes))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    # mlcycle.monitoring.evaluate reads classes_ to name the columns.
    assert list(predict_proba(model, train, schema.classes).columns) == schema.classes
    assert (np.asarray(schema.classes)[proba.argmax(axis=1)] == labels).all()


def test_save_and_load_give_the_same_predictions(tmp_path, bin_model):
    model = bin_model
    loaded = NetworkModel.load(model.save(tmp_path / "net"))
    frame = labelled(BIN, 10, seed=5)
    np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame), rtol=1e-6)
    assert loaded.params == model.params and loaded.classes_ == ["no", "yes"]


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
@pytest.mark.parametrize(
    ("schema", "params"),
    [
        (REG, NetworkParams(hidden_units=(8, 4), epochs=2, patience=0, dropout=0.3, seed=1)),
        (BIN, TINY),
        (MULTI, TINY),
    ],
    ids=["regression-dropout", "binary-sigmoid", "multiclass-softmax"],
)
def test_a_loaded_network_predicts_in_numpy_as_keras_does(tmp_path, schema, params):
    model = fit_network(schema, params, labelled(schema) if schema.classes else rows())[0]
    loaded = NetworkModel.load(model.save(tmp_path / "net"))
    frame = rows(200, seed=9)
    assert loaded._stack is not None and loaded._network is None
    keras_output = np.asarray(model.network(model.preprocessing.transform(frame), training=False))
    np.testing.assert_allclose(loaded.raw_output(frame), keras_output, rtol=2e-6, atol=1e-6)
    # In training too the stack answers (the network's weights now): to the bit.
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    assert loaded.raw_output(frame.head(0)).shape == (0, model.network.output_shape[-1])
    # A row's answer does not depend on its batch (a pandas chunk, a Spark partition).
    many = rows(5000, seed=3)
    alone = np.vstack([loaded.raw_output(many.iloc[[i]]) for i in range(0, 5000, 125)])
    np.testing.assert_allclose(alone, loaded.raw_output(many)[::125], rtol=1e-12)
    # Fine-tuning reads the Keras model on need: the same weights.
    for ours, theirs in zip(loaded.network.get_weights(), model.network.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_loading_and_predicting_a_network_imports_no_tensorflow(tmp_path, bin_model):
    folder = bin_model.save(tmp_path / "net")
    code = (
        "import sys; from mlcycle.models.network import NetworkModel; "
        "from tests.unit.networks import BIN, labelled; "
        f"m = NetworkModel.load({str(folder)!r}); p = m.predict_proba(labelled(BIN, 5)); "
        "print(p.shape, 'tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["(5,", "2)", "False", "False"]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (float("inf"), "column 'age' holds inf: numbers must be finite"),
        (float("-inf"), "column 'age' holds -inf: numbers must be finite"),
        (1e308, "column 'age' holds 1e+308, out of the range"),
    ],
)
def test_a_non_finite_or_out_of_range_number_is_bad_input_naming_the_column(value, fragment):
    from mlcycle.ingest.data import Schema
    from mlcycle.models.serving import BadInput, Preprocessing

    schema = Schema(target="y", task="regression", numeric=["age"], categorical=["c"])
    frame = pd.DataFrame({"age": [30.0, 40.0, 50.0], "c": ["a", "b", None]})
    prep = Preprocessing.fit(schema, frame)
    for dtype in ("float32", "float64"):  # the network's path and the served forest's
        with pytest.raises(BadInput, match=re.escape(fragment)):
            prep.transform(frame.assign(age=[30.0, value, np.nan]), dtype=dtype)
    # NaN stays a missing value, read as the training median.
    assert np.isfinite(prep.transform(frame.assign(age=[np.nan] * 3))).all()


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("age", True, "column 'age' should be numeric but holds True"),
        ("age", "34", "column 'age' should be numeric but holds '34'"),
        ("c", 7, "column 'c' should be text but holds 7"),
        ("c", False, "column 'c' should be text but holds False"),
    ],
)
def test_served_inputs_are_typed_strictly_as_docs_serving_says(column, value, fragment):
    from mlcycle.ingest.data import Schema
    from mlcycle.models.serving import BadInput, Preprocessing

    schema = Schema(target="y", task="regression", numeric=["age"], categorical=["c"])
    frame = pd.DataFrame({"age": [30.0, 40.0, 50.0], "c": ["a", "b", None]})
    prep = Preprocessing.fit(schema, frame)
    mixed = frame.astype(object)
    mixed.loc[1, column] = value
    for dtype in ("float32", "float64"):  # the network's path and the served forest's
        with pytest.raises(BadInput, match=re.escape(fragment)):
            prep.transform(mixed, dtype=dtype)
    whole = frame.assign(**{column: [value] * 3})  # a column of one type: bool, int, str
    with pytest.raises(BadInput, match=re.escape(fragment.rsplit(" ", 1)[0])):
        prep.transform(whole)
    # Numbers and null, text and null: read as before.
    assert np.isfinite(prep.transform(frame.assign(age=[None, 1, 2.5], c=[None, "z", "a"]))).all()
