"""Which candidate main keeps: the best on the judging slice, never the last for being
last; the slice is retrain's, fitted on the rest of current train."""

import numpy as np
import pandas as pd
import pytest

from mlcycle.ingest.data import Schema
from mlcycle.models import blending, selection
from mlcycle.models.candidates import validation_slice
from mlcycle.models.families import hgb
from mlcycle.models.network import NetworkParams
from mlcycle.models.selection import Entry, choose


def test_the_best_score_wins_not_the_last_trained():
    entries = [
        Entry("optimize-nn", "3", 0.29),
        Entry("refit-rf", "4", 0.39),
        Entry("retrain", "5", 0.27),
    ]
    winner, reason = choose(entries, "r2")
    assert winner.version == "4"
    assert reason == (
        "refit-rf (version 4) has the best validation r2 0.3900 "
        "(others: optimize-nn 0.2900, retrain 0.2700)"
    )
    assert selection.scores(entries, "r2") == {
        "validation_r2.optimize-nn": 0.29,
        "validation_r2.refit-rf": 0.39,
        "validation_r2.retrain": 0.27,
    }


def test_a_metric_to_minimise_picks_the_lowest_and_a_tie_the_earlier():
    entries = [Entry("a", "1", 2.0), Entry("b", "2", 1.0), Entry("c", "3", 1.0)]
    assert choose(entries, "mae")[0].label == "b"
    assert choose(entries, "r2")[0].label == "a"


def test_unscored_candidates_never_beat_scored_ones_and_alone_leave_the_last():
    entries = [Entry("optimize-rf", "1", None), Entry("retrain", "2", float("nan"))]
    winner, reason = choose(entries, "f1")
    assert winner.label == "retrain" and "no candidate has a score" in reason
    entries.insert(1, Entry("refit-hgb", "7", 0.1))
    assert choose(entries, "f1")[0].label == "refit-hgb"
    assert "optimize-rf unscored" in choose(entries, "f1")[1]


def test_the_judging_slice_is_retrains_and_the_score_is_measured_on_it_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    train = pd.DataFrame({"x": x, "kind": rng.choice(["a", "b"], 200), "y": 2 * x})
    schema = Schema(target="y", task="regression", numeric=["x"], categorical=["kind"])
    fit_rows, judge = selection.judging_slice(train, seed=9)
    expected = validation_slice(train, NetworkParams(seed=9))
    pd.testing.assert_frame_equal(fit_rows, expected[0])
    pd.testing.assert_frame_equal(judge, expected[1])
    assert len(judge) == 30  # NetworkParams' validation share, 0.15

    seen = []

    class Family:
        def fit(self, schema, params, rows):
            seen.append(len(rows))
            return hgb.fit(schema, params, rows)

    metrics = selection.slice_metrics(Family(), schema, hgb.BoostingParams(max_iter=30), train, 9)
    assert seen == [170] and metrics["validation_r2"] > 0.8
    assert {"validation_mae", "validation_rmse"} <= set(metrics)


@pytest.mark.parametrize("rows", [1])
def test_too_few_rows_for_a_slice_give_no_score(rows):
    frame = pd.DataFrame({"x": [1.0] * rows, "y": [1.0] * rows})
    schema = Schema(target="y", task="regression", numeric=["x"], categorical=[])
    assert selection.slice_metrics(hgb, schema, hgb.BoostingParams(), frame, 0) == {}


def test_the_slice_predictions_behind_the_score_are_the_blends_to_weigh():
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    train = pd.DataFrame({"x": x, "y": 2 * x})
    schema = Schema(target="y", task="regression", numeric=["x"], categorical=[])
    params = hgb.BoostingParams(max_iter=30)
    metrics, predictions = selection.slice_fit(hgb, schema, params, train, 9)
    _, judge = selection.judging_slice(train, 9)
    assert predictions["truth"].tolist() == judge["y"].tolist()
    r2 = (
        1
        - ((judge["y"] - predictions["prediction"]) ** 2).sum()
        / ((judge["y"] - judge["y"].mean()) ** 2).sum()
    )
    assert metrics["validation_r2"] == pytest.approx(r2)
    assert selection.slice_fit(hgb, schema, params, train.head(1), 0) == ({}, None)


def test_the_blend_is_given_every_candidate_run_and_shown_kept_or_not():
    entries = [Entry("optimize-nn", "3", 0.29, "r1"), Entry("retrain", "5", 0.27, "r2")]
    assert selection.blend_parameters("etl", "loan", entries + [Entry("old", "1", 0.1)], 7) == {
        "etl_run": "etl",
        "model_name": "loan",
        "candidates": "optimize-nn=r1,retrain=r2",
        "seed": 7,
    }

    class Data:
        metrics = {"validation_r2": 0.31}
        tags = {"mlcycle.blend_kept": "false", "mlcycle.blend_reason": "not better"}

    class Run:
        data = Data()

    assert selection.blend_shown(Run(), "r2") == (
        {"validation_r2.blend": 0.31},
        {"mlcycle.blend_kept": "false", "mlcycle.blend_reason": "not better"},
    )


def _frame(truth, predictions) -> pd.DataFrame:
    return pd.DataFrame({blending.TRUTH: truth, blending.PREDICTION: predictions})


def test_the_runner_up_is_the_best_other_single_candidate_and_a_blend_has_none():
    entries = [Entry("optimize-nn", "2", 0.90), Entry("refit-rf", "3", 0.80)]
    entries += [Entry("retrain", "4", 0.93), Entry("blend", "5", 0.92)]
    winner, _ = choose(entries, "r2")
    assert selection.runner_up(entries, winner, "r2").label == "optimize-nn"
    assert selection.runner_up(entries, entries[3], "r2") is None  # its gain has its bounds
    assert selection.runner_up(entries[2:3], entries[2], "r2") is None  # alone


def test_the_lead_says_whether_the_slice_can_tell_the_pick_from_the_runner_up():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=400)
    errors = rng.normal(scale=0.5, size=400)
    close = truth + errors
    # The same errors on other rows: the same score, only the rows' draw tells them apart.
    tied = truth + rng.permutation(errors)
    far = truth + rng.normal(scale=1.5, size=400)
    winner, runner = Entry("retrain", "4", 0.8), Entry("optimize-nn", "2", 0.79)
    noisy = selection.lead("regression", _frame(truth, tied), _frame(truth, close), seed=1)
    assert noisy.rows == 400 and noisy.low <= 0 < noisy.high
    assert "within the slice's noise" in selection.lead_text(winner, runner, noisy)
    sure = selection.lead("regression", _frame(truth, close), _frame(truth, far), seed=1)
    assert sure.delta > 0 and sure.low > 0
    text = selection.lead_text(winner, runner, sure)
    assert text.startswith("its lead over optimize-nn on the 400 slice rows: +")
    assert text.endswith("beyond the slice's noise")
    # Predictions of other rows are not compared.
    assert (
        selection.lead("regression", _frame(truth, close), _frame(truth[:-1], far[:-1]), 1) is None
    )


def test_the_lead_of_a_classifier_is_in_its_primary_metric_on_labels():
    truth = np.array(["a", "b"] * 50, dtype=object)
    right = truth.copy()
    wrong = truth.copy()
    wrong[:30] = np.where(wrong[:30] == "a", "b", "a")
    interval = selection.lead("classification", _frame(truth, right), _frame(truth, wrong), 0)
    assert interval.metric == "f1" and interval.delta > 0.2 and interval.low > 0
