"""Where a stop request cannot be raised at once, it is sent again (mlcycle.signals)."""

import contextlib
import signal
import sys

import pytest

from mlcycle import signals


def weakref_cb():  # the name of concurrent.futures' callback, where a raise is dropped
    return signals._in_store_call(sys._getframe())  # noqa: SLF001


def __del__():  # a finalizer's frame, as Python runs it
    return signals._in_store_call(sys._getframe())  # noqa: SLF001


def test_a_request_landing_in_a_finalizer_is_deferred_not_raised_and_lost():
    assert weakref_cb() and __del__()


def test_a_request_in_plain_step_code_is_raised_at_once():
    assert not signals._in_store_call(sys._getframe())  # noqa: SLF001


@pytest.fixture
def fresh_state(monkeypatch):
    monkeypatch.setattr(signals, "_state", {**signals._state, "held": False, "pending": None})
    monkeypatch.setitem(signals._state, "requested", None)
    return signals._state


def a_request_a_library_swallowed():
    """The handler runs where the signal lands; the library around it drops the raise."""
    with contextlib.suppress(signals.Interrupted):
        signals._handler(signal.SIGTERM, sys._getframe())  # noqa: SLF001


def test_a_swallowed_request_acts_at_the_next_check(fresh_state):
    a_request_a_library_swallowed()
    with pytest.raises(signals.Interrupted) as stopped:
        signals.check()
    assert stopped.value.exit_code == 128 + signal.SIGTERM


def test_a_swallowed_request_acts_before_any_alias_move_is_held(fresh_state):
    a_request_a_library_swallowed()
    with pytest.raises(signals.Interrupted):
        signals.hold()
    assert not fresh_state["held"]  # nothing held: the step unwinds, its run ends KILLED
    signals.hold(check_first=False)  # as the unwinding holds it
    assert fresh_state["held"]
    signals.check()  # while held, the request waits for release


def test_no_request_no_stop(fresh_state):
    signals.check()
    signals.hold()
    signals.release()


@pytest.mark.integration  # imports Keras: seconds; `make test`
def test_training_stops_at_the_epoch_after_a_swallowed_request(fresh_state):
    from mlcycle.models.network import tensorflow_and_keras
    from mlcycle.models.training import _epoch_callback

    _, keras = tensorflow_and_keras()
    hook = _epoch_callback(keras, None, 5)
    hook.on_epoch_end(0, {"loss": 1.0})
    a_request_a_library_swallowed()
    with pytest.raises(signals.Interrupted):
        hook.on_epoch_end(1, {"loss": 1.0})


def test_an_exception_escaping_while_a_stop_is_pending_is_that_stop(fresh_state):
    wrapped = RuntimeError("Error calling __set_name__ on 'PydanticDescriptorProxy' instance")
    assert signals.as_interrupted(wrapped) is wrapped  # no request: a bug stays a bug
    a_request_a_library_swallowed()
    stop = signals.as_interrupted(wrapped)
    assert isinstance(stop, signals.Interrupted) and stop.__cause__ is wrapped
    assert stop.exit_code == 128 + signal.SIGTERM
