"""Model families (rf: the forest, nn: the Keras network, hgb: boosted trees) behind one
interface.

A family is a module of this package that provides what `Family` lists: its parameters
(read back from a `best_params.json`), how a model is fitted and logged, and what Optuna
searches for it (search space, objective over preloaded rows, pruner). Steps ask
`get(name)` and never branch on a family's name. A new family is a new module here and
one more entry in FAMILY_NAMES.

The modules are imported on first use: this package is read by every entry point's
parameters (FAMILY_NAMES), and the network's family costs a TensorFlow import."""

from __future__ import annotations

import importlib
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Protocol

from mlcycle.errors import MlcycleError

if TYPE_CHECKING:  # for the annotations only: FAMILY_NAMES is read by every --help
    import pandas as pd

    from mlcycle.ingest.data import Schema

FAMILY_NAMES = ("rf", "nn", "hgb")


class Family(Protocol):
    """What the steps ask of a model family (each family is a module providing these)."""

    NAME: str

    def params_from(self, values: dict) -> Any:
        """The family's parameters from a dict (best_params.json; extra keys ignored)."""

    def fit(self, schema: Schema, params: Any, train: pd.DataFrame) -> Any:
        """A model fitted on the training rows, taking raw rows."""

    def log(
        self,
        model: Any,
        schema: Schema,
        train: pd.DataFrame,
        model_name: str | None,
        *,
        version_tags: dict[str, str] | None = None,
    ) -> Any:
        """Log the model in the active run (registered under model_name, its version
        tagged with version_tags); MLflow's ModelInfo."""

    def suggest(self, trial: Any, task: str, seed: int) -> Any:
        """The parameters an Optuna trial proposes (the search space)."""

    def default_trial(self, task: str) -> dict:
        """The family's defaults as values of the search space: optimize's first trial,
        so that tuning never ends below them on validation."""

    def best_params(self, trial: Any, task: str, seed: int) -> dict:
        """A finished trial's parameters as JSON-ready values, rebuilt by `suggest` so
        that names cannot drift apart, set up for the final refit."""

    def objective(
        self, schema: Schema, train: pd.DataFrame, metric: str, direction: str, seed: int
    ) -> Any:
        """A callable(trial) -> validation score over the training rows (never a test
        split), with a `curves` dict of per-trial series for the trial's run."""

    def pruner(self) -> Any:
        """The Optuna pruner suited to the family's objective."""


def check(name: str) -> str:
    """The family name, or one line naming the parameter and the known families."""
    if name not in FAMILY_NAMES:
        raise MlcycleError(
            f"parameter family must be one of {', '.join(FAMILY_NAMES)}, got {name!r}"
        )
    return name


def get(name: str) -> Family:
    """The family module called `name` (imported now, on first need)."""
    return importlib.import_module(f"{__name__}.{check(name)}")


def known_fields(cls, values: dict):
    """A family's parameters dataclass from a dict (best_params.json): keys that are not
    its fields are ignored."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})
