"""The label-free monitor's pure parts: its headline, which predictions it trusts, what it
logs."""

import math

import numpy as np
import pandas as pd

from mlcycle.ingest.data import Schema
from mlcycle.monitoring import batch_page, unlabelled
from mlcycle.monitoring.estimation import Estimate

REGRESSION = Schema(target="y", task="regression", numeric=["x"], categorical=[])
CLASSIFICATION = Schema(
    target="y", task="classification", numeric=["x"], categorical=[], classes=["a", "b"]
)


def _estimate(value, low, high, reference=0.80):
    return Estimate(
        task="regression",
        method="DLE",
        metrics={"r2": value, "mse": 4.0},
        low=low,
        high=high,
        reference={"r2": reference, "mse": 3.0, "mae": 1.0},
        batch_rows=100,
        calibration_rows=50,
    )


def test_the_headline_says_how_the_champion_is_doing_against_its_reference():
    worse = batch_page.headline(_estimate(0.60, 0.55, 0.66), "3")
    assert worse["status"] == "worse"
    assert worse["text"].startswith("Champion v3: estimated R² 0.600 on this batch, lower than")
    assert "(-0.200)" in worse["text"]
    assert batch_page.headline(_estimate(0.79, 0.70, 0.85), "3")["status"] == "same"
    assert batch_page.headline(_estimate(0.90, 0.85, 0.95), None)["text"].startswith(
        "The champion: estimated R² 0.900"
    )
    assert batch_page.headline(None, "3")["status"] == "unknown"


def test_stored_predictions_are_used_only_when_the_champion_scored_the_batch():
    frame = pd.DataFrame({"x": [1.0, 2.0], "prediction": ["a", "b"], "proba_a": [0.9, 0.2]})
    frame["proba_b"] = 1 - frame["proba_a"]
    predictions, proba = unlabelled.batch_predictions(frame, CLASSIFICATION, "3", "3")
    assert predictions.tolist() == ["a", "b"] and np.allclose(proba[:, 1], [0.1, 0.8])
    assert unlabelled.batch_predictions(frame, CLASSIFICATION, "2", "3") == (None, None)
    assert (
        unlabelled.batch_predictions(frame.drop(columns="proba_b"), CLASSIFICATION, "3", "3")[0]
        is None
    )
    predictions, proba = unlabelled.batch_predictions(
        frame.assign(prediction=1.5), REGRESSION, 3, "3"
    )
    assert predictions.tolist() == [1.5, 1.5] and proba is None


def test_the_run_logs_the_contract_names_and_only_finite_values():
    logged = batch_page.logged_metrics(_estimate(0.6, math.nan, math.nan), None, {}, 100)
    assert logged == {
        "batch_rows": 100.0,
        "estimated_r2": 0.6,
        "estimated_mse": 4.0,
        "reference_r2": 0.80,
        "reference_mse": 3.0,
    }
    logged = batch_page.logged_metrics(_estimate(0.6, 0.5, 0.7), None, {}, 100)
    assert (logged["estimated_r2_low"], logged["estimated_r2_high"]) == (0.5, 0.7)


def test_the_headline_of_a_batch_too_small_to_judge_says_so():
    small = Estimate(
        task="regression",
        method="DLE",
        metrics={"r2": math.nan, "mse": 4.0},
        low=math.nan,
        high=math.nan,
        reference={"r2": 0.8, "mse": 3.0},
        batch_rows=3,
        calibration_rows=50,
    )
    line = batch_page.headline(small, "3")
    assert line["status"] == "unknown" and "3 rows are too few" in line["text"]
