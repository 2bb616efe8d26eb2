"""The paired bootstrap of the promotion gate: seeded, paired, agreeing with
mlcycle.monitoring.metrics, and the decision it lets `promotion.decide` take."""

import numpy as np
import pytest
from sklearn import metrics as skm

from mlcycle.errors import MlcycleError
from mlcycle.monitoring import gate
from mlcycle.monitoring.metrics import evaluate
from mlcycle.monitoring.promotion import (
    DECISION_TAG,
    NOT_ENOUGH_ROWS,
    NOT_PROMOTED,
    PROMOTED,
    decide,
    tags,
)


def _regression(rows=300, seed=1, champion_sd=1.0, challenger_sd=0.9):
    rng = np.random.default_rng(seed)
    y = rng.normal(10_000, 3, rows)
    return y, y + rng.normal(0, champion_sd, rows), y + rng.normal(0, challenger_sd, rows)


def _labels(rows=300, seed=2, classes=("a", "b", "c"), right=(0.7, 0.8)):
    """String labels; each model right with its probability, else a random class."""
    rng = np.random.default_rng(seed)
    labels = np.array(classes)
    y = labels[rng.integers(0, len(labels), rows)]
    preds = [
        np.where(rng.random(rows) < r, y, labels[rng.integers(0, len(labels), rows)]) for r in right
    ]
    return y, *preds


@pytest.mark.parametrize(
    "task,data,metric",
    [
        ("regression", _regression(), "r2"),
        ("classification", _labels(classes=("no", "yes")), "f1"),
        ("classification", _labels(), "f1"),
        ("classification", _labels(classes=(0, 1, 2, 3)), "f1"),
    ],
)
def test_resampled_metric_is_mlcycle_metrics_on_the_full_sample_and_on_a_resample(
    task, data, metric
):
    y, champion, _ = data
    rows = len(y)
    full = gate.metric_on_resamples(task, y, champion, np.arange(rows)[None])
    assert full[0] == pytest.approx(evaluate(task, y, champion)[metric], abs=1e-12)
    drawn = np.random.default_rng(3).integers(0, rows, rows)
    resampled = gate.metric_on_resamples(task, y, champion, drawn[None])
    expected = evaluate(task, y[drawn], champion[drawn])[metric]
    assert resampled[0] == pytest.approx(expected, abs=1e-12)


def test_weighted_f1_of_a_resample_missing_a_class_matches_scikit_learn():
    y, pred, _ = _labels(rows=60)
    drawn = np.flatnonzero(y != "c")  # the resample never draws a row of class c
    got = gate.metric_on_resamples("classification", y, pred, drawn[None])[0]
    assert got == pytest.approx(
        skm.f1_score(y[drawn], pred[drawn], average="weighted", zero_division=0), abs=1e-12
    )


def test_r2_of_a_resample_with_a_single_target_value_follows_scikit_learn():
    y = np.array([1.0, 2.0, 3.0])
    drawn = np.array([[1, 1, 1]])
    assert gate.metric_on_resamples("regression", y, y, drawn)[0] == 1.0
    assert gate.metric_on_resamples("regression", y, y + 1, drawn)[0] == 0.0


def test_same_seed_same_interval_and_another_seed_another_one():
    y, champion, challenger = _regression()
    first = gate.paired_bootstrap("regression", y, champion, challenger, seed=7)
    again = gate.paired_bootstrap("regression", y, champion, challenger, seed=7)
    other = gate.paired_bootstrap("regression", y, champion, challenger, seed=8)
    assert (first.low, first.high) == (again.low, again.high)
    np.testing.assert_array_equal(first.deltas, again.deltas)
    assert (first.low, first.high) != (other.low, other.high)
    assert first.delta == other.delta


def test_identical_predictions_give_a_zero_width_interval_at_zero():
    y, champion, _ = _regression()
    interval = gate.paired_bootstrap("regression", y, champion, champion.copy())
    assert interval.delta == interval.low == interval.high == 0.0
    assert not interval.deltas.any()
    labels, pred, _ = _labels()
    interval = gate.paired_bootstrap("classification", labels, pred, pred.copy())
    assert interval.low == interval.high == 0.0


def test_pairing_resamples_the_same_rows_for_both_models():
    # The challenger's errors mirror the champion's: every row costs both the same, so
    # every paired resample gives a difference of 0, where unpaired draws would not.
    y, champion, _ = _regression()
    mirrored = 2 * y - champion
    interval = gate.paired_bootstrap("regression", y, champion, mirrored)
    assert np.abs(interval.deltas).max() < 1e-9
    assert interval.high - interval.low < 1e-9


def test_a_constant_shift_has_a_narrow_paired_interval_next_to_one_model_alone():
    y, champion, _ = _regression(rows=400)
    champion = champion - (champion - y).mean()  # errors centred: the shift only adds
    shifted = gate.paired_bootstrap("regression", y, champion, champion + 0.1)
    # Against a perfect "champion", the difference is the model's own R² minus 1: the
    # spread of one model's R² under resampling, which pairing cancels from the shift.
    alone = gate.paired_bootstrap("regression", y, y, champion)
    assert shifted.delta < 0
    assert shifted.high - shifted.low < (alone.high - alone.low) / 5


@pytest.mark.parametrize(
    "task,data",
    [
        ("regression", _regression()),
        ("classification", _labels()),
        ("classification", _labels(classes=(0, 1))),
    ],
)
def test_the_interval_contains_the_point_estimate_and_is_ordered(task, data):
    interval = gate.paired_bootstrap(task, *data, n_resamples=500)
    assert interval.low <= interval.delta <= interval.high
    assert interval.low < interval.high
    assert interval.deltas.shape == (500,)
    assert interval.rows == len(data[0])


def test_the_interval_narrows_with_more_rows():
    widths = []
    for rows in (100, 400, 1600):
        interval = gate.paired_bootstrap("regression", *_regression(rows=rows, seed=rows))
        widths.append(interval.high - interval.low)
    assert widths[0] > 1.5 * widths[1] > 1.5 * 1.5 * widths[2]


def test_higher_confidence_widens_the_interval_on_the_same_resamples():
    data = _regression()
    at_90 = gate.paired_bootstrap("regression", *data, confidence=0.9)
    at_99 = gate.paired_bootstrap("regression", *data, confidence=0.99)
    np.testing.assert_array_equal(at_90.deltas, at_99.deltas)
    assert at_99.low < at_90.low and at_99.high > at_90.high
    assert at_90.low == pytest.approx(np.quantile(at_90.deltas, 0.1))


def test_confidence_zero_draws_nothing_and_bounds_are_the_point_estimate():
    interval = gate.paired_bootstrap("regression", *_regression(), confidence=0)
    assert interval.low == interval.delta == interval.high
    assert interval.deltas.size == 0


def test_more_resamples_than_one_chunk_holds_are_all_drawn(monkeypatch):
    whole = gate.paired_bootstrap("regression", *_regression(), n_resamples=100)
    monkeypatch.setattr(gate, "CHUNK_CELLS", 1000)  # 3 resamples of 300 rows a chunk
    chunked = gate.paired_bootstrap("regression", *_regression(), n_resamples=100)
    assert chunked.deltas.shape == (100,) and np.unique(chunked.deltas).size == 100
    # The same stream of draws, sliced: chunking does not change the interval.
    np.testing.assert_array_equal(chunked.deltas, whole.deltas)


@pytest.mark.parametrize(
    "kwargs,named",
    [
        ({"task": "ranking"}, "task"),
        ({"confidence": 0.3}, "confidence"),
        ({"confidence": 1.0}, "confidence"),
        ({"n_resamples": 0}, "n_resamples"),
    ],
)
def test_bad_parameters_are_one_line_errors_naming_them(kwargs, named):
    y, champion, challenger = _regression(rows=20)
    args = {"task": "regression", **kwargs}
    task = args.pop("task")
    with pytest.raises(MlcycleError, match=named):
        gate.paired_bootstrap(task, y, champion, challenger, **args)


def test_predictions_of_another_length_are_refused():
    y, champion, challenger = _regression(rows=20)
    with pytest.raises(MlcycleError, match="20, 20, 19"):
        gate.paired_bootstrap("regression", y, champion, challenger[:-1])


def _decide_on(task, splits, confidence=0.95, **kwargs):
    """decide() on metrics and intervals computed from the same predictions, as monitor would."""
    metric = {"regression": "r2", "classification": "f1"}[task]
    champion, challenger, intervals = {}, {}, {}
    for name, (y, a, b) in splits.items():
        champion[f"{name}_{metric}"] = evaluate(task, y, a)[metric]
        challenger[f"{name}_{metric}"] = evaluate(task, y, b)[metric]
        intervals[name] = gate.paired_bootstrap(task, y, a, b, confidence=confidence)
    return (
        decide(task, champion, challenger, intervals=intervals, **kwargs),
        decide(task, champion, challenger, **kwargs),
    )


def test_a_clearly_better_challenger_is_promoted_and_the_details_show_both_intervals():
    splits = {
        "current_test": _regression(seed=1, champion_sd=1.5, challenger_sd=0.8),
        "reference_test": _regression(seed=2, champion_sd=1.0, challenger_sd=1.0),
    }
    with_ci, _ = _decide_on("regression", splits)
    assert with_ci.status == PROMOTED, with_ci.reason
    assert "95% bounds +" in with_ci.checks[0].detail
    assert with_ci.checks[1].detail.count("95% bounds") == 1


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_a_challenger_better_by_noise_only_wins_the_point_rule_but_not_the_gate():
    # Equal models; seeds picked so that the challenger looks better on both splits.
    wins = []
    for seed in range(40):
        splits = {
            "current_test": _regression(seed=seed, challenger_sd=1.0),
            "reference_test": _regression(seed=100 + seed, challenger_sd=1.0),
        }
        with_ci, point = _decide_on("regression", splits)
        if point.status == PROMOTED:
            wins.append(with_ci)
    assert len(wins) >= 5  # the point rule promotes equal challengers often
    refused = [d for d in wins if d.status == NOT_PROMOTED]
    assert len(refused) >= len(wins) - 1
    assert any("failed: better on current_test" in d.reason for d in refused)


def test_forgetting_the_reference_rows_is_refused_at_the_interval_bound():
    splits = {
        "current_test": _regression(seed=1, champion_sd=1.5, challenger_sd=0.8),
        "reference_test": _regression(seed=2, champion_sd=1.0, challenger_sd=1.12),
    }
    reference = gate.paired_bootstrap("regression", *splits["reference_test"])
    # The point loss is within the tolerance, its upper bound is not.
    assert -reference.delta < 0.05 < -reference.low
    with_ci, point = _decide_on("regression", splits, tolerance=0.05)
    assert point.status == PROMOTED
    assert with_ci.status == NOT_PROMOTED
    assert "failed: not worse on reference_test by more than 0.05" in with_ci.reason
    assert with_ci.checks[0].passed


def _noise_favours_the_challenger():
    """Seeded test rows where an equal challenger's point gain is above 0 but its 95 %
    lower bound is not: the gate refuses it, the point rule would take it. On
    reference_test both answer alike (nothing lost there)."""
    for seed in range(40):
        y, champion, _ = _regression(seed=100 + seed)
        splits = {
            "current_test": _regression(seed=seed, challenger_sd=1.0),
            "reference_test": (y, champion, champion.copy()),
        }
        with_ci, point = _decide_on("regression", splits)
        if point.status == PROMOTED and with_ci.status == NOT_PROMOTED:
            return splits
    raise AssertionError("no seed makes the noise favour the challenger")


def test_a_champion_of_the_same_round_is_not_defended_at_the_bound():
    """An incumbent keeps its place unless the challenger is surely better; a champion main
    registered on the same rows served no one, so the better of the two on all rows wins,
    and the reference check is judged at its bound all the same."""
    splits = _noise_favours_the_challenger()
    incumbent, _ = _decide_on("regression", splits)
    same_round, _ = _decide_on("regression", splits, incumbent=False)
    assert incumbent.status == NOT_PROMOTED and "failed: better on current_test" in incumbent.reason
    assert same_round.status == PROMOTED, same_round.reason
    assert "the champion is of this round: judged on all rows" in same_round.checks[0].detail
    assert "95% bounds" in same_round.checks[1].detail
    # Worse on all rows: still refused.
    swapped = {name: (y, b, a) for name, (y, a, b) in splits.items()}
    assert _decide_on("regression", swapped, incumbent=False)[0].status == NOT_PROMOTED
    # A challenger that forgot the reference rows is refused at the bound as before.
    forgot = {
        "current_test": _regression(seed=1, champion_sd=1.5, challenger_sd=0.8),
        "reference_test": _regression(seed=2, champion_sd=1.0, challenger_sd=1.12),
    }
    refused, _ = _decide_on("regression", forgot, tolerance=0.05, incumbent=False)
    assert refused.status == NOT_PROMOTED
    assert "failed: not worse on reference_test by more than 0.05" in refused.reason


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("tolerance", [None, 0.0, 0.02])
def test_confidence_zero_is_the_point_rule_byte_for_byte(seed, tolerance):
    rng = np.random.default_rng(seed)
    splits = {
        name: _regression(rows=50, seed=seed * 2 + k, challenger_sd=rng.uniform(0.8, 1.2))
        for k, name in enumerate(("current_test", "reference_test"))
    }
    for min_improvement in (0.0, 0.01):
        with_zero, point = _decide_on(
            "regression", splits, confidence=0, tolerance=tolerance, min_improvement=min_improvement
        )
        assert with_zero == point


def test_classification_decides_on_the_f1_interval():
    splits = {
        "current_test": _labels(rows=400, seed=5, right=(0.55, 0.85)),
        "reference_test": _labels(rows=400, seed=6, right=(0.8, 0.8)),
    }
    with_ci, _ = _decide_on("classification", splits)
    assert with_ci.status == PROMOTED, with_ci.reason
    assert "f1" in with_ci.checks[0].detail and "95% bounds" in with_ci.checks[0].detail


def test_intervals_of_other_predictions_than_the_metrics_are_refused():
    y, champion, challenger = _regression()
    interval = gate.paired_bootstrap("regression", y, champion, challenger)
    metrics = {"current_test_r2": 0.5, "reference_test_r2": 0.5}
    with pytest.raises(ValueError, match="other predictions"):
        decide(
            "regression",
            metrics,
            {"current_test_r2": 0.6, "reference_test_r2": 0.5},
            intervals={"current_test": interval, "reference_test": interval},
        )


def test_judge_reads_the_lower_bound_against_min_improvement_and_the_auto_tolerance():
    def interval(delta, low, high):
        return gate.Interval("r2", delta, low, high, 0.95, np.empty(0), 400)

    current = interval(0.02, 0.005, 0.035)
    better, holds, allowed, _ = gate.judge(current, interval(0.0, -0.01, 0.01))
    assert (better, holds, allowed) == (True, True, 0.02)
    assert not gate.judge(current, interval(0.0, -0.01, 0.01), min_improvement=0.01)[0]
    # The loss's upper bound (0.03) is more than the gain (0.02).
    assert not gate.judge(current, interval(-0.01, -0.03, 0.01))[1]
    assert gate.judge(current, interval(-0.01, -0.03, 0.01), tolerance=0.03)[1]


def test_the_bootstrap_figure_marks_the_interval_and_min_improvement():
    from mlcycle.monitoring.charts import close

    interval = gate.paired_bootstrap("regression", *_regression())
    fig = gate.bootstrap_figure(interval, min_improvement=0.01)
    ax = fig.axes[0]
    lines = {round(line.get_xdata()[0], 12) for line in ax.get_lines()}
    assert {round(interval.low, 12), round(interval.high, 12), 0.01} <= lines
    assert sum(patch.get_height() for patch in ax.patches[:50]) == len(interval.deltas)
    assert "95% bounds" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    close(fig)


def test_a_relationship_change_is_taken_out_of_the_reference_loss_draw_by_draw():
    """The same draws for both: the challenger's loss and the change's cost share their
    noise (hard rows), so their paired difference is tighter than either bound."""
    rng = np.random.default_rng(0)
    y = rng.normal(0, 1, 400)
    champion = y + rng.normal(0, 0.2, 400)  # the old relationship, nearly exact
    present = -y + rng.normal(0, 0.2, 400)  # following the present: the opposite
    challenger = present + rng.normal(0, 0.05, 400)
    loss = gate.paired_bootstrap("regression", y, champion, challenger)
    change = gate.paired_bootstrap("regression", y, champion, present)
    beyond = gate.beyond_change(loss, change)
    assert beyond.delta == pytest.approx(loss.delta - change.delta)
    assert beyond.high - beyond.low < 0.5 * (loss.high - loss.low)
    current = gate.Interval("r2", 0.5, 0.4, 0.6, 0.95, np.empty(0), 400)
    assert not gate.judge(current, loss)[1]
    assert gate.judge(current, loss, change=change)[1]
    # A tolerance the user set is applied as given.
    assert not gate.judge(current, loss, tolerance=0.1, change=change)[1]


def test_a_change_resampled_on_other_draws_is_refused():
    y, champion, challenger = _regression()
    loss = gate.paired_bootstrap("regression", y, champion, challenger, n_resamples=100)
    other = gate.paired_bootstrap("regression", y, champion, challenger, n_resamples=50)
    with pytest.raises(ValueError, match="other draws"):
        gate.beyond_change(loss, other)


# ------------------------------------------------------------------ when rows cannot decide


def _undecided(task, splits, **kwargs):
    """decide() as monitor calls it: the splits' targets and intervals judge sufficiency."""
    metric = {"regression": "r2", "classification": "f1"}[task]
    champion, challenger, intervals = {}, {}, {}
    for name, (y, a, b) in splits.items():
        champion[f"{name}_{metric}"] = evaluate(task, y, a)[metric]
        challenger[f"{name}_{metric}"] = evaluate(task, y, b)[metric]
        intervals[name] = gate.paired_bootstrap(task, y, a, b)
    reason = gate.undecidable(task, {n: y for n, (y, _, _) in splits.items()}, intervals)
    return decide(task, champion, challenger, intervals=intervals, undecidable=reason, **kwargs)


def test_five_test_rows_are_not_enough_rows_whatever_the_gain():
    splits = {
        "current_test": _regression(rows=5, seed=1, champion_sd=3.0, challenger_sd=0.1),
        "reference_test": _regression(seed=2),
    }
    decision = _undecided("regression", splits, requested=False)
    assert decision.status == NOT_ENOUGH_ROWS and not decision.promote and not decision.checks
    assert decision.headline == "not promoted: not enough test rows to decide"
    assert decision.reason.startswith(
        "not enough rows to decide: current_test has 5 row(s), fewer than the 30"
    )
    assert tags(decision)[DECISION_TAG] == NOT_ENOUGH_ROWS


def test_too_few_rows_against_a_champion_of_this_round_are_judged_at_the_point_estimates():
    # main's own forest on a fresh store served no one: with 12 test rows nothing can give
    # bounds, and "not enough rows" kept it because it was registered first.
    better = {
        "current_test": _regression(rows=12, seed=1, champion_sd=3.0, challenger_sd=0.5),
        "reference_test": _regression(seed=2),
    }
    decision = _undecided("regression", better, incumbent=False)
    assert decision.status == PROMOTED and not decision.undecided
    assert "current_test has 12 row(s)" in decision.checks[0].detail
    assert "both checks at the point estimates" in decision.checks[0].detail
    worse = {
        "current_test": _regression(rows=12, seed=1, champion_sd=0.5, challenger_sd=3.0),
        "reference_test": _regression(seed=2),
    }
    assert _undecided("regression", worse, incumbent=False).status == NOT_PROMOTED
    # An incumbent is still not judged on them.
    assert _undecided("regression", better).status == NOT_ENOUGH_ROWS


def test_the_floor_is_the_documented_one_and_thirty_rows_are_judged():
    assert gate.MIN_TEST_ROWS == 30
    y, a, b = _regression(rows=30)
    assert gate.undecidable("regression", {"current_test": y}) is None
    assert "29 row(s)" in gate.undecidable("regression", {"current_test": y[:29]})
    assert "has 0 row(s)" in gate.undecidable("regression", {"current_test": [np.nan] * 3})


def test_bounds_wider_than_the_metric_range_are_not_enough_rows():
    # 40 rows, but a target of almost no spread: R² of each resample swings by whole units.
    rng = np.random.default_rng(3)
    y = 10 + rng.normal(0, 0.01, 40)
    noisy = [y + rng.normal(0, 0.02, 40) for _ in range(2)]
    wide = gate.paired_bootstrap("regression", y, *noisy)
    assert wide.high - wide.low > gate.METRIC_RANGE
    reason = gate.undecidable("regression", {"current_test": y}, {"current_test": wide})
    assert reason.startswith("on current_test the r2 difference's 95% bounds")
    assert "more than the metric's range (1) and hold 0" in reason


def test_wide_bounds_that_exclude_zero_still_decide():
    """A loss of whole R² units on rows whose spread is small is wide but certain."""
    loss = gate.Interval("r2", -2.0, -2.9, -1.2, 0.95, np.zeros(0), 200)
    y = np.arange(200.0)
    assert gate.undecidable("regression", {"reference_test": y}, {"reference_test": loss}) is None


def test_a_rare_class_is_judged_through_the_weighted_f1_not_refused():
    """The primary metric weighs a class by its rows: 4 rows of a rare class out of 304
    do not make the rows undecidable, and the bootstrap still tells a clearly better
    challenger from the champion."""
    y, a, b = _labels(rows=300, classes=("no", "yes"), right=(0.6, 0.9))
    y, a, b = (np.append(v, ["rare"] * 4) for v in (y, a, b))
    assert gate.undecidable("classification", {"current_test": y}) is None
    splits = {"current_test": (y, a, b), "reference_test": _labels(classes=("no", "yes"))}
    assert _undecided("classification", splits).status == PROMOTED


def test_enough_rows_decide_as_before_and_no_champion_is_still_a_first_champion():
    splits = {
        "current_test": _regression(seed=1, champion_sd=1.5, challenger_sd=0.8),
        "reference_test": _regression(seed=2, champion_sd=1.0, challenger_sd=1.0),
    }
    assert _undecided("regression", splits).status == PROMOTED
    first = decide("regression", None, {"current_test_r2": 0.5, "reference_test_r2": 0.5},
                   undecidable="current_test has 3 row(s)")  # fmt: skip
    assert first.status == PROMOTED
