"""Fixtures of the unit tests: small fitted networks, shared (each fit costs ~2 s)."""

import pytest

from mlcycle.models.training import fit_network
from tests.unit.networks import BIN, REG, TINY, labelled, rows


@pytest.fixture(scope="session")
def reg_fit():
    """One small regression fit shared by the tests that only read it."""
    seen = []
    model, history = fit_network(
        REG, TINY, rows(seed=1), on_epoch_end=lambda e, logs: seen.append((e, "val_loss" in logs))
    )
    return model, history, seen


@pytest.fixture(scope="session")
def bin_model():
    return fit_network(BIN, TINY, labelled(BIN))[0]
