"""The main step: etl -> baseline -> optimize -> retrain -> monitor as child runs."""

from __future__ import annotations

from dataclasses import dataclass

from mlcycle import config
from mlcycle.data import TASKS
from mlcycle.families import FAMILY_NAMES
from mlcycle.params import param


@dataclass(frozen=True)
class MainParams:
    reference: str = param(config.DEFAULT_REFERENCE, "CSV of the data the model learned on")
    current: str = param(config.DEFAULT_CURRENT, "CSV of the new data")
    target: str = param(config.DEFAULT_TARGET, "the column to predict")
    task: str = param("auto", "what the target is", choices=TASKS)
    drop_columns: str = param(
        config.DEFAULT_DROP_COLUMNS,
        "comma-separated identifier columns that must never be features",
    )
    test_size: float = param(0.2, "share of each file held out for testing")
    seed: int = param(42, "seed of the splits, models and search", minimum=0)
    model_name: str = param(config.DEFAULT_MODEL_NAME, "registered model name")
    n_trials: int = param(20, "optimize trials (0 skips optimize)", minimum=0)
    optimize_family: str = param("nn", "family optimize tunes", choices=FAMILY_NAMES)
    epochs: int = param(60, "retrain's maximum epochs", minimum=1)
    promote: bool = param(True, "let monitor move the champion alias")
    use_cache: bool = param(True, "reuse finished identical steps")
    force_baseline: bool = param(
        False, "train a new forest even when a champion exists, and make it the champion"
    )
    env_manager: str = param(
        "local", "environment manager of the child runs (local inside an isolated env)"
    )
