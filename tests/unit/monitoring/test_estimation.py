"""Performance estimated without labels: known answers on synthetic data, close under a
covariate shift, and blind, as it must be, to a change of the relationship itself."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LinearRegression, LogisticRegression

from mlcycle.ingest.data import Schema
from mlcycle.models.features import build_preprocessor
from mlcycle.monitoring import estimation, estimators

REGRESSION = Schema(target="y", task="regression", numeric=["x", "z"], categorical=["c"])
CLASSIFICATION = Schema(
    target="y", task="classification", numeric=["x", "z"], categorical=[], classes=["no", "yes"]
)


def _features(rng, n, shift=0.0):
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, n),
            "z": rng.normal(0, 1.0, n),
            "c": rng.choice(["a", "b"], n),
        }
    )


def _truth(frame, rng, slope=3.0):
    """A curved relationship with noise growing away from 0: a line fitted near 0 errs
    more, and differently, where the shifted rows are."""
    x = frame["x"].to_numpy()
    noise = rng.normal(0, 0.5 + 0.5 * np.abs(x))
    return slope * x + 0.8 * x**2 + (frame["c"] == "b") * 1.0 + noise


def _regression_world(seed=0, slope_batch=3.0):
    rng = np.random.default_rng(seed)
    train = _features(rng, 2000)
    model = LinearRegression().fit(pd.get_dummies(train, dtype=float), _truth(train, rng))

    def rows(frame, y):
        predictions = model.predict(pd.get_dummies(frame, dtype=float))
        return estimation.Rows(frame, predictions, y=y)

    cal = _features(rng, 1500, shift=0.5)
    batch = _features(rng, 5000, shift=1.0)  # the customers moved
    calibration = rows(cal, _truth(cal, rng))
    truth = _truth(batch, rng, slope=slope_batch)
    unlabelled = rows(batch, None)
    return calibration, unlabelled, truth


def test_r2_from_exact_error_moments_is_the_realised_r2():
    rng = np.random.default_rng(1)
    p = rng.normal(10, 3, 400)
    y = p + rng.normal(0.5, 2, 400) + 0.3 * (p - 10)  # biased, and errors grow with p
    e = y - p
    assert estimators.r2_from_moments(p, e, e**2) == pytest.approx(skm.r2_score(y, p), abs=1e-9)
    # Without the covariance and the bias the same moments give another answer.
    assert abs(estimators.r2_from_moments(p, e, e**2, "simple") - skm.r2_score(y, p)) > 0.05


def test_dle_follows_a_covariate_shift_within_003_r2():
    calibration, batch, truth = _regression_world()
    result = estimation.estimate(
        REGRESSION, calibration, batch, preprocessor=build_preprocessor, resamples=10
    )
    realised = skm.r2_score(truth, batch.predictions)
    # The shift really moved the model's quality: the calibration rows' figure is no answer.
    assert result.reference["r2"] - realised > 0.05
    assert abs(result.metrics["r2"] - realised) <= 0.03
    realised_mse = skm.mean_squared_error(truth, batch.predictions)
    assert result.metrics["mse"] == pytest.approx(realised_mse, rel=0.1)
    assert result.metrics["rmse"] == pytest.approx(np.sqrt(result.metrics["mse"]))
    assert result.low <= result.metrics["r2"] <= result.high
    logged = result.logged()
    assert {"estimated_r2", "estimated_r2_low", "estimated_r2_high", "reference_r2"} <= set(logged)
    assert {"estimated_mae", "estimated_mse", "estimated_rmse"} <= set(logged)


def test_dle_cannot_see_a_change_of_the_relationship_itself():
    """The stated limit: the same customers, a new pricing (slope 3 -> -1). The realised R²
    collapses; the estimate, which only sees the features, stays where it was."""
    calibration, batch, truth = _regression_world(slope_batch=-1.0)
    result = estimation.estimate(
        REGRESSION, calibration, batch, preprocessor=build_preprocessor, resamples=0
    )
    realised = skm.r2_score(truth, batch.predictions)
    assert realised < 0
    assert result.metrics["r2"] - realised > 0.5


def _classification_world(seed=0, flip=False):
    rng = np.random.default_rng(seed)

    def draw(n, shift, spread=1.5):
        frame = pd.DataFrame({"x": rng.normal(shift, spread, n), "z": rng.normal(0, 1, n)})
        logit = 2.0 * frame["x"] - 1.0 * frame["z"] - 1.0
        y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
        return frame, y

    train, y_train = draw(2000, 0.0)
    model = LogisticRegression().fit(train, y_train)

    def rows(frame, y):
        proba = model.predict_proba(frame) ** 3  # over-confident, then renormalised
        proba = proba / proba.sum(axis=1, keepdims=True)
        return estimation.Rows(frame, model.predict(frame), proba=proba, y=y)

    cal, y_cal = draw(1500, 0.0)
    batch, y_batch = draw(5000, 0.5, 0.6)  # crowded near the boundary: more mistakes
    if flip:
        y_batch = np.where(y_batch == "yes", "no", "yes")
    return rows(cal, y_cal), rows(batch, None), y_batch


def test_expected_confusion_matrix_on_a_hand_example():
    calibrated = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    index = np.array([0, 1, 1])
    matrix = estimators.expected_confusion(calibrated, index)
    assert np.allclose(matrix, [[0.9, 0.8], [0.1, 1.2]])
    out = estimators.classification_from_confusion(matrix, 3)
    assert out["accuracy"] == pytest.approx((0.9 + 1.2) / 3)
    # class 0: precision 0.9/1.0, recall 0.9/1.7; class 1: 1.2/2.0, 1.2/1.3; support 1.7, 1.3
    f0 = 2 * 0.9 * (0.9 / 1.7) / (0.9 + 0.9 / 1.7)
    f1 = 2 * 0.6 * (1.2 / 1.3) / (0.6 + 1.2 / 1.3)
    assert out["f1"] == pytest.approx((1.7 * f0 + 1.3 * f1) / 3)


def test_cbpe_follows_a_covariate_shift_within_003_accuracy_and_f1():
    calibration, batch, truth = _classification_world()
    result = estimation.estimate(
        CLASSIFICATION, calibration, batch, preprocessor=build_preprocessor, resamples=20
    )
    realised_acc = skm.accuracy_score(truth, batch.predictions)
    realised_f1 = skm.f1_score(truth, batch.predictions, average="weighted")
    assert result.reference["accuracy"] - realised_acc > 0.05  # the shift cost accuracy
    assert abs(result.metrics["accuracy"] - realised_acc) <= 0.03
    assert abs(result.metrics["f1"] - realised_f1) <= 0.03
    # Uncalibrated, the over-confident probabilities promise far more than was realised.
    raw = estimators.classification_from_confusion(
        estimators.expected_confusion(
            batch.proba, estimators.predicted_index(["no", "yes"], batch.predictions)
        ),
        len(batch),
    )
    assert raw["accuracy"] - realised_acc > 0.05
    assert result.low <= result.metrics["f1"] <= result.high
    assert "estimated_roc_auc" not in result.logged()


def test_cbpe_cannot_see_labels_that_changed_meaning():
    """The stated limit: the same rows, every label flipped. Realised accuracy collapses;
    the estimate, from the probabilities alone, does not move."""
    calibration, batch, truth = _classification_world(flip=True)
    result = estimation.estimate(
        CLASSIFICATION, calibration, batch, preprocessor=build_preprocessor, resamples=0
    )
    realised = skm.accuracy_score(truth, batch.predictions)
    assert result.metrics["accuracy"] - realised > 0.4


def test_a_prediction_outside_the_classes_counts_as_wrong():
    assert estimators.predicted_index(["a", "b"], ["b", "x", "a"]).tolist() == [1, -1, 0]
    matrix = estimators.expected_confusion(np.array([[0.5, 0.5]]), np.array([-1]))
    assert estimators.classification_from_confusion(matrix, 1)["accuracy"] == 0.0


def test_a_batch_too_small_to_judge_gets_no_band_and_no_r2():
    # A one-row batch (or three copies of one row) was "estimated R² -0.14, band up to
    # -0.09" against a reference of 0.57: the batch's target variance cannot be told from
    # so few rows, and the band, resampling that one row, claimed certainty. watch took
    # it as estimated decay and retrained.
    calibration, batch, _ = _regression_world()
    for rows in (batch.take(np.arange(1)), batch.take(np.zeros(3, dtype=int))):
        result = estimation.estimate(
            REGRESSION, calibration, rows, preprocessor=build_preprocessor, resamples=3
        )
        assert math.isnan(result.low) and math.isnan(result.high)
        assert math.isnan(result.metrics["r2"]) and result.notes
        logged = result.logged()
        assert "estimated_mae" in logged and "estimated_r2" not in logged
        assert "estimated_r2_high" not in logged
