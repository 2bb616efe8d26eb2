"""The network: hyper-parameters, preprocessing, builder, target scaling, training."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mlcycle.data import Schema
from mlcycle.errors import MlcycleError
from mlcycle.evaluate import predict_proba
from mlcycle.features import build_preprocessor
from mlcycle.network import (
    NetworkModel,
    NetworkParams,
    Preprocessing,
    base_mismatch,
    build_network,
    encode_target,
    finetune_obstacle,
    finetune_params,
    fit_network,
    split_validation,
    target_scaling,
    training_summary,
)

REG = Schema(target="y", task="regression", numeric=["x", "z"], categorical=["c"])
BIN = Schema(
    target="y", task="classification", numeric=["x", "z"], categorical=["c"], classes=["no", "yes"]
)
MULTI = Schema(
    target="y", task="classification", numeric=["x", "z"], categorical=["c"], classes=[0, 1, 2]
)
TINY = NetworkParams(hidden_units=(8,), epochs=3, batch_size=16, patience=0, seed=3)


def rows(n=80, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=n), rng.normal(5, 2, size=n)
    c = rng.choice(["a", "b", "c"], n).astype(object)
    frame = pd.DataFrame({"x": x, "z": z, "c": c, "y": 20_000 + 3_000 * x + 500 * (c == "a")})
    frame.loc[::7, "z"] = np.nan
    frame.loc[::9, "c"] = None
    return frame


@pytest.fixture(scope="module")
def reg_fit():
    """One small regression fit shared by the tests that only read it (fits cost ~2 s)."""
    seen = []
    model, history = fit_network(
        REG, TINY, rows(seed=1), on_epoch_end=lambda e, logs: seen.append((e, "val_loss" in logs))
    )
    return model, history, seen


@pytest.fixture(scope="module")
def bin_model():
    return fit_network(BIN, TINY, labelled(BIN))[0]


def labelled(schema, n=80, seed=0) -> pd.DataFrame:
    frame = rows(n, seed)
    if schema.classes == ["no", "yes"]:
        frame["y"] = np.where(frame["x"] > 0, "yes", "no")
    else:
        frame["y"] = np.digitize(frame["x"], [-0.5, 0.5])
    return frame


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


# ---------------------------------------------------------------- builder


def _layers(model):
    return [
        (
            type(layer).__name__,
            getattr(layer, "units", None),
            getattr(getattr(layer, "activation", None), "__name__", None),
        )
        for layer in model.layers[1:]
    ]


def test_default_architecture_per_task():
    assert _layers(build_network(7, REG, NetworkParams())) == [
        ("Dense", 64, "relu"),
        ("Dense", 32, "relu"),
        ("Dense", 1, "linear"),
    ]
    assert _layers(build_network(7, BIN, NetworkParams()))[-1] == ("Dense", 1, "sigmoid")
    assert _layers(build_network(7, MULTI, NetworkParams()))[-1] == ("Dense", 3, "softmax")
    with_dropout = _layers(build_network(7, REG, NetworkParams(hidden_units=(5,), dropout=0.3)))
    assert [kind for kind, _, _ in with_dropout] == ["Dense", "Dropout", "Dense"]


def test_single_class_schema_is_refused():
    with pytest.raises(MlcycleError, match="at least two classes"):
        build_network(3, Schema("y", "classification", ["x"], [], classes=["a"]), TINY)


# ---------------------------------------------------------------- target scaling


def test_target_scaling_standardises_regression_and_is_identity_for_classes():
    target = pd.Series([10.0, 20.0, 30.0])
    mean, scale = target_scaling(REG, target)
    assert mean == 20.0 and scale == pytest.approx(np.std([10, 20, 30]))
    assert target_scaling(REG, pd.Series([5.0, 5.0])) == (5.0, 1.0)
    assert target_scaling(BIN, pd.Series(["no", "yes"])) == (0.0, 1.0)


def test_targets_are_encoded_for_training_and_decoded_in_predictions():
    model = NetworkModel(
        REG,
        TINY,
        Preprocessing.fit(REG, rows()),
        network=None,
        target_mean=100.0,
        target_scale=10.0,
    )
    np.testing.assert_allclose(encode_target(model, pd.Series([90.0, 120.0])), [-1.0, 2.0])
    clf = NetworkModel(BIN, TINY, Preprocessing.fit(BIN, rows()), network=None)
    assert encode_target(clf, pd.Series(["yes", "no"])).tolist() == [1, 0]
    with pytest.raises(MlcycleError, match="'maybe'"):
        encode_target(clf, pd.Series(["maybe"]))


def test_regression_predictions_come_back_in_target_units():
    train = rows(200)
    model, history = fit_network(
        REG, NetworkParams(epochs=25, batch_size=64, patience=0, learning_rate=0.03), train
    )
    predicted = model.predict(train)
    assert abs(predicted.mean() - train["y"].mean()) < 0.2 * train["y"].std()
    assert np.corrcoef(predicted, train["y"])[0, 1] > 0.9
    assert history["loss"][-1] < history["loss"][0]


# ---------------------------------------------------------------- training


def test_validation_slice_is_seeded_and_never_empties_training():
    fit, val = split_validation(rows(100), 0.15, seed=1)
    again, _ = split_validation(rows(100), 0.15, seed=1)
    assert (len(fit), len(val)) == (85, 15)
    pd.testing.assert_frame_equal(fit, again)
    assert [len(f) for f in split_validation(rows(2), 0.15, 1)] == [1, 1]
    assert [len(f) for f in split_validation(rows(5), 0.0, 1)] == [5, 0]


def test_same_seed_same_model_and_epoch_hook_sees_val_loss(reg_fit):
    a, history, seen = reg_fit
    b, again = fit_network(REG, TINY, rows(seed=1))
    assert history == again and len(history["val_loss"]) == 3
    assert seen == [(0, True), (1, True), (2, True)]
    for wa, wb in zip(a.network.get_weights(), b.network.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_an_exception_from_the_epoch_hook_stops_training():
    class Pruned(Exception):
        pass

    def prune(epoch, logs):
        raise Pruned

    with pytest.raises(Pruned):
        fit_network(REG, TINY, rows(), on_epoch_end=prune)


def _val_loss(model, train, params) -> float:
    """The fitted model's MSE on the validation slice fit_network carved from train."""
    _, val = split_validation(train, params.validation_share, params.seed)
    out = model.raw_output(val)[:, 0]
    return float(np.mean((out - encode_target(model, val["y"])) ** 2))


# A learning rate high enough that the validation loss turns up well before 40 epochs.
OVERSHOOT = NetworkParams(
    hidden_units=(8,), epochs=40, patience=2, learning_rate=0.05, batch_size=8, seed=1
)


def test_early_stopping_keeps_the_best_epoch_and_patience_zero_the_last():
    train = rows(60)
    model, history = fit_network(REG, OVERSHOOT, train)
    best = int(np.argmin(history["val_loss"]))
    epochs = len(history["loss"])
    assert epochs == best + 1 + 2 < 40
    # The weights kept are the best epoch's, not the last one's.
    assert _val_loss(model, train, OVERSHOOT) == pytest.approx(history["val_loss"][best], rel=1e-4)
    summary = training_summary(history, OVERSHOOT)
    assert (summary["epochs_trained"], summary["kept_epoch"]) == (epochs, best + 1)

    # The same training with patience 0 and two epochs more: nothing stops it where early
    # stopping did, and nothing is restored: the last epoch's weights, whose loss is worse.
    params = replace(OVERSHOOT, patience=0, epochs=epochs + 2)
    last_model, again = fit_network(REG, params, train)
    assert len(again["loss"]) == epochs + 2
    assert again["val_loss"][:epochs] == history["val_loss"]  # same seed, same epochs so far
    assert again["val_loss"][-1] > min(again["val_loss"])
    assert _val_loss(last_model, train, params) == pytest.approx(again["val_loss"][-1], rel=1e-4)
    summary = training_summary(again, params)
    assert (summary["epochs_trained"], summary["kept_epoch"]) == (epochs + 2, epochs + 2)
    assert summary["best_epoch"] < epochs + 2


def test_finetune_keeps_shape_and_preprocessing_and_leaves_the_base_alone(reg_fit):
    base = reg_fit[0]
    before = [w.copy() for w in base.network.get_weights()]
    shifted = rows(seed=2).assign(y=lambda f: f["y"] + 5_000)
    tuned, _ = fit_network(
        REG, NetworkParams(hidden_units=(99, 99), epochs=2, patience=0), shifted, base=base
    )
    assert tuned.params.hidden_units == (8,)
    assert tuned.preprocessing is base.preprocessing
    assert tuned.target_mean == base.target_mean
    shapes = [w.shape for w in tuned.network.get_weights()]
    assert shapes == [w.shape for w in before]
    assert any(
        not np.array_equal(a, b) for a, b in zip(tuned.network.get_weights(), before, strict=True)
    )
    for a, b in zip(base.network.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_finetune_params_take_the_base_architecture_and_keep_the_training_knobs(reg_fit):
    base = reg_fit[0]
    asked = NetworkParams(hidden_units=(99, 99), dropout=0.4, learning_rate=0.01, epochs=7)
    assert finetune_params(asked, base) == replace(asked, hidden_units=(8,), dropout=0.0)


class _Pyfunc:
    """What base_mismatch reads of a loaded pyfunc: its signature and its raw model."""

    def __init__(self, inputs=None, raw=None):
        from mlflow.models import Model, ModelSignature
        from mlflow.types import ColSpec, DataType
        from mlflow.types import Schema as TypeSchema

        self.metadata = Model()
        if inputs is not None:
            self.metadata.signature = ModelSignature(
                TypeSchema([ColSpec(DataType.double, c) for c in inputs])
            )
        self._raw = raw

    def get_raw_model(self):
        if self._raw is None:
            raise ValueError("no raw model")
        return self._raw

    def unwrap_python_model(self):
        raise ValueError("not a custom python model")


def test_base_mismatch_names_task_target_and_missing_columns(bin_model, reg_fit):
    from sklearn.dummy import DummyClassifier, DummyRegressor

    class Network(_Pyfunc):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def unwrap_python_model(self):
            return self

    assert base_mismatch(Network(bin_model), BIN) is None
    assert base_mismatch(Network(reg_fit[0]), REG) is None
    assert "it is a classification model and the data is regression" in base_mismatch(
        Network(bin_model), REG
    )
    other_target = Schema("price", "regression", ["x", "z"], ["c"])
    assert "it predicts 'y', not the data's target 'price'" in base_mismatch(
        Network(reg_fit[0]), other_target
    )
    fewer = Schema("y", "regression", ["x"], ["c"])
    assert base_mismatch(Network(reg_fit[0]), fewer) == "it reads columns the data lacks (z)"
    more = Schema("y", "regression", ["x", "z", "w"], ["c"])
    assert base_mismatch(Network(reg_fit[0]), more) is None  # a new column is no obstacle

    # Any other model: its signature's columns and, for sklearn, its estimator type.
    forest_like = _Pyfunc(["x", "z", "c"], DummyRegressor())
    assert base_mismatch(forest_like, REG) is None
    assert base_mismatch(_Pyfunc(["x", "z", "c"], DummyClassifier()), REG) == (
        "it is a classification model and the data is regression"
    )
    assert base_mismatch(_Pyfunc(["tenure", "x"], DummyClassifier()), REG) == (
        "it is a classification model and the data is regression; "
        "it reads columns the data lacks (tenure)"
    )
    assert base_mismatch(_Pyfunc(), REG) is None  # says nothing: scoring will tell


def test_finetune_obstacles_are_named(bin_model):
    base = bin_model
    assert finetune_obstacle(base, BIN) is None
    assert "regression" in finetune_obstacle(base, REG)
    other = Schema("y", "classification", ["x", "z"], ["c"], classes=["no", "yes", "maybe"])
    assert "classes" in finetune_obstacle(base, other)
    with pytest.raises(MlcycleError, match="cannot fine-tune"):
        fit_network(other, TINY, labelled(BIN), base=base)


@pytest.mark.parametrize("schema", [BIN, MULTI], ids=["binary", "multiclass"])
def test_classification_predicts_labels_and_probabilities(schema, bin_model):
    train = labelled(schema)
    model = bin_model if schema is BIN else fit_network(schema, TINY, train)[0]
    labels = model.predict(train)
    assert set(labels) <= set(schema.classes)
    proba = model.predict_proba(train)
    assert proba.shape == (len(train), len(schema.classes))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    # mlcycle.evaluate reads classes_ to name the columns.
    assert list(predict_proba(model, train, schema.classes).columns) == schema.classes
    assert (np.asarray(schema.classes)[proba.argmax(axis=1)] == labels).all()


def test_save_and_load_give_the_same_predictions(tmp_path, bin_model):
    model = bin_model
    loaded = NetworkModel.load(model.save(tmp_path / "net"))
    frame = labelled(BIN, 10, seed=5)
    np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame), rtol=1e-6)
    assert loaded.params == model.params and loaded.classes_ == ["no", "yes"]
