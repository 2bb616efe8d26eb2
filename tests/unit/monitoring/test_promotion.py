"""The promotion gate's decision: a pure function of two models' metrics on the same rows."""

import math

from mlcycle.monitoring.promotion import NOT_PROMOTED, PROMOTED, QUALIFIED, decide, tags
from mlcycle.monitoring.relationship import OVERLAP_FLOOR


def _m(current, reference, metric="r2"):
    return {f"current_test_{metric}": current, f"reference_test_{metric}": reference}


def test_a_better_challenger_is_promoted_with_both_checks_passed():
    decision = decide("regression", _m(0.60, 0.90), _m(0.70, 0.89))
    assert decision.status == PROMOTED
    assert all(c.passed for c in decision.checks) and len(decision.checks) == 2
    assert "better on current_test" in decision.reason


def test_improvement_below_min_improvement_or_a_tie_is_not_enough():
    assert (
        decide("regression", _m(0.60, 0.9), _m(0.62, 0.9), min_improvement=0.05).status
        == NOT_PROMOTED
    )
    tie = decide("regression", _m(0.60, 0.9), _m(0.60, 0.9))
    assert tie.status == NOT_PROMOTED and "failed: better on current_test" in tie.reason


def test_forgetting_the_reference_data_beyond_the_tolerance_blocks_promotion():
    decision = decide("regression", _m(0.60, 0.90), _m(0.80, 0.80), tolerance=0.05)
    assert decision.status == NOT_PROMOTED
    assert "reference_test" in decision.reason and "-0.1000" in decision.reason
    assert decide("regression", _m(0.60, 0.90), _m(0.80, 0.86), tolerance=0.05).status == PROMOTED


def test_classification_decides_on_f1():
    decision = decide("classification", _m(0.70, 0.8, "f1"), _m(0.75, 0.8, "f1"))
    assert decision.status == PROMOTED and "f1" in decision.reason


def test_nothing_moves_without_a_working_challenger_and_the_reason_says_why():
    assert "no challenger" in decide("regression", _m(0.6, 0.9), None).reason
    failed = decide("regression", _m(0.6, 0.9), None, challenger_error="failed to load: boom")
    assert not failed.promote and "failed to load: boom" in failed.reason
    nan = decide("regression", _m(0.6, 0.9), _m(math.nan, 0.9))
    assert not nan.promote and "finite" in nan.reason
    broken = decide("regression", None, _m(0.9, 0.9), champion_error="failed to score: x")
    assert not broken.promote and "champion failed" in broken.reason
    same = decide("regression", _m(0.6, 0.9), _m(0.6, 0.9), same_version=True)
    assert not same.promote and "own version" in same.reason


def test_no_champion_at_all_lets_a_working_challenger_take_the_place():
    assert decide("regression", None, _m(0.5, 0.5)).status == PROMOTED


def test_promote_false_reports_a_qualified_challenger_without_promoting():
    decision = decide("regression", _m(0.6, 0.9), _m(0.7, 0.9), requested=False)
    assert decision.status == QUALIFIED and decision.promote
    assert tags(decision)["mlcycle.promotion.decision"] == QUALIFIED


def test_auto_tolerance_lets_the_old_rows_cost_at_most_the_gain_on_the_new():
    # The world moved: +0.90 on current buys a loss of 0.30 on the old rows.
    drifted = decide("regression", _m(0.01, 0.93), _m(0.91, 0.63))
    assert drifted.status == PROMOTED, drifted.reason
    # No drift to speak of: +0.01 on current cannot buy a loss of 0.05 on reference.
    steady = decide("regression", _m(0.80, 0.90), _m(0.81, 0.85))
    assert steady.status != PROMOTED
    assert "its gain on current_test (0.0100)" in steady.reason


class _Changed:
    """A relationship change's evidence at the point rule, as `mlcycle.monitoring.relationship`
    gives it: what following the present costs on reference_test."""

    def __init__(self, cost, overlap=1.0):
        self.cost = cost
        self.changed = cost > 0
        self.excused = cost if self.changed else 0.0
        self.overlap = overlap
        self.apart = overlap < OVERLAP_FLOOR


def test_a_changed_relationship_does_not_hold_its_own_cost_against_the_challenger():
    # The market-crash case: far better on the present, far worse on rows it contradicts.
    champion, challenger = _m(0.33, 0.90), _m(0.88, -0.31)
    assert decide("regression", champion, challenger).status == NOT_PROMOTED
    decision = decide("regression", champion, challenger, relationship=_Changed(1.0))
    assert decision.status == PROMOTED and decision.excused == 1.0
    assert "beyond what the relationship change costs" in decision.checks[1].name
    assert "-0.2100 beyond the change's cost 1.0000" in decision.checks[1].detail


def test_forgetting_beyond_what_the_change_costs_is_still_refused():
    # Loss 0.30, of which 0.05 is the change's: 0.25 beyond it, more than the gain 0.10.
    decision = decide("regression", _m(0.6, 0.9), _m(0.7, 0.6), relationship=_Changed(0.05))
    assert decision.status == NOT_PROMOTED and "reference_test" in decision.reason


def test_with_no_change_the_reference_check_is_as_strict_as_before():
    champion, challenger = _m(0.60, 0.90), _m(0.70, 0.75)
    before = decide("regression", champion, challenger)
    after = decide("regression", champion, challenger, relationship=_Changed(0.0))
    assert before.status == after.status == NOT_PROMOTED
    assert before.checks[1].name == after.checks[1].name and after.excused == 0.0


def test_a_tolerance_the_user_set_is_applied_as_given_whatever_changed():
    decision = decide(
        "regression", _m(0.3, 0.9), _m(0.9, 0.2), tolerance=0.05, relationship=_Changed(0.9)
    )
    assert decision.status == NOT_PROMOTED and decision.excused == 0.0


def test_a_challenger_worse_on_the_present_is_refused_whatever_the_reference_says():
    decision = decide("regression", _m(0.7, 0.9), _m(0.6, 0.5), relationship=_Changed(0.9))
    assert decision.status == NOT_PROMOTED and "failed: better on current_test" in decision.reason


def test_reference_rows_where_the_present_does_not_go_are_not_held_against_the_challenger():
    # Auto MPG split by its own `year` column: the old forest 0.14 on the present, the
    # challenger 0.73 there and 0.65 worse on 1970-76 cars, which no current row resembles.
    champion, challenger = _m(0.14, 0.89), _m(0.73, 0.24)
    assert decide("regression", champion, challenger, relationship=_Changed(0.0)).status == (
        NOT_PROMOTED
    )
    decision = decide("regression", champion, challenger, relationship=_Changed(0.0, 0.02))
    assert decision.status == PROMOTED and decision.apart
    assert decision.checks[1].passed
    assert "its rows lie where the present's do not" in decision.checks[1].name
    assert "overlap of the two sides' features 0.02, below 0.1" in decision.checks[1].detail
    assert "is not judged on reference_test" in decision.reason


def test_apart_sides_still_need_a_challenger_better_on_the_present_and_a_set_tolerance_holds():
    apart = _Changed(0.0, 0.0)
    worse = decide("regression", _m(0.7, 0.9), _m(0.6, 0.9), relationship=apart)
    assert worse.status == NOT_PROMOTED and "failed: better on current_test" in worse.reason
    given = decide("regression", _m(0.1, 0.9), _m(0.7, 0.2), tolerance=0.05, relationship=apart)
    assert given.status == NOT_PROMOTED and not given.apart
