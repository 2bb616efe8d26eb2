"""The one owner of the aliases: every plan on inline dicts, and `apply` against a real
SQLite registry (all or nothing; refused when the registry moved since it was read)."""

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from mlcycle.errors import MlcycleError
from mlcycle.lifecycle import aliases
from mlcycle.lifecycle.aliases import Move

NONE = {"champion": None, "challenger": None, "previous": None}


def test_the_first_version_becomes_champion_and_later_ones_wait():
    assert aliases.first_champion(NONE, "1") == [Move("champion", "1", None)]
    assert aliases.first_champion({**NONE, "champion": "1"}, "2") == []


def test_a_nomination_replaces_the_challenger_and_says_what_it_replaced():
    assert aliases.nominate(NONE, 3) == [Move("challenger", "3", None)]
    assert aliases.nominate({**NONE, "challenger": "2"}, "3") == [Move("challenger", "3", "2")]
    assert aliases.nominate({**NONE, "challenger": "3"}, "3") == []


def test_mains_choice_replaces_the_last_nomination_only_while_it_stands():
    state = {**NONE, "champion": "1", "challenger": "5"}  # retrain nominated 5 last
    assert aliases.selection(state, "5", "3") == [Move("challenger", "3", "5")]
    assert aliases.selection(state, "5", "5") == []  # the last one is the best
    # A warm re-run: the winner is challenger already, or was promoted since.
    assert aliases.selection({**state, "challenger": "3"}, "5", "3") == []
    assert aliases.selection({**NONE, "champion": "3", "previous": "1"}, "5", "3") == []


def test_a_promotion_moves_champion_to_previous_and_spends_the_challenger_alias():
    state = {"champion": "1", "challenger": "2", "previous": None}
    assert aliases.promotion(state, "1", "2") == [
        Move("previous", "1", None),
        Move("champion", "2", "1"),
        Move("challenger", None, "2"),
    ]
    # Compared with another model's champion (or none): previous stays where it is.
    assert aliases.promotion({**state, "previous": "0"}, None, "2") == [
        Move("champion", "2", "1"),
        Move("challenger", None, "2"),
    ]
    # A challenger named by version while the alias points elsewhere keeps that alias.
    assert aliases.promotion({**state, "challenger": "5"}, "1", "2") == [
        Move("previous", "1", None),
        Move("champion", "2", "1"),
    ]


def test_adoption_replaces_the_champion_only_where_the_pipeline_started():
    assert aliases.adoption(NONE, "1", "") == [Move("champion", "1", None)]
    started = {**NONE, "champion": "1"}
    assert aliases.adoption(started, "2", "1") == [
        Move("previous", "1", None),
        Move("champion", "2", "1"),
    ]
    assert aliases.adoption({**NONE, "champion": "2"}, "2", "1") == []  # already champion
    # A replayed start (champion 1) after a promotion to 3: nothing is taken back.
    promoted = {"champion": "3", "challenger": None, "previous": "2"}
    assert aliases.adoption(promoted, "2", "1") == []
    assert aliases.adoption(promoted, "2", "") == []


def test_after_shows_every_version_with_its_aliases_once_the_moves_are_done():
    table = {"1": ["champion", "stable"], "2": ["challenger"]}
    moves = aliases.promotion({"champion": "1", "challenger": "2", "previous": "7"}, "1", "2")
    assert aliases.after(table, moves) == {"1": ["previous", "stable"], "2": ["champion"]}
    assert table == {"1": ["champion", "stable"], "2": ["challenger"]}  # not changed
    # A version the table did not hold appears; no moves, no change.
    assert aliases.after({}, [Move("previous", "7", None)]) == {"7": ["previous"]}
    assert aliases.after(table, []) == {"1": ["champion", "stable"], "2": ["challenger"]}


def test_describe_names_the_aliases_set_in_a_fixed_order():
    moves = [Move("previous", "1", None), Move("champion", "2", "1"), Move("challenger", None, "2")]
    assert aliases.describe(moves) == "champion = version 2, previous = version 1"
    assert aliases.describe([]) is None
    assert aliases.describe([Move("challenger", None, "2")]) is None
    assert Move("challenger", None, "2").describe() == "challenger removed"


def _model(name: str, versions: int, folder) -> mlflow.MlflowClient:
    client = mlflow.MlflowClient()
    client.create_registered_model(name)
    for _ in range(versions):
        client.create_model_version(name, source=str(folder))
    return client


def _registry(client, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_apply_carries_out_the_plan_the_report_shows(module_tracking_uri, tmp_path):
    assert aliases.read_state("nobody") == NONE  # no such model: nothing set
    client = _model("m", 3, tmp_path)
    assert not aliases.apply("m", [])
    assert aliases.apply("m", aliases.first_champion(aliases.read_state("m"), "1"))
    assert aliases.apply("m", aliases.nominate(aliases.read_state("m"), "2"))
    state = aliases.read_state("m")
    assert state == {"champion": "1", "challenger": "2", "previous": None}
    moves = aliases.promotion(state, "1", "2")
    shown = aliases.after({"1": ["champion"], "2": ["challenger"]}, moves)
    assert aliases.apply("m", moves)
    registry = _registry(client, "m")
    assert registry == {"champion": "2", "previous": "1"}
    assert {a: v for v, names in shown.items() for a in names} == registry


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_a_nomination_tags_the_candidate_it_replaces(module_tracking_uri, tmp_path):
    client = _model("n", 2, tmp_path)
    client.set_registered_model_alias("n", "challenger", "1")
    moves = aliases.nominate(aliases.read_state("n"), "2")
    aliases.apply("n", moves)
    aliases.supersede("n", moves, "run-9")
    assert client.get_model_version("n", "1").tags[aliases.SUPERSEDED_TAG] == "2 (run-9)"
    assert aliases.SUPERSEDED_TAG not in client.get_model_version("n", "2").tags


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_a_failed_move_puts_back_every_alias_already_moved(module_tracking_uri, tmp_path):
    client = _model("p", 2, tmp_path)
    client.set_registered_model_alias("p", "champion", "1")
    client.set_registered_model_alias("p", "challenger", "2")
    # previous moves first, then champion fails: version 9 does not exist.
    moves = aliases.promotion(aliases.read_state("p"), "1", "9")
    assert [m.alias for m in moves] == ["previous", "champion"]
    with pytest.raises(MlflowException):
        aliases.apply("p", moves)
    assert _registry(client, "p") == {"champion": "1", "challenger": "2"}


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_a_registry_that_moved_since_it_was_read_is_refused_and_nothing_moves(
    module_tracking_uri, tmp_path
):
    client = _model("q", 3, tmp_path)
    client.set_registered_model_alias("q", "champion", "1")
    client.set_registered_model_alias("q", "challenger", "2")
    moves = aliases.promotion(aliases.read_state("q"), "1", "2")
    client.set_registered_model_alias("q", "champion", "3")  # another run promoted meanwhile
    with pytest.raises(MlcycleError, match=r"moved since they were read \(champion is 3"):
        aliases.apply("q", moves)
    assert _registry(client, "q") == {"champion": "3", "challenger": "2"}
