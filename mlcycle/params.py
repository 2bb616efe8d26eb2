"""The one home of every entry point's parameters: a frozen dataclass per step.

Each field is declared with `param(default, help, ...)`; the click command of the entry
point builds its options from the dataclass (`mlcycle.options.options_from`), and a test
checks that MLproject declares the same names, types and defaults. `check` enforces what
the metadata says (closed sets, lower bounds) with one line naming the parameter, before
the step does any work."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from mlcycle.errors import MlcycleError


def param(
    default: Any,
    help: str,  # noqa: A002 - click's own name for it
    *,
    choices: tuple[str, ...] | None = None,
    minimum: float | None = None,
    allow: tuple = (),
) -> Any:
    """A dataclass field carrying its help text and its constraints.

    `allow` lists values accepted beyond `minimum` (e.g. n_jobs=-1: one per core)."""
    metadata = {"help": help, "choices": choices, "minimum": minimum, "allow": allow}
    return dataclasses.field(default=default, metadata=metadata)


def etl_run_param() -> Any:
    """The etl run a step reads, declared alike by every step that reads one."""
    return param("", "etl run id (default: the latest finished one)")


ALERT_URL_HELP = (
    "URL that gets a JSON POST on drift, decay, a trigger, a promotion, a rollback or a "
    "failure (#slack at the end: Slack's body); empty: no alerts"
)


def model_name_param() -> Any:
    """The registered model a step works on (checked by `check`)."""
    from mlcycle import config

    return param(config.DEFAULT_MODEL_NAME, "registered model name")


def fields_of(cls) -> list[tuple[dataclasses.Field, type]]:
    """(field, resolved type) pairs in declaration order."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


# Characters a registered model name cannot hold: MLflow refuses '/', ':' and '%'; the
# name is also a folder of reports and predictions ('\\') and the part of
# models:/NAME@alias before the '@'.
_NAME_FORBIDDEN = "/\\:%@"


def check_model_name(name: str) -> None:
    """One line for a name MLflow would refuse only after the model is trained and logged,
    or that would escape the folder it names (reports/NAME/, predictions/NAME/)."""
    bad = sorted({c for c in name if c in _NAME_FORBIDDEN or not c.isprintable()})
    if not name.strip() or name != name.strip() or name in (".", "..") or bad:
        why = f"holds {' '.join(repr(c) for c in bad)}" if bad else "is empty, dots or padded"
        raise MlcycleError(
            f"parameter model_name {name!r} cannot name a registered model: it {why} "
            f"(not allowed: empty, '.', '..', spaces around, {' '.join(_NAME_FORBIDDEN)})"
        )


def check_alert_url(url: str) -> None:
    """One line for an alert_url no alert could reach: found only when an alert fired,
    it was a warning in a scheduled job's log (or, for a host urllib cannot parse, a
    traceback); empty means no alerts. The fragment (#slack, #json) picks the body."""
    from urllib.parse import urldefrag, urlsplit

    if not url:
        return
    try:
        parts = urlsplit(urldefrag(url.strip())[0])
        host = parts.hostname
    except ValueError as exc:
        host, parts, why = None, None, str(exc)
    else:
        why = "it needs http:// or https:// and a host"
    if parts is None or parts.scheme.lower() not in ("http", "https") or not host:
        raise MlcycleError(
            f"parameter alert_url {url!r} is not a URL an alert can be posted to ({why}; "
            "e.g. https://hooks.slack.com/services/T/B/C); empty: no alerts"
        )


def check(params) -> None:
    """Raise MlcycleError for the first value outside its closed set or below its bound,
    a model name the registry would refuse, or an alert_url no alert could reach."""
    for field, kind in fields_of(type(params)):
        value = getattr(params, field.name)
        if field.name == "model_name":
            check_model_name(value)
        if field.name == "alert_url":
            check_alert_url(value)
        choices = field.metadata.get("choices")
        if choices and value not in choices:
            raise MlcycleError(
                f"parameter {field.name} must be one of {', '.join(choices)}, got {value!r}"
            )
        minimum = field.metadata.get("minimum")
        if minimum is None or kind not in (int, float) or value in field.metadata["allow"]:
            continue
        if not math.isfinite(value) or value < minimum:
            extra = "".join(f" (or {v})" for v in field.metadata["allow"])
            raise MlcycleError(f"parameter {field.name} must be >= {minimum:g}{extra}, got {value}")


def as_logged(params) -> dict[str, Any]:
    """The parameters as the step logs them (what `mlflow run` would have logged)."""
    return dataclasses.asdict(params)
