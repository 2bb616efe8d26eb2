"""Alerts: the bodies (pure) and their delivery to a real HTTP server on loopback,
including one that answers 500 and one that is down."""

import logging
import time
from datetime import UTC, datetime

import pytest

from mlcycle.lifecycle import alerts
from tests.alert_receiver import Receiver, closed_port_url


def _body(**extra):
    return alerts.event(
        "trigger",
        model="loan-amount",
        version="3",
        message="realised r2 fell 0.45 below its baseline",
        metrics={"realised_r2": 0.48, "odd": float("nan")},
        thresholds={"max_decay": 0.05},
        report="/tmp/report.html",
        run_id="abc",
        when=datetime(2026, 12, 2, 10, 0, tzinfo=UTC),
        **extra,
    )


def test_the_body_carries_event_model_version_metrics_thresholds_report_run_and_time():
    body = _body()
    assert body["event"] == "trigger" and body["model"] == "loan-amount"
    assert body["version"] == "3" and body["run_id"] == "abc"
    assert body["metrics"] == {"realised_r2": 0.48, "odd": None}
    assert body["thresholds"] == {"max_decay": 0.05}
    assert body["report"] == "/tmp/report.html"
    assert body["time"] == "2026-12-02T10:00:00+00:00"


def test_an_unknown_event_is_refused():
    with pytest.raises(ValueError, match="unknown alert event"):
        alerts.event("weather", model="m", message="rain")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:9/x", ("http://127.0.0.1:9/x", "json")),
        (
            "https://hooks.slack.com/services/T/B/C",
            ("https://hooks.slack.com/services/T/B/C", "slack"),
        ),
        ("https://chat.example/hooks/abc#slack", ("https://chat.example/hooks/abc", "slack")),
        (
            "https://hooks.slack.com/services/T/B/C#json",
            ("https://hooks.slack.com/services/T/B/C", "json"),
        ),
    ],
)
def test_slack_s_body_goes_to_slack_s_host_or_to_a_url_ending_in_slack(url, expected):
    assert alerts.target(url) == expected


def test_the_slack_body_is_one_text_with_the_figures():
    text = alerts.slack_body(_body())["text"]
    assert text.startswith("*mlcycle trigger* — loan-amount v3: realised r2 fell")
    assert "realised_r2=0.48" in text and "max_decay=0.05" in text and "run abc" in text


def test_the_back_off_doubles_and_fits_in_the_budget():
    delays = alerts.retry_delays(1.5, 0.1)
    assert delays == [0.1, 0.2, 0.4]
    assert sum(delays) < 1.5


def test_an_alert_reaches_a_loopback_server_within_five_seconds():
    with Receiver() as server:
        start = time.monotonic()
        assert alerts.post(server.url, _body())
        assert server.received[0]["at"] - start < 5
    got = server.received[0]
    assert got["path"] == "/hooks/alerts" and got["content_type"] == "application/json"
    assert got["body"]["event"] == "trigger" and got["body"]["metrics"]["realised_r2"] == 0.48


def test_a_url_ending_in_slack_gets_slack_s_body_and_the_fragment_is_not_sent():
    with Receiver() as server:
        assert alerts.post(server.url + "#slack", _body())
    assert server.received[0]["path"] == "/hooks/alerts"
    assert list(server.received[0]["body"]) == ["text"]


def test_a_server_answering_500_is_retried_until_it_takes_the_alert(caplog):
    caplog.set_level(logging.INFO, logger="mlcycle.lifecycle.alerts")
    with Receiver(statuses=(500, 500, 200)) as server:
        assert alerts.post(server.url, _body())
    assert len(server.received) == 3
    assert "attempt 1 failed (HTTP 500)" in caplog.text
    assert "delivered" in caplog.text and "attempt 3)" in caplog.text


def test_a_server_that_always_answers_500_costs_at_most_the_budget_and_raises_nothing(caplog):
    with Receiver(statuses=(500,)) as server:
        start = time.monotonic()
        assert not alerts.post(server.url, _body())
        took = time.monotonic() - start
    assert len(server.received) == alerts.MAX_ATTEMPTS
    assert took <= alerts.BUDGET + 0.3
    assert "NOT delivered" in caplog.text


def test_a_refused_request_is_not_retried():
    with Receiver(statuses=(404,)) as server:
        assert not alerts.post(server.url, _body())
    assert len(server.received) == 1


def test_a_url_whose_host_cannot_be_parsed_is_not_delivered_and_raises_nothing(caplog):
    # The parameters refuse such a URL; an alert_url reaching post another way (a step's
    # failure alert, a library caller) must still never fail the step with a traceback.
    assert not alerts.post("http://[::1/hooks", _body())
    assert "NOT delivered" in caplog.text


def test_a_dead_endpoint_adds_at_most_two_seconds_and_raises_nothing(caplog):
    start = time.monotonic()
    assert not alerts.post(closed_port_url(), _body())
    assert time.monotonic() - start <= 2.0
    assert "attempt 2 failed (ConnectionError" in caplog.text
    assert "NOT delivered" in caplog.text


def test_a_black_holed_address_is_bounded_by_the_budget_too():
    # 192.0.2.0/24 is reserved for documentation: nothing answers, connects time out.
    start = time.monotonic()
    assert not alerts.post("http://192.0.2.1:9/x", _body())
    assert time.monotonic() - start <= 2.0


def test_no_url_sends_nothing():
    assert not alerts.send("", "trigger", model="m", message="x")


def test_a_promotion_drift_and_estimated_decay_each_call_for_their_event():
    tags = {
        "mlcycle.promotion.decision": "promoted",
        "mlcycle.promotion.reason": "better on current_test",
        "mlcycle.champion_version": "2",
        "mlcycle.challenger_version": "3",
        "mlcycle.report": "/r/report.html",
    }
    metrics = {
        "dataset_drift": 1.0,
        "drift_share": 0.6,
        "challenger_current_test_r2": 0.9,
        "champion_current_test_r2": 0.5,
        "estimated_r2": 0.6,
        "estimated_r2_low": 0.55,
        "estimated_r2_high": 0.65,
        "reference_r2": 0.9,
    }
    found = dict(alerts.monitor_events(tags, metrics, "loan-amount"))
    assert list(found) == ["promotion", "drift", "decay"]
    assert found["promotion"]["version"] == "3"
    assert "version 3 is the champion now (was 2)" in found["promotion"]["message"]
    assert found["drift"]["thresholds"] == {"drift_share": 0.5}
    assert found["decay"]["metrics"]["estimated_r2_high"] == 0.65


def test_a_quiet_monitor_run_calls_for_no_alert():
    tags = {"mlcycle.promotion.decision": "not_promoted"}
    metrics = {
        "dataset_drift": 0.0,
        "drift_share": 0.1,
        "estimated_r2_high": 0.95,
        "reference_r2": 0.9,
    }
    assert alerts.monitor_events(tags, metrics, "m") == []


def test_an_estimate_whose_band_reaches_the_reference_is_no_decay():
    metrics = {"estimated_f1_high": 0.81, "estimated_f1": 0.7, "reference_f1": 0.8}
    assert alerts.monitor_events({}, metrics, "m") == []
