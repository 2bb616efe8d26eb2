"""The rollback step: put an earlier version back as the champion.

Reads the model's aliases; moves `champion` to `to_version` (the `previous` alias unless
told) and `previous` to the champion it replaces, through `aliases.apply`, which records
both moves in the promotion ledger with the reason. The run is tagged with the model,
the version restored and the one replaced. Anything that cannot be rolled back (no such
model or version, no champion, no previous version, the champion already) is one line
and moves nothing."""

from __future__ import annotations

import logging

import mlflow
from mlflow.exceptions import MlflowException

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.lifecycle import alerts, aliases, registry
from mlcycle.steps.params.rollback import RollbackParams

log = logging.getLogger(__name__)


def plan(params: RollbackParams, state: aliases.State) -> list[aliases.Move]:
    """The moves, once the model and the version asked for are known to exist."""
    if not any(state.values()):
        _check_model(params.model_name)
    try:
        moves = aliases.rollback(state, params.to_version.strip())
    except MlcycleError as exc:
        raise MlcycleError(f"rollback of {params.model_name}: {exc}; nothing moved") from exc
    target = next(m.to for m in moves if m.alias == config.CHAMPION)
    _check_version(params.model_name, target)
    return moves


def _check_model(model_name: str) -> None:
    try:
        registry.client().get_registered_model(model_name)
    except MlflowException as exc:
        raise MlcycleError(
            f"parameter model_name: no registered model {model_name!r}; nothing moved"
        ) from exc


def _check_version(model_name: str, version: str) -> None:
    """The version exists and is ready to serve (a failed registration is not)."""
    try:
        found = registry.client().get_model_version(model_name, version)
    except MlflowException as exc:
        raise MlcycleError(
            f"rollback of {model_name}: version {version} does not exist; nothing moved"
        ) from exc
    if found.status != "READY":
        raise MlcycleError(
            f"rollback of {model_name}: version {version} is {found.status}, not READY; "
            "nothing moved"
        )


def execute(params: RollbackParams) -> list[aliases.Move]:
    """Plan against the aliases as read now, apply (recorded in the ledger), tag the run."""
    state = aliases.read_state(params.model_name)
    moves = plan(params, state)
    aliases.apply(params.model_name, moves, reason=params.reason)
    restored = next(m for m in moves if m.alias == config.CHAMPION)
    mlflow.set_tags(
        {
            "mlcycle.model_name": params.model_name,
            "mlcycle.model_version": restored.to,
            "mlcycle.replaced_version": restored.was,
            "mlcycle.reason": params.reason,
        }
    )
    log.info(
        "rollback of %s: champion is version %s again (was %s): %s",
        params.model_name,
        restored.to,
        restored.was,
        params.reason,
    )
    alerts.send(
        params.alert_url,
        "rollback",
        model=params.model_name,
        version=restored.to,
        message=f"champion is version {restored.to} again (was {restored.was}): {params.reason}",
        run_id=mlflow.active_run().info.run_id,
        replaced_version=restored.was,
    )
    return moves
