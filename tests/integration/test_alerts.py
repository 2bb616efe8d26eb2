"""Alerts from real steps to a real HTTP server on loopback: a rollback tells, a failed
step tells, and an endpoint that is down or answers 500 neither fails nor holds a step."""

import time

import mlflow
import pytest
from click.testing import CliRunner

from entrypoints.rollback import main as rollback_command
from mlcycle.lifecycle import alerts, aliases
from tests.alert_receiver import Receiver, closed_port_url

pytestmark = pytest.mark.integration


@pytest.fixture
def two_versions(tracking_uri):
    """A registered model whose champion is version 2 and previous version 1 (two
    versions of one tiny logged model: rollback reads aliases and versions only)."""
    name = "alerting"
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=_Constant())
    client = mlflow.MlflowClient()
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, info.model_uri, run_id=info.run_id)
    state = aliases.read_state(name)
    aliases.apply(name, aliases.adoption(state, "1", None), reason="test set-up")
    aliases.apply(name, aliases.promotion(aliases.read_state(name), "1", "2"), reason="test")
    return name


class _Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [0.0] * len(model_input)


def _rollback(name, url):
    start = time.monotonic()
    result = CliRunner().invoke(
        rollback_command, ["--model-name", name, "--alert-url", url, "--reason", "bad batch"]
    )
    return result, start, time.monotonic() - start


def test_a_rollback_posts_its_event_to_the_loopback_server_within_five_seconds(two_versions):
    with Receiver() as server:
        result, start, _ = _rollback(two_versions, server.url)
        assert result.exit_code == 0, result.output
    assert server.received[0]["at"] - start < 5
    assert aliases.read_state(two_versions)["champion"] == "1"
    (got,) = server.received
    body = got["body"]
    assert body["event"] == "rollback" and body["model"] == two_versions
    assert body["version"] == "1" and body["replaced_version"] == "2"
    assert "bad batch" in body["message"] and body["run_id"]
    assert mlflow.get_run(body["run_id"]).data.tags["mlcycle.step"] == "rollback"


def test_a_step_that_fails_posts_step_failed_and_still_exits_with_its_own_code(tracking_uri):
    with Receiver() as server:
        result, _, _ = _rollback("no-such-model", server.url)
    assert result.exit_code == 2 and "no registered model 'no-such-model'" in result.output
    (got,) = server.received
    assert got["body"]["event"] == "step_failed" and got["body"]["step"] == "rollback"
    assert "no registered model" in got["body"]["message"]
    assert mlflow.get_run(got["body"]["run_id"]).info.status == "FAILED"


def test_a_server_answering_500_is_retried_and_the_rollback_still_succeeds(two_versions):
    with Receiver(statuses=(500,)) as server:
        result, _, _ = _rollback(two_versions, server.url)
    assert result.exit_code == 0, result.output
    assert len(server.received) >= 2
    assert aliases.read_state(two_versions)["champion"] == "1"


def test_a_dead_endpoint_adds_at_most_two_seconds_and_the_rollback_still_succeeds(two_versions):
    # The same rollback, twice, without and with a dead endpoint: the difference is the
    # alert's cost.
    plain, _, without = _rollback(two_versions, "")
    assert plain.exit_code == 0, plain.output
    dead, _, with_dead = _rollback(two_versions, closed_port_url())
    assert dead.exit_code == 0, dead.output
    assert with_dead - without <= 2.0, (with_dead, without)


def test_a_monitor_run_s_promotion_and_drift_reach_the_server_as_monitor_posts_them(tracking_uri):
    with mlflow.start_run() as run:
        mlflow.set_tags(
            {
                "mlcycle.step": "monitor",
                "mlcycle.model_name": "alerting",
                "mlcycle.promotion.decision": "promoted",
                "mlcycle.promotion.reason": "better on current_test",
                "mlcycle.champion_version": "1",
                "mlcycle.challenger_version": "2",
                "mlcycle.report": "/reports/alerting/report.html",
            }
        )
        mlflow.log_metrics(
            {"dataset_drift": 1.0, "drift_share": 0.75, "challenger_current_test_r2": 0.9}
        )
    with Receiver() as server:
        assert alerts.report_monitor_run(server.url, run.info.run_id) == 2
    bodies = [r["body"] for r in server.received]
    assert [b["event"] for b in bodies] == ["promotion", "drift"]
    assert all(b["run_id"] == run.info.run_id for b in bodies)
    assert bodies[0]["report"] == "/reports/alerting/report.html"
    assert bodies[1]["metrics"]["drift_share"] == 0.75
