"""Where a stop request cannot be raised at once, it is sent again (mlcycle.signals)."""

import sys

from mlcycle import signals


def weakref_cb():  # the name of concurrent.futures' callback, where a raise is dropped
    return signals._in_store_call(sys._getframe())  # noqa: SLF001


def __del__():  # a finalizer's frame, as Python runs it
    return signals._in_store_call(sys._getframe())  # noqa: SLF001


def test_a_request_landing_in_a_finalizer_is_deferred_not_raised_and_lost():
    assert weakref_cb() and __del__()


def test_a_request_in_plain_step_code_is_raised_at_once():
    assert not signals._in_store_call(sys._getframe())  # noqa: SLF001
