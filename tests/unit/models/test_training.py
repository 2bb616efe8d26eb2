"""The network's training loop: builder, target scaling, validation slice, early
stopping, seeds, and fine-tuning a base network."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.models.network import NetworkModel, NetworkParams
from mlcycle.models.serving import Preprocessing
from mlcycle.models.training import (
    build_network,
    encode_target,
    finetune_obstacle,
    finetune_params,
    fit_bag,
    fit_network,
    split_validation,
    target_scaling,
    training_summary,
)
from tests.unit.networks import BIN, MULTI, REG, TINY, labelled, rows

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


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
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


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_same_seed_same_model_and_epoch_hook_sees_val_loss(reg_fit):
    a, history, seen = reg_fit
    b, again = fit_network(REG, TINY, rows(seed=1))
    assert history == again and len(history["val_loss"]) == 3
    assert seen == [(0, True), (1, True), (2, True)]
    for wa, wb in zip(a.network.get_weights(), b.network.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
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


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
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


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
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


def test_finetune_obstacles_are_named(bin_model):
    base = bin_model
    assert finetune_obstacle(base, BIN) is None
    assert "regression" in finetune_obstacle(base, REG)
    other = Schema("y", "classification", ["x", "z"], ["c"], classes=["no", "yes", "maybe"])
    assert "classes" in finetune_obstacle(base, other)
    with pytest.raises(MlcycleError, match="cannot fine-tune"):
        fit_network(other, TINY, labelled(BIN), base=base)


# ---------------------------------------------------------------- a bag of networks


def test_a_bag_averages_networks_of_other_seeds_and_its_first_is_the_single_network(tmp_path):
    train = rows(120, 4)
    params = replace(TINY, epochs=4, patience=2, validation_share=0.2)
    single, single_history = fit_network(REG, params, train)
    bag, history = fit_bag(REG, params, train, members=3)
    assert bag.members == 3 and history == single_history
    features = train[REG.features]
    # The first member is fit_network's network to the bit (same rows, stopping rows, seed).
    np.testing.assert_array_equal(bag.network.get_weights()[0], single.network.get_weights()[0])
    alone = [single.raw_output(features)]
    for network in bag.extra_networks:
        other = NetworkModel(REG, params, bag.preprocessing, network, 0.0, 1.0)
        alone.append(other.raw_output(features))
    assert not np.allclose(alone[0], alone[1])  # another seed, another network
    np.testing.assert_allclose(bag.raw_output(features), np.mean(alone, axis=0), rtol=1e-6)
    # Saved and loaded, it answers the same, in NumPy.
    loaded = NetworkModel.load(bag.save(tmp_path / "bag"))
    assert loaded.members == 3
    np.testing.assert_allclose(loaded.predict(features), bag.predict(features), rtol=1e-6)
    # Saved again as loaded (a blend carries its members so): every network goes along.
    again = NetworkModel.load(loaded.save(tmp_path / "again"))
    assert again.members == 3
    np.testing.assert_allclose(again.predict(features), bag.predict(features), rtol=1e-6)
    # And the first network still reads as Keras, for fine-tuning.
    np.testing.assert_array_equal(again.network.get_weights()[0], bag.network.get_weights()[0])
    # Saved where it was loaded from: the files are already there, nothing is lost.
    NetworkModel.load(tmp_path / "again").save(tmp_path / "again")
    same = NetworkModel.load(tmp_path / "again")
    assert same.members == 3
    np.testing.assert_allclose(same.predict(features), bag.predict(features), rtol=1e-6)


def test_a_bag_of_classifiers_averages_probabilities():
    train = labelled(MULTI, 120, 5)
    bag, _ = fit_bag(MULTI, TINY, train, members=2)
    proba = bag.predict_proba(train[MULTI.features])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert set(bag.predict(train[MULTI.features])) <= set(MULTI.classes)


def test_a_bag_needs_one_network_at_least():
    with pytest.raises(MlcycleError, match="parameter members must be >= 1, got 0"):
        fit_bag(REG, TINY, rows(40, 1), members=0)
