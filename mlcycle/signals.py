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


# `requested`: the first stop request received, kept until the process ends. Raising
# `Interrupted` where the signal lands is not always enough: seen here, a SIGTERM during
# Keras' training vanished (no trace, the network trained on and was registered, exit 0),
# an exception raised inside a library's native code and cleared there. The request is
# therefore also checked at the points that matter (`check`): each epoch, and before the
# first alias move and the run's end (`hold`).
_state = {"held": False, "pending": None, "previous": {}, "requested": None}

# Raising inside these leaves a database transaction open (seen here: the run stayed
# RUNNING and the process hung at exit, its logging thread waiting on the lock the
# interrupted connection held). A stop request arriving there waits until the step is
# out of them: the signal is sent again every RETRY seconds until then.
_STORE_MODULES = ("sqlalchemy", "sqlite3", "alembic", "mlflow.store", "mlflow.tracking")
RETRY = 0.1


# An exception raised inside a finalizer is printed and dropped by Python ("Exception
# ignored in"): seen here, a SIGTERM landing in concurrent.futures' weakref callback was
# lost and the step went on to register its model. Such a request is sent again too.
_FINALIZERS = ("__del__", "weakref_cb")


def _in_store_call(frame) -> bool:
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(_STORE_MODULES):
            return True
        if frame.f_code.co_name in _FINALIZERS:
            return True
        frame = frame.f_back
    return False


def _resend(signum: int) -> None:
    time.sleep(RETRY)
    signal.pthread_kill(threading.main_thread().ident, signum)


def _handler(signum, frame):
    if _state["requested"] is None:
        _state["requested"] = signum
    if _state["held"]:
        if _state["pending"] is None:
            log.warning(
                "%s received during an alias move: finishing it first",
                signal.Signals(signum).name,
            )
        _state["pending"] = signum
        return
    if _in_store_call(frame):
        threading.Thread(target=_resend, args=(signum,), daemon=True).start()
        return
    raise Interrupted(signum)


def install() -> None:
    """Route SIGTERM and SIGINT through the handler (main thread only, as Python requires)."""
    _state.update(held=False, pending=None, requested=None)
    _state["previous"] = {signum: signal.signal(signum, _handler) for signum in SIGNALS}


def uninstall() -> None:
    """Put back the handlers `install` replaced (a step run in-process, as tests do)."""
    for signum, previous in _state["previous"].items():
        signal.signal(signum, previous)
    _state["previous"] = {}


def exit_soon(code: int, grace: float = 10.0) -> None:
    """Exit with `code`; if the normal exit has not finished after `grace` seconds (a
    library's worker thread that never ends), end the process anyway."""

    def force():
        time.sleep(grace)
        log.warning("the process did not exit within %.0f s of the stop: forcing it", grace)
        os._exit(code)

    threading.Thread(target=force, name="mlcycle-exit", daemon=True).start()
    raise SystemExit(code)


def requested() -> int | None:
    """The stop request received, if any (its signal number)."""
    return _state["requested"]


def as_interrupted(exc: BaseException) -> BaseException:
    """`exc` as the stop it really is: an exception that escaped while a stop request was
    pending is most likely that request's `Interrupted`, which the code it landed in turned
    into another (Python 3.11 wraps any exception raised in `__set_name__`, e.g. inside
    pydantic's class creation while MLflow imports, in a RuntimeError: the stopped step
    then ended FAILED with exit 1)."""
    if isinstance(exc, Interrupted) or _state["requested"] is None:
        return exc
    stop = Interrupted(_state["requested"])
    stop.__cause__ = exc
    return stop


def check() -> None:
    """Raise `Interrupted` if a stop was requested and nothing holds it: a request whose
    exception a library swallowed acts here (called between epochs, and by `hold`)."""
    if _state["requested"] is not None and not _state["held"]:
        raise Interrupted(_state["requested"])


def hold(check_first: bool = True) -> None:
    """From now until `release`, a stop request waits (called before the first alias move,
    and before the run ends). A request received earlier and lost acts first, so nothing
    moves and the run does not end FINISHED; `check_first=False` while already unwinding
    from one."""
    if check_first:
        check()
    _state["held"] = True


def held() -> bool:
    """Whether stop requests wait now (between `hold` and `release`)."""
    return _state["held"]


def unhold() -> None:
    """Stop holding without acting on a request held meanwhile (it stays requested): for a
    hold whose run never opened."""
    _state["held"] = False
    if _state["pending"] is not None and _state["requested"] is None:
        _state["requested"] = _state["pending"]
    _state["pending"] = None


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
