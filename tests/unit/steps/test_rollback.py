"""The rollback plan: a pure function of the aliases as they were read."""

import pytest

from mlcycle.errors import MlcycleError
from mlcycle.lifecycle.aliases import Move, after, rollback


def test_rollback_to_previous_swaps_champion_and_previous():
    state = {"champion": "3", "challenger": None, "previous": "1"}
    moves = rollback(state, "")
    assert moves == [Move("champion", "1", "3"), Move("previous", "3", "1")]
    assert after({"3": ["champion"], "1": ["previous"]}, moves) == {
        "3": ["previous"],
        "1": ["champion"],
    }


def test_a_second_rollback_undoes_the_first():
    state = {"champion": "3", "challenger": "4", "previous": "1"}
    first = rollback(state, None)
    state = {**state, **{m.alias: m.to for m in first}}
    assert rollback(state, None) == [Move("champion", "3", "1"), Move("previous", "1", "3")]


def test_rollback_to_a_named_version_keeps_an_unrelated_challenger():
    state = {"champion": "5", "challenger": "6", "previous": "4"}
    assert rollback(state, "2") == [Move("champion", "2", "5"), Move("previous", "5", "4")]


def test_restoring_the_challenger_spends_it_and_no_previous_alias_is_needed_by_version():
    state = {"champion": "5", "challenger": "6", "previous": None}
    assert rollback(state, "6") == [
        Move("champion", "6", "5"),
        Move("previous", "5", None),
        Move("challenger", None, "6"),
    ]


@pytest.mark.parametrize(
    ("state", "to_version", "message"),
    [
        ({"champion": None, "challenger": "2", "previous": "1"}, "", "has no champion"),
        ({"champion": None, "challenger": None, "previous": None}, "1", "has no champion"),
        ({"champion": "2", "challenger": None, "previous": None}, "", "no previous alias"),
        ({"champion": "2", "challenger": None, "previous": "1"}, "2", "is the champion already"),
        ({"champion": "2", "challenger": None, "previous": "2"}, "", "is the champion already"),
    ],
)
def test_what_cannot_be_rolled_back_is_one_line_and_no_plan(state, to_version, message):
    with pytest.raises(MlcycleError, match=message):
        rollback(state, to_version)
