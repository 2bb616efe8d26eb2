"""The relationship check: a change of the feature-target relationship is told apart from
a covariate shift, on data whose answer is known by construction."""

import numpy as np
import pandas as pd
import pytest

from mlcycle.ingest.data import Schema
from mlcycle.monitoring import relationship

SCHEMA = Schema(target="y", task="regression", numeric=["x"], categorical=["kind"])


def _rows(n, seed, x_mean, slope, kinds=("a", "b")):
    rng = np.random.default_rng(seed)
    x = rng.normal(x_mean, 1.0, n)
    kind = rng.choice(kinds, n)
    y = slope * x + np.where(kind == "a", 1.0, -1.0) + rng.normal(0, 0.3, n)
    return pd.DataFrame({"x": x, "kind": kind, "y": y})


def _frames(reference_slope, current_slope, current_mean):
    return {
        "reference_train": _rows(800, 1, 0.0, reference_slope),
        "reference_test": _rows(200, 2, 0.0, reference_slope),
        "current_train": _rows(800, 3, current_mean, current_slope),
        "current_test": _rows(200, 4, current_mean, current_slope),
    }


def test_a_covariate_shift_is_not_a_change_of_relationship():
    evidence = relationship.measure(SCHEMA, _frames(2.0, 2.0, 0.7), seed=0)
    assert not evidence.changed and evidence.excused == 0.0
    assert abs(evidence.cost) < 0.02
    # The sides still share most of their rows: the reference check speaks.
    assert 0.5 < evidence.overlap <= 1.0 and not evidence.apart
    assert evidence.metrics()["reference_overlap"] == evidence.overlap


def test_sides_a_feature_separates_are_apart_whatever_the_flag_says():
    # A year column split the data: the pooled model splits on it, not on the flag, so
    # the cost reads ~0 though the slope flipped; the overlap says why it cannot tell.
    frames = _frames(2.0, -1.0, 0.0)
    for name, year in (("reference_train", 1), ("reference_test", 1), ("current_train", 2)):
        frames[name]["year"] = year
    schema = Schema(target="y", task="regression", numeric=["x", "year"], categorical=["kind"])
    evidence = relationship.measure(schema, frames, seed=0)
    assert evidence.apart and evidence.overlap < 0.01
    shown = "overlap of the two sides' features 0.00 (year alone: no value shared)"
    assert shown in evidence.text()
    assert evidence.separated_by == ("year",)
    # Without the year the same rows overlap and the change is measured.
    unseparated = relationship.measure(SCHEMA, _frames(2.0, -1.0, 0.0), seed=0)
    assert not unseparated.apart and unseparated.changed


def test_a_new_slope_is_a_change_whose_cost_the_gate_excuses():
    evidence = relationship.measure(SCHEMA, _frames(2.0, -1.0, 0.0), seed=0)
    assert evidence.changed
    assert 0 < evidence.low <= evidence.cost == evidence.excused <= evidence.high
    # Following the present on old rows with the opposite slope is a large loss of R².
    assert evidence.cost > 0.5
    metrics = evidence.metrics()
    assert metrics["reference_excused"] == evidence.excused
    assert metrics["relationship_cost_ci_low"] <= metrics["relationship_cost_ci_high"]


def test_classification_is_judged_on_f1():
    schema = Schema(target="y", task="classification", numeric=["x"], categorical=[])
    rng = np.random.default_rng(0)

    def side(n, flip):
        x = rng.normal(0, 1, n)
        y = np.where((x > 0) ^ flip, "up", "down")
        return pd.DataFrame({"x": x, "y": y})

    frames = {
        "reference_train": side(600, False),
        "reference_test": side(200, False),
        "current_train": side(600, True),
        "current_test": side(200, True),
    }
    evidence = relationship.measure(schema, frames, seed=0)
    assert evidence.metric == "f1" and evidence.changed and evidence.cost > 0.8


@pytest.mark.parametrize("empty", ["reference_train", "current_train"])
def test_a_side_without_training_rows_is_not_measured(empty):
    frames = _frames(2.0, 2.0, 0.0)
    frames[empty] = frames[empty].iloc[:0]
    assert relationship.measure(SCHEMA, frames) is None


def test_an_unseen_category_in_the_test_rows_is_predicted_not_refused():
    frames = _frames(2.0, 2.0, 0.0)
    frames["reference_test"].loc[:5, "kind"] = "never-seen"
    assert relationship.measure(SCHEMA, frames, seed=0) is not None


def test_missing_categories_and_string_classes_are_read_as_the_model_needs():
    schema = Schema(target="y", task="classification", numeric=["x"], categorical=["kind"])
    rng = np.random.default_rng(0)

    def side(n):
        x = rng.normal(0, 1, n)
        kind = pd.Series(rng.choice(["a", "b"], n), dtype="string")
        kind[::7] = pd.NA
        return pd.DataFrame({"x": x, "kind": kind, "y": np.where(x > 0, "yes", "no")})

    frames = {name: side(300) for name in ("reference_train", "reference_test", "current_train")}
    evidence = relationship.measure(schema, frames, seed=0)
    assert evidence is not None and not evidence.changed
