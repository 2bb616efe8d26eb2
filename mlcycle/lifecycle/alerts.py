"""Alerts: a JSON POST to `alert_url` when something a person should hear about happens.

Events: `drift` (the data drifted beyond the drift threshold), `decay` (the champion's
primary metric fell: realised on labels, or estimated with its whole band below the
reference), `trigger` (watch decided to retrain), `promotion`, `rollback` and
`step_failed` (a step with `alert_url` raised; `mlcycle.cli.entry_point` posts it).

The body (`event` builds it, a pure function) holds the event, the model and version,
the metric values and thresholds behind it, the report's path, the run id, the time
(UTC, ISO 8601) and a one-line `message`. Slack's incoming webhooks take
`{"text": ...}` only: a URL on hooks.slack.com gets that body, and any URL can ask for
it with the fragment `#slack` (or for the JSON body with `#json`); the fragment is never
sent (Mattermost, Rocket.Chat and Teams workflows accept Slack's body too).

Delivery never fails the step and never holds it for long: each attempt has a short
connect timeout, a refused connection or a 5xx/429 answer is retried with a doubling
back-off, and all attempts together stay within `BUDGET` seconds (measured here: a
closed loopback port costs ~0.02 s an attempt, a black-holed address the connect
timeout). A 4xx other than 429 is not retried: the same body would be refused again.
Every delivery and every failure is logged."""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import UTC, datetime
from urllib.parse import urldefrag, urlsplit

import requests

log = logging.getLogger(__name__)

EVENTS = ("drift", "decay", "trigger", "promotion", "rollback", "step_failed")
FORMATS = ("json", "slack")
# Seconds all attempts of one alert may take together, and the bounds of one attempt.
BUDGET = 1.5
CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 1.0
FIRST_BACKOFF = 0.1
MAX_ATTEMPTS = 4
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
SLACK_HOSTS = ("hooks.slack.com",)


# ---------------------------------------------------------------- pure: bodies


def event(
    kind: str,
    *,
    model: str,
    message: str,
    version: str | None = None,
    metrics: dict | None = None,
    thresholds: dict | None = None,
    report: str | None = None,
    run_id: str | None = None,
    when: datetime | None = None,
    **extra,
) -> dict:
    """The alert's JSON body. Metric values that are not finite numbers become null."""
    if kind not in EVENTS:
        raise ValueError(f"unknown alert event {kind!r} (one of {', '.join(EVENTS)})")
    return {
        "event": kind,
        "model": model,
        "version": version,
        "metrics": {k: _number(v) for k, v in (metrics or {}).items()},
        "thresholds": {k: _number(v) for k, v in (thresholds or {}).items()},
        "report": report,
        "run_id": run_id,
        "time": (when or datetime.now(UTC)).isoformat(),
        "message": message,
        **extra,
    }


def _number(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return number if math.isfinite(number) else None


def target(url: str) -> tuple[str, str]:
    """(the URL to post to, 'json' or 'slack'): the fragment `#slack`/`#json` decides, else
    a hooks.slack.com host means Slack's body."""
    address, fragment = urldefrag(url.strip())
    if fragment in FORMATS:
        return address, fragment
    host = (urlsplit(address).hostname or "").lower()
    return address, "slack" if host in SLACK_HOSTS else "json"


def slack_body(body: dict) -> dict:
    """Slack's incoming-webhook body: one text, the event's figures on a second line."""
    figures = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in {**body["metrics"], **body["thresholds"]}.items()
    )
    where = " · ".join(
        f"{label} {body[key]}"
        for label, key in (("run", "run_id"), ("report", "report"))
        if body[key]
    )
    version = f" v{body['version']}" if body.get("version") else ""
    lines = [f"*mlcycle {body['event']}* — {body['model']}{version}: {body['message']}"]
    lines += [text for text in (figures, where) if text]
    return {"text": "\n".join(lines)}


def retry_delays(budget: float = BUDGET, first: float = FIRST_BACKOFF) -> list[float]:
    """The pauses before attempts 2, 3, ...: doubling, at most MAX_ATTEMPTS attempts."""
    return [first * 2**i for i in range(MAX_ATTEMPTS - 1) if first * (2 ** (i + 1) - 1) < budget]


# ---------------------------------------------------------------- delivery


def post(url: str, body: dict, *, budget: float = BUDGET) -> bool:
    """POST the alert, retrying within `budget` seconds; True when it was delivered.

    Never raises: a failed alert is logged, and the step goes on."""
    if not url:
        return False
    try:
        address, fmt = target(url)
        shown = _safe(address)
    except ValueError as exc:  # an unparsable host: never the step's traceback
        log.warning(
            "alert %s for %s NOT delivered: alert_url is not a URL (%s) (the step goes on)",
            body.get("event"),
            body.get("model"),
            exc,
        )
        return False
    payload = slack_body(body) if fmt == "slack" else body
    data = json.dumps(payload, ensure_ascii=False, default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "mlcycle-alerts"}
    deadline = time.monotonic() + budget
    delays = [0.0, *retry_delays(budget)]
    problem = "no attempt made"
    for attempt, delay in enumerate(delays, start=1):
        if time.monotonic() + delay >= deadline:
            break
        time.sleep(delay)
        left = deadline - time.monotonic()
        timeout = (min(CONNECT_TIMEOUT, left), min(READ_TIMEOUT, left))
        try:
            answer = requests.post(address, data=data, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            problem = f"{type(exc).__name__}: {_short(exc)}"
        else:
            if answer.status_code < 300:
                log.info(
                    "alert %s for %s delivered to %s (HTTP %d, attempt %d)",
                    body["event"],
                    body["model"],
                    shown,
                    answer.status_code,
                    attempt,
                )
                return True
            problem = f"HTTP {answer.status_code}"
            if answer.status_code not in RETRY_STATUS:
                break
        log.warning(
            "alert %s to %s: attempt %d failed (%s)",
            body["event"],
            shown,
            attempt,
            problem,
        )
    log.warning(
        "alert %s for %s NOT delivered to %s: %s (the step goes on)",
        body["event"],
        body["model"],
        shown,
        problem,
    )
    return False


def send(url: str, kind: str, **fields) -> bool:
    """Build and post one event when an alert_url is set; False (and nothing sent) else."""
    if not url:
        return False
    try:
        body = event(kind, **fields)
    except Exception:  # noqa: BLE001 - an alert must never fail the step
        log.exception("alert %s could not be built", kind)
        return False
    return post(url, body)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."


def _safe(address: str) -> str:
    """The URL as logs show it: Slack-style webhook URLs carry their secret in the path."""
    parts = urlsplit(address)
    return f"{parts.scheme}://{parts.netloc}{'/…' if parts.path not in ('', '/') else ''}"


# ---------------------------------------------------------------- events of a monitor run


def monitor_events(tags: dict, metrics: dict, model: str) -> list[tuple[str, dict]]:
    """(event, fields) a finished monitor run calls for, from its tags and metrics: its
    promotion, drift beyond the threshold, and decay (the label-free estimate's whole band
    below the reference, or the champion's current_test metric below its reference_test
    one by more than DECAY_ALERT). Pure."""
    from mlcycle.monitoring import promotion
    from mlcycle.monitoring.drift import DRIFT_SHARE

    out = []
    common = {"model": model, "report": tags.get("mlcycle.report")}
    champion = tags.get("mlcycle.champion_version")
    if tags.get(promotion.DECISION_TAG) == promotion.PROMOTED:
        challenger = tags.get("mlcycle.challenger_version")
        figures = {k: v for k, v in metrics.items() if k.startswith(("challenger_", "champion_"))}
        figures.update({k: metrics[k] for k in ("gate_delta",) if k in metrics})
        out.append(
            (
                "promotion",
                {
                    **common,
                    "version": challenger,
                    "message": f"version {challenger} is the champion now (was {champion}): "
                    + tags.get(promotion.REASON_TAG, ""),
                    "metrics": _current_test(figures),
                },
            )
        )
    if metrics.get("dataset_drift", 0.0) >= 1.0:
        share = metrics.get("drift_share")
        out.append(
            (
                "drift",
                {
                    **common,
                    "version": champion,
                    "message": f"{share:.0%} of the features drifted"
                    if share is not None
                    else "the data drifted",
                    "metrics": {
                        k: metrics[k]
                        for k in ("drift_share", "n_drifted_columns", "prediction_drift_score")
                        if k in metrics
                    },
                    "thresholds": {"drift_share": DRIFT_SHARE},
                },
            )
        )
    decay = _decay(metrics)
    if decay:
        out.append(("decay", {**common, "version": champion, **decay}))
    return out


# The drop of the champion's primary metric, current_test below reference_test, a
# labelled monitor run alerts on (watch's max_decay decides retraining; this only tells).
DECAY_ALERT = 0.05


def _decay(metrics: dict) -> dict | None:
    for metric in ("r2", "f1"):
        high, reference = (
            metrics.get(f"estimated_{metric}_high"),
            metrics.get(f"reference_{metric}"),
        )
        if high is not None and reference is not None and high < reference:
            return {
                "message": f"estimated {metric} {metrics.get(f'estimated_{metric}', high):.3f}, "
                f"its whole band below the reference {reference:.3f}",
                "metrics": {
                    k: metrics[k]
                    for k in (
                        f"estimated_{metric}",
                        f"estimated_{metric}_low",
                        f"estimated_{metric}_high",
                    )
                    if k in metrics
                }
                | {f"reference_{metric}": reference},
            }
        current = metrics.get(f"champion_current_test_{metric}")
        reference = metrics.get(f"champion_reference_test_{metric}")
        if current is not None and reference is not None and reference - current > DECAY_ALERT:
            return {
                "message": f"champion's {metric} {current:.3f} on current_test, "
                f"{reference - current:.3f} below reference_test",
                "metrics": {
                    f"champion_current_test_{metric}": current,
                    f"champion_reference_test_{metric}": reference,
                },
                "thresholds": {"decay": DECAY_ALERT},
            }
    return None


def _current_test(figures: dict) -> dict:
    return {k: v for k, v in figures.items() if "current_test" in k or k == "gate_delta"}


def report_monitor_run(url: str, run_id: str) -> int:
    """Post the events a monitor run calls for; the number delivered. Never raises."""
    if not url:
        return 0
    import mlflow

    try:
        run = mlflow.get_run(run_id)
        tags, metrics = run.data.tags, run.data.metrics
        found = monitor_events(tags, metrics, tags.get("mlcycle.model_name", ""))
    except Exception:  # noqa: BLE001 - an alert must never fail the step
        log.exception("alerts of monitor run %s could not be read", run_id)
        return 0
    return sum(send(url, kind, run_id=run_id, **fields) for kind, fields in found)
