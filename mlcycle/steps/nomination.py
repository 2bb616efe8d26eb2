"""main's nomination (its part of the main step): the best candidate on the judging
slice becomes `challenger`, with every score, the winner, and how sure the slice is of
it (the winner's lead over the runner-up, `mlcycle.models.selection.lead`) on main's run."""

from __future__ import annotations

import logging

import mlflow

from mlcycle.lifecycle import aliases
from mlcycle.models import blending, selection
from mlcycle.monitoring.metrics import PRIMARY

log = logging.getLogger("mlcycle.steps.main")


def nominate_best(run, name: str, entries: list[selection.Entry], task: str, seed: int) -> str:
    """Nominate challenger the best candidate on the judging slice (each step nominated
    its own: the last is not the best for being last); every score, the winner and its
    lead over the runner-up (how sure the slice is) go to main's run. Returns the
    winner's version."""
    metric = PRIMARY[task]
    winner, reason = selection.choose(entries, metric)
    found = lead(entries, winner, task, seed)
    if found is not None:
        runner, interval = found
        reason += "; " + selection.lead_text(winner, runner, interval)
        mlflow.log_metrics(
            {
                "validation_lead": interval.delta,
                "validation_lead_ci_low": interval.low,
                "validation_lead_ci_high": interval.high,
            }
        )
    log.info("candidates: %s", reason)
    mlflow.log_metrics(selection.scores(entries, metric))
    mlflow.set_tags({"mlcycle.candidate_winner": winner.label, "mlcycle.candidate_reason": reason})
    moves = aliases.selection(aliases.read_state(name), entries[-1].version, winner.version)
    aliases.apply(name, moves, reason=f"main: {reason}")
    aliases.supersede(name, moves, run.info.run_id)
    return winner.version


def lead(entries: list[selection.Entry], winner: selection.Entry, task: str, seed: int):
    """(the runner-up, the winner's lead over it on the slice), or None when there is no
    runner-up to compare with, one of the two logged no slice predictions, or they cannot
    be compared: a diagnostic, which never stops the nomination."""
    runner = selection.runner_up(entries, winner, PRIMARY[task])
    if runner is None or not (winner.run_id and runner.run_id):
        return None
    try:
        frames = [blending.read_slice_predictions(e.run_id) for e in (winner, runner)]
        if any(frame is None for frame in frames):
            return None
        interval = selection.lead(task, frames[0], frames[1], seed)
    except Exception as error:  # an odd artifact: no lead, the pick stands
        log.warning("candidates: no lead over %s measured: %s", runner.label, error)
        return None
    return None if interval is None else (runner, interval)
