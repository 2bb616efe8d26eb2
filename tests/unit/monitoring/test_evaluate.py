"""Scoring in one place: the metrics a step logs and the report shows are the same numbers,
on tiny inline frames."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from mlcycle.ingest.data import Schema
from mlcycle.ingest.split import Splits
from mlcycle.monitoring import evaluate


def _splits(task):
    rng = np.random.default_rng(0)
    frames = []
    for shift in (0.0, 0.0, 1.0, 1.0):
        x = rng.normal(shift, 1, 40)
        y = 2 * x + rng.normal(0, 0.2, 40)
        frames.append(pd.DataFrame({"x": x, "y": y if task == "regression" else y > shift}))
    return Splits(*frames)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_score_frames_keeps_the_predictions_behind_the_metrics_score_returns(task):
    splits = _splits(task)
    schema = Schema(
        target="y",
        task=task,
        numeric=["x"],
        categorical=[],
        classes=[False, True] if task == "classification" else [],
    )
    train = splits.reference_train
    model = (LinearRegression if task == "regression" else LogisticRegression)()
    model.fit(train[["x"]], train["y"])
    scores = evaluate.score_frames(model, schema, dict(splits.items()))
    assert scores.metrics == evaluate.score(model, schema, splits)
    assert set(scores.predictions) == set(evaluate.TEST_SPLITS)
    assert len(scores.predictions["current_test"]) == len(splits.current_test)
    if task == "classification":
        assert list(scores.probabilities["current_test"].columns) == [False, True]
        assert "current_test_roc_auc" in scores.metrics
    else:
        assert scores.probabilities["current_test"] is None
        assert scores.metrics["reference_test_r2"] > 0.9


def test_compare_marks_lower_is_better_metrics_correctly():
    champion = {"current_test_mae": 2.0, "current_test_r2": 0.5}
    challenger = {"current_test_mae": 1.0, "current_test_r2": 0.4}
    rows = {
        (r["split"], r["metric"]): r for r in evaluate.compare("regression", champion, challenger)
    }
    assert rows[("current_test", "mae")]["mark"] == "better"
    assert rows[("current_test", "r2")]["mark"] == "worse"
    assert rows[("current_test", "r2")]["delta"] == pytest.approx(-0.1)
    assert rows[("current_test", "r2")]["primary"] and not rows[("current_test", "mae")]["primary"]
    # A metric one side lacks has no delta; a missing model shows its values as None.
    assert rows[("reference_test", "r2")]["delta"] is None
    alone = evaluate.compare("regression", champion, None)
    assert all(r["challenger"] is None and r["mark"] == "" for r in alone)
    same = evaluate.compare("regression", {"current_test_r2": 0.5}, {"current_test_r2": 0.5})
    assert _row(same, "current_test", "r2")["mark"] == "same"
    nan = evaluate.compare("regression", {"current_test_r2": math.nan}, {"current_test_r2": 0.5})
    assert _row(nan, "current_test", "r2")["delta"] is None


def _row(rows, split, metric):
    return next(r for r in rows if (r["split"], r["metric"]) == (split, metric))


def test_per_class_scores_each_label_even_one_never_predicted():
    scores = evaluate.per_class(
        np.array(["a", "a", "b", "c"]), np.array(["a", "b", "b", "b"]), ["a", "b", "c"]
    )
    assert scores["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3)}
    assert scores["b"]["precision"] == pytest.approx(1 / 3) and scores["b"]["recall"] == 1.0
    assert scores["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
