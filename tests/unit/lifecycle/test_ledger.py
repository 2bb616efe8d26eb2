"""The ledger's pure half: entries of a set of moves, and which version an alias named
at a given time (the store-backed half is in tests/integration/test_lifecycle.py)."""

from datetime import UTC, datetime, timedelta, timezone

from mlcycle.lifecycle.aliases import Move
from mlcycle.lifecycle.ledger import Entry, alias_at, entries_for, from_params, to_params

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _entry(alias, was, to, minutes, seq=0):
    return Entry(
        time=T0 + timedelta(minutes=minutes),
        model="m",
        alias=alias,
        from_version=was,
        to_version=to,
        run_id="r",
        reason="",
        code_version="c",
        seq=seq,
    )


# first champion 1; promotion of 2 (previous 1); rollback to 1 (previous 2)
HISTORY = [
    _entry("champion", None, "1", 0),
    _entry("previous", None, "1", 10, seq=0),
    _entry("champion", "1", "2", 10, seq=1),
    _entry("challenger", "2", None, 10, seq=2),
    _entry("champion", "2", "1", 20, seq=0),
    _entry("previous", "1", "2", 20, seq=1),
]


def test_the_champion_at_a_time_is_where_its_last_move_up_to_then_took_it():
    assert alias_at(HISTORY, "champion", T0 - timedelta(seconds=1)) is None
    assert alias_at(HISTORY, "champion", T0) == "1"
    assert alias_at(HISTORY, "champion", T0 + timedelta(minutes=9, seconds=59)) == "1"
    assert alias_at(HISTORY, "champion", T0 + timedelta(minutes=10)) == "2"
    assert alias_at(HISTORY, "champion", T0 + timedelta(minutes=19)) == "2"
    assert alias_at(HISTORY, "champion", T0 + timedelta(days=30)) == "1"
    assert alias_at(HISTORY, "previous", T0 + timedelta(minutes=25)) == "2"


def test_a_spent_alias_names_nothing_and_the_order_of_the_entries_given_does_not_matter():
    assert alias_at(HISTORY, "challenger", T0 + timedelta(minutes=15)) is None
    assert alias_at(list(reversed(HISTORY)), "champion", T0 + timedelta(minutes=15)) == "2"


def test_two_moves_of_one_instant_are_ordered_by_their_place_in_the_apply():
    same = [_entry("champion", "1", "2", 5, seq=0), _entry("champion", "2", "3", 5, seq=1)]
    assert alias_at(list(reversed(same)), "champion", T0 + timedelta(minutes=5)) == "3"


def test_a_naive_time_is_utc_and_an_aware_one_is_converted():
    assert alias_at(HISTORY, "champion", datetime(2026, 3, 1, 12, 15)) == "2"
    paris = timezone(timedelta(hours=1))
    assert alias_at(HISTORY, "champion", datetime(2026, 3, 1, 13, 15, tzinfo=paris)) == "2"
    assert alias_at(HISTORY, "champion", datetime(2026, 3, 1, 12, 15, tzinfo=paris)) is None


def test_entries_carry_every_field_and_survive_the_round_trip_through_params():
    moves = [Move("previous", "1", None), Move("champion", "2", "1")]
    entries = entries_for(
        "loan-amount", moves, "promoted: better r2", run_id="abc", code_version="c1", when=T0
    )
    assert [(e.alias, e.from_version, e.to_version, e.seq) for e in entries] == [
        ("previous", None, "1", 0),
        ("champion", "1", "2", 1),
    ]
    assert {e.reason for e in entries} == {"promoted: better r2"}
    for entry in entries:
        params = to_params(entry)
        assert all(isinstance(v, str) for v in params.values())
        assert from_params(params, "id1") == Entry(**{**entry.__dict__, "entry_id": "id1"})


def test_a_long_reason_is_cut_to_what_a_param_holds():
    (entry,) = entries_for(
        "m", [Move("champion", "1", None)], "x" * 9000, run_id="", code_version="", when=T0
    )
    assert len(entry.reason) == 1000
    assert "champion: - -> 1" in entry.describe()
