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
import os
import signal
import threading
import time

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


def watch_parent(interval: float = 0.5) -> None:
    """Stop this step (as SIGTERM would) once the process that started it is gone.

    `mlflow run` does not pass on a SIGTERM it receives: it exits and leaves the step
    running as an orphan, its run RUNNING, possibly moving an alias minutes later. Only
    for steps started by MLflow (MLFLOW_RUN_ID set): a person's own detached process is
    left alone."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        log.warning("the process that started this step (pid %d) has gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="mlcycle-parent-watch", daemon=True).start()
