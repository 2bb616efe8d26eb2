"""The promotion gate's decision (a pure function of two models' metrics on the same
rows), and moving the aliases it decides on, all or nothing, on a real SQLite registry."""

import math
import socket

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED

from mlcycle import registry
from mlcycle.errors import MlcycleError
from mlcycle.promotion import NOT_PROMOTED, PROMOTED, QUALIFIED, apply, decide, tags


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


# --- apply and the registry reads it relies on, on a real SQLite registry ---------------


def _registry(tmp_path, versions=3, name="m"):
    """A registered model with `versions` versions (a folder stands in for the model)."""
    client = registry.client()
    client.create_registered_model(name)
    for _ in range(versions):
        client.create_model_version(name, source=str(tmp_path), run_id=None)
    return client


def _aliases(name="m") -> dict[str, str]:
    return {a: str(v) for a, v in registry.client().get_registered_model(name).aliases.items()}


PROMOTE = decide("regression", _m(0.6, 0.9), _m(0.7, 0.9))


def test_apply_moves_champion_previous_and_challenger_together(tracking_uri, tmp_path):
    _registry(tmp_path)
    registry.set_alias("m", "champion", 1)
    registry.set_alias("m", "challenger", 2)
    registry.set_alias("m", "previous", 3)
    assert apply(PROMOTE, "m", "1", "2") is True
    assert _aliases() == {"champion": "2", "previous": "1"}
    # Not promoted, or promote=false: nothing moves.
    registry.set_alias("m", "challenger", 3)
    assert apply(decide("regression", _m(0.6, 0.9), _m(0.5, 0.9)), "m", "2", "3") is False
    qualified = decide("regression", _m(0.6, 0.9), _m(0.7, 0.9), requested=False)
    assert apply(qualified, "m", "2", "3") is False
    assert _aliases() == {"champion": "2", "previous": "1", "challenger": "3"}


@pytest.mark.parametrize("had_previous", [True, False])
def test_a_failed_promotion_puts_back_every_alias_it_moved(tracking_uri, tmp_path, had_previous):
    client = _registry(tmp_path)
    registry.set_alias("m", "champion", 2)
    if had_previous:
        registry.set_alias("m", "previous", 1)
    before = _aliases()
    # The challenger's version goes away between the decision and the move (a teammate
    # deleted it): previous has already moved when champion fails.
    client.delete_model_version("m", "3")
    with pytest.raises(MlcycleError) as caught:
        apply(PROMOTE, "m", "2", "3")
    message = str(caught.value)
    assert message.startswith("promotion of m version 3 failed, aliases unchanged: ")
    assert "RESOURCE_DOES_NOT_EXIST" in message and "\n" not in message
    assert _aliases() == before


def test_absent_models_versions_and_aliases_read_as_absent(tracking_uri, tmp_path):
    _registry(tmp_path, versions=1)
    assert registry.version_for_alias("m", "champion") is None  # no such alias
    assert registry.version_for_alias("nope", "champion") is None  # no such model
    for uri in ("models:/m@champion", "models:/nope@champion", "models:/m/9", "models:/nope/1"):
        with pytest.raises(registry.ModelNotFound, match=f"model {uri} does not exist"):
            registry.resolve_version(uri)
    assert registry.resolve_version("models:/m/1").version == 1
    # A malformed alias is not an absent one (MLflow gives both the same error code).
    with pytest.raises(MlcycleError, match="Invalid alias name") as caught:
        registry.resolve_version("models:/m@not an alias")
    assert not isinstance(caught.value, registry.ModelNotFound)


def test_a_refusing_registry_is_an_error_naming_the_uri_not_an_absent_model(
    tracking_uri, tmp_path, monkeypatch
):
    """A 403 as MLflow's REST client raises it for the auth server's 'Permission denied'
    (mlflow.utils.rest_utils.verify_rest_response); starting that server here would cost
    more than the rest of this file (tests/integration/test_team.py runs it)."""
    _registry(tmp_path, versions=1)
    registry.set_alias("m", "champion", 1)

    def refuse(self, *args, **kwargs):
        raise MlflowException(
            "API request to endpoint /api/2.0/mlflow/registered-models/alias failed with "
            "error code 403 != 200. Response body: 'Permission denied'",
            error_code=PERMISSION_DENIED,
        )

    monkeypatch.setattr(mlflow.MlflowClient, "get_model_version_by_alias", refuse)
    monkeypatch.setattr(mlflow.MlflowClient, "get_model_version", refuse)
    for uri in ("models:/m@champion", "models:/m/1"):
        with pytest.raises(MlcycleError) as caught:
            registry.resolve_version(uri)
        assert not isinstance(caught.value, registry.ModelNotFound)
        assert f"cannot read {uri} from the registry" in str(caught.value)
        assert "PERMISSION_DENIED" in str(caught.value) and "403" in str(caught.value)
    with pytest.raises(MlcycleError, match="cannot read models:/m@previous"):
        registry.version_for_alias("m", "previous")


def test_an_unreachable_registry_is_an_error_naming_the_uri_and_the_server(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once closed
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    mlflow.set_tracking_uri(url)
    try:
        with pytest.raises(MlcycleError) as caught:
            registry.version_for_alias("m", "champion")
    finally:
        mlflow.set_tracking_uri(None)
    message = str(caught.value)
    assert message.startswith(f"cannot read models:/m@champion from the registry {url}: ")
    assert f"tracking server {url} is unreachable" in message
