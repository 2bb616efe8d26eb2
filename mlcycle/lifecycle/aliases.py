"""The one owner of the registry aliases `champion`, `challenger` and `previous`.

Every alias move is planned here by a pure function over the aliases as they were read
(`first_champion`, `nominate`, `promotion`, `adoption`) and carried out by `apply`, all
or nothing: each move states the version it expects to replace, and `apply` refuses to
act on a registry that has moved since it was read (another run promoted meanwhile), and
puts back what it moved when a later move fails. The report shows the same plan it
applies (`after`), so what the page announces and what happens cannot differ.

What `challenger` means: the candidate most recently nominated by a step that trained
one (optimize, retrain). A nomination that replaces another candidate says so in the
log and tags the replaced version `mlcycle.superseded_by`; in `main`, retrain's network
(trained with optimize's best parameters) is the challenger monitor judges.

`rollback` plans the way back to an earlier champion. Every move `apply` makes is
recorded, with the reason it is given, in the promotion ledger (`mlcycle.lifecycle.ledger`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mlcycle import config, signals
from mlcycle.errors import MlcycleError
from mlcycle.lifecycle import ledger, registry

log = logging.getLogger(__name__)

ALIASES = (config.CHAMPION, config.CHALLENGER, config.PREVIOUS)
SUPERSEDED_TAG = "mlcycle.superseded_by"

State = dict[str, str | None]  # alias -> version it points at (None: unset)


class StaleState(MlcycleError):
    """The aliases moved since the plan read them: nothing was applied."""


@dataclass(frozen=True)
class Move:
    """Point `alias` at version `to` (None: remove it), replacing `was`."""

    alias: str
    to: str | None
    was: str | None

    def describe(self) -> str:
        return f"{self.alias} = version {self.to}" if self.to else f"{self.alias} removed"


def read_state(model_name: str) -> State:
    """alias -> version for the aliases the pipeline moves, as the registry holds them."""
    state: State = {}
    for alias in ALIASES:
        version = registry.version_for_alias(model_name, alias)
        state[alias] = str(version.version) if version else None
    return state


def _move(state: State, alias: str, to: str | None) -> list[Move]:
    to = None if to is None else str(to)
    return [] if state.get(alias) == to else [Move(alias, to, state.get(alias))]


def first_champion(state: State, version: str) -> list[Move]:
    """A model's first version becomes its champion; later ones wait for monitor."""
    return [] if state.get(config.CHAMPION) else _move(state, config.CHAMPION, version)


def nominate(state: State, version: str) -> list[Move]:
    """The newly trained candidate becomes the challenger."""
    return _move(state, config.CHALLENGER, version)


def selection(state: State, last: str, best: str) -> list[Move]:
    """main's choice: the best candidate replaces the last one nominated (`last`) as
    challenger. Only while `last` is the challenger: a re-run whose steps were all reused
    finds its winner nominated already, or spent by a promotion since, and moves nothing."""
    if state.get(config.CHALLENGER) != str(last) or str(best) == str(last):
        return []
    return _move(state, config.CHALLENGER, best)


def promotion(state: State, champion: str | None, challenger: str) -> list[Move]:
    """The challenger becomes champion; the champion it was compared with (None: another
    model's, or none) becomes previous; the challenger alias is spent."""
    moves = [] if champion is None else _move(state, config.PREVIOUS, champion)
    moves += _move(state, config.CHAMPION, challenger)
    if state.get(config.CHALLENGER) == str(challenger):
        moves += _move(state, config.CHALLENGER, None)
    return moves


def adoption(state: State, forest: str, started_from: str | None) -> list[Move]:
    """main's force_baseline: the new forest replaces the champion, which becomes previous.

    Only while the champion is where the pipeline started (started_from): a re-run that
    replays an earlier identical run's starting state must not undo a promotion since."""
    current = state.get(config.CHAMPION)
    if (current or "") != (started_from or "") or current == str(forest):
        return []
    moves = _move(state, config.PREVIOUS, current) if current else []
    return moves + _move(state, config.CHAMPION, forest)


def rollback(state: State, to_version: str | None) -> list[Move]:
    """The champion goes back to `to_version` (None or "": the `previous` version) and
    the champion it replaces becomes previous, so a second rollback undoes the first.
    A challenger that is the version restored is spent, as a promotion spends it.

    Refused (MlcycleError) for a model with no champion, with no previous version to go
    back to, or when the version asked for is the champion already. Whether the version
    exists is for the caller to check against the registry: this plan only reads state."""
    champion = state.get(config.CHAMPION)
    if not champion:
        raise MlcycleError("the model has no champion: there is nothing to roll back")
    target = str(to_version) if to_version else state.get(config.PREVIOUS)
    if not target:
        raise MlcycleError(
            "the model has no previous alias to roll back to: pass to_version=<version>"
        )
    if target == champion:
        raise MlcycleError(f"version {target} is the champion already: nothing to roll back")
    moves = _move(state, config.CHAMPION, target) + _move(state, config.PREVIOUS, champion)
    if state.get(config.CHALLENGER) == target:
        moves += _move(state, config.CHALLENGER, None)
    return moves


def after(aliases: dict[str, list[str]], moves: list[Move]) -> dict[str, list[str]]:
    """version -> sorted aliases once the moves are applied (for the report's table)."""
    out = {version: set(names) for version, names in aliases.items()}
    for move in moves:
        for names in out.values():
            names.discard(move.alias)
        if move.to is not None:
            out.setdefault(move.to, set()).add(move.alias)
    return {version: sorted(names) for version, names in out.items()}


def describe(moves: list[Move]) -> str | None:
    """'champion = version 3, previous = version 1', or None when nothing moves."""
    kept = [m for m in moves if m.to is not None]
    ordered = sorted(kept, key=lambda m: ALIASES.index(m.alias))
    return ", ".join(m.describe() for m in ordered) or None


def apply(model_name: str, moves: list[Move], reason: str = "") -> bool:
    """Carry out the moves, all or nothing, and record them in the ledger with `reason`;
    True when any alias moved.

    Refused (MlcycleError, nothing moved) when an alias no longer points where the plan
    read it: the decision was made against a registry that has changed since. A move the
    ledger cannot record is put back, so the registry never holds an unrecorded move."""
    if not moves:
        return False
    now = read_state(model_name)
    stale = [m for m in moves if now.get(m.alias) != m.was]
    if stale:
        detail = ", ".join(f"{m.alias} is {now.get(m.alias)} (read: {m.was})" for m in stale)
        raise StaleState(
            f"aliases of {model_name} moved since they were read ({detail}): nothing moved; "
            "run the step again to decide on the registry as it is now"
        )
    # A stop request now waits until the run has ended FINISHED (mlcycle.signals).
    signals.hold()
    done: list[Move] = []
    try:
        for move in moves:
            _set(model_name, move.alias, move.to)
            done.append(move)
        ledger.record(model_name, moves, reason)
    except Exception:
        for move in reversed(done):
            _set(model_name, move.alias, move.was)
        raise
    log.info("%s: %s", model_name, ", ".join(m.describe() for m in moves))
    return True


def supersede(model_name: str, moves: list[Move], by_run: str) -> None:
    """Tag the candidate a nomination replaced, so the registry says why it lost its alias."""
    for move in moves:
        if move.alias == config.CHALLENGER and move.was and move.was != move.to:
            log.info(
                "%s: challenger version %s is replaced by version %s",
                model_name,
                move.was,
                move.to,
            )
            registry.tag_version(model_name, move.was, {SUPERSEDED_TAG: f"{move.to} ({by_run})"})


def _set(model_name: str, alias: str, version: str | None) -> None:
    if version is None:
        registry.client().delete_registered_model_alias(model_name, alias)
    else:
        registry.set_alias(model_name, alias, version)


def nominate_challenger(model_name: str, version: str, reason: str, by_run: str) -> None:
    """Nominate the version challenger (planned from the aliases as read, applied all or
    nothing), tagging the candidate it replaces, if any, with `by_run`."""
    moves = nominate(read_state(model_name), version)
    apply(model_name, moves, reason=reason)
    supersede(model_name, moves, by_run)
