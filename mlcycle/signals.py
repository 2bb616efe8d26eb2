"""SIGTERM and SIGINT end a step's run as KILLED within moments, never half-way through an
alias move.

A scheduler or a container runtime stops a process with SIGTERM; Python's default then
exits at once, leaving the MLflow run RUNNING forever. Installed by every entry point,
the handler raises `Interrupted` instead, so the step's `with` blocks unwind and the run
ends KILLED. From the first alias move to the end of the run the signal is held: the
moves finish, the run ends FINISHED, and only then does the process exit, so a run that
moved an alias always ends FINISHED and a run that did not finish never moved one."""

from __future__ import annotations

import logging
import signal

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """The process was asked to stop; `signum` says how."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process a signal ended


_state = {"held": False, "pending": None}


def _handler(signum, frame):  # noqa: ARG001 - the signal module's signature
    if _state["held"]:
        if _state["pending"] is None:
            log.warning(
                "%s received during an alias move: finishing it first",
                signal.Signals(signum).name,
            )
        _state["pending"] = signum
        return
    raise Interrupted(signum)


def install() -> None:
    """Route SIGTERM and SIGINT through the handler (main thread only, as Python requires)."""
    _state.update(held=False, pending=None)
    for signum in SIGNALS:
        signal.signal(signum, _handler)


def hold() -> None:
    """From now until `release`, a stop request waits (called before the first alias move)."""
    _state["held"] = True


def release() -> None:
    """Let a stop request held meanwhile take effect now (called once the run has ended)."""
    pending = _state["pending"]
    _state.update(held=False, pending=None)
    if pending is not None:
        raise Interrupted(pending)
