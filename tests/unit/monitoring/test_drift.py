"""Drift with Evidently 0.7 on small frames: found when there, rarely when not."""

import functools

import numpy as np
import pandas as pd
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.monitoring import drift

SCHEMA = Schema(target="y", task="regression", numeric=["a", "b"], categorical=["c"])


def _frame(rows, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(shift, 1, rows),
            "b": rng.normal(2 * shift, 1, rows),
            "c": rng.choice(["x", "y", "z"], rows, p=[0.5 - shift / 4, 0.3, 0.2 + shift / 4]),
            "y": rng.normal(shift, 1, rows),
        }
    )


@functools.cache
def _same_distribution_resamples() -> tuple:
    """20 pairs of 150-row samples of one distribution, each through Evidently once: the
    dataset verdicts and the per-column counts are read by two tests (each run ~0.8 s)."""
    return tuple(
        drift.run_drift(_frame(150, 100 + i), _frame(150, 200 + i), SCHEMA) for i in range(20)
    )


class _Doubler:
    def predict(self, features):
        return features["a"].to_numpy() * 2


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_shifted_data_drifts_in_every_column_and_the_target_and_predictions():
    result = drift.run_drift(
        _frame(300, 1), _frame(300, 2, shift=1.0), SCHEMA, {"model_prediction": _Doubler()}
    )
    assert result.dataset_drift and result.n_drifted == 3 and result.drift_share == 1.0
    assert set(result.drifted_features()) == {"a", "b", "c"}
    (target,) = result.by_role("target")
    (prediction,) = result.by_role("prediction")
    assert target.drifted and prediction.drifted and prediction.column == "model_prediction"
    a = next(c for c in result.columns if c.column == "a")
    # Read from the snapshot: the method Evidently chose for 300 rows, its score, threshold.
    assert a.method == "K-S p_value" and a.threshold == 0.05 and a.score < 0.05
    assert next(c for c in result.columns if c.column == "c").kind == "categorical"
    assert not result.sampled


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_same_distribution_rarely_raises_a_false_alarm_over_20_resamples():
    alarms = sum(result.dataset_drift for result in _same_distribution_resamples())
    assert alarms <= 1  # at most 5 %


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_same_distribution_rarely_flags_a_column():
    """Per column, not only the dataset verdict: 20 resamples x 3 features at Evidently's
    5 % level expect 3 false alarms; more than 8 happens with probability < 0.5 %. With
    thousands of rows a side (Evidently's distance tests, as on sampled big data), none."""
    small = [result.n_drifted for result in _same_distribution_resamples()]
    assert sum(small) <= 8, small
    large = [
        drift.run_drift(_frame(5000, 500 + i), _frame(5000, 600 + i), SCHEMA) for i in range(3)
    ]
    assert [r.n_drifted for r in large] == [0, 0, 0]
    assert {c.method for r in large for c in r.columns if c.role == "feature"} != {"K-S p_value"}


def test_sample_size_caps_the_rows_per_side_and_is_reported():
    result = drift.run_drift(_frame(400, 1), _frame(300, 2), SCHEMA, sample_size=120)
    assert result.sample_rows == {"reference": 120, "current": 120}
    assert result.reference_rows == 400 and result.sampled
    assert drift.sample_size_for(10, 0) == 10
    assert drift.sample_size_for(10**7, 0) == drift.AUTO_SAMPLE_SIZE
    with pytest.raises(MlcycleError, match="sample_size"):
        drift.sample_size_for(10, -1)


def test_parse_snapshot_reads_by_config_not_position_and_verdicts_from_tests():
    data = {
        "metrics": [
            {
                "id": "m2",
                "config": {
                    "type": "evidently:metric_v2:ValueDrift",
                    "column": "b",
                    "method": "Wasserstein distance (normed)",
                    "threshold": 0.1,
                },
                "value": 0.3,
            },
            {
                "id": "m1",
                "config": {"type": "evidently:metric_v2:DriftedColumnsCount"},
                "value": {"count": 1.0, "share": 0.5},
            },
            {
                "id": "m3",
                "config": {
                    "type": "evidently:metric_v2:ValueDrift",
                    "column": "a",
                    "method": "K-S p_value",
                    "threshold": 0.05,
                },
                "value": 0.5,
            },
            {
                "id": "m4",
                "config": {"type": "evidently:metric_v2:MeanValue", "column": "a"},
                "value": 9.0,
            },
        ],
        "tests": [
            {"metric_config": {"metric_id": "m2"}, "status": "FAIL"},
            {"metric_config": {"metric_id": "m3"}, "status": "SUCCESS"},
        ],
    }
    columns, share, count = drift.parse_snapshot(
        data, {"a": "feature", "b": "feature"}, {"a": "numerical", "b": "numerical"}
    )
    assert (share, count) == (0.5, 1)
    assert [(c.column, c.drifted, c.score) for c in columns] == [
        ("b", True, 0.3),
        ("a", False, 0.5),
    ]
    with pytest.raises(MlcycleError, match="DriftedColumnsCount"):
        drift.parse_snapshot({"metrics": []}, {}, {})


def test_a_prediction_column_never_takes_the_name_of_a_feature_or_the_target():
    assert drift.prediction_column("champion", {"a", "y"}) == "champion_prediction"
    taken = {"champion_prediction", "_champion_prediction"}
    assert drift.prediction_column("champion", taken) == "__champion_prediction"


def test_a_feature_empty_on_one_side_is_drifted_and_the_others_still_measured():
    # A batch whose feed lost a column (every value missing; or a 1-row batch with a hole)
    # made Evidently raise: monitor logged "drift could not be measured", no drift_share,
    # and watch kept judging by the previous batch's drift.
    current = _frame(150, 2).assign(a=np.nan)
    result = drift.run_drift(_frame(150, 1), current, SCHEMA)
    assert result.drifted_features()[0] == "a" and result.n_features == 3
    a = next(c for c in result.columns if c.column == "a")
    assert a.drifted and "every value missing" in a.method and a.role == "feature"
    assert {c.column for c in result.by_role("feature")} == {"a", "b", "c"}
    assert result.n_drifted == 1 + sum(c.drifted for c in result.columns if c.column != "a")
    assert result.drift_share == pytest.approx(result.n_drifted / 3)
    reference = _frame(150, 1).assign(c=None)
    assert "c" in drift.run_drift(reference, _frame(150, 2), SCHEMA).drifted_features()
