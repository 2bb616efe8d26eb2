"""etl's parameters: the entry point's options and their checks."""

from __future__ import annotations

from dataclasses import dataclass

from mlcycle import config
from mlcycle.params import check, param


@dataclass(frozen=True)
class EtlParams:
    reference: str = param(config.DEFAULT_REFERENCE, "CSV of the data the model learned on")
    current: str = param(config.DEFAULT_CURRENT, "CSV of the new data")
    target: str = param(config.DEFAULT_TARGET, "the column to predict")
    task: str = param("auto", "what the target is", choices=config.TASKS)
    drop_columns: str = param(
        config.DEFAULT_DROP_COLUMNS,
        "comma-separated identifier columns that must never be features",
    )
    test_size: float = param(0.2, "share of each file held out for testing")
    seed: int = param(42, "seed of the splits", minimum=0)

    def validate(self) -> EtlParams:
        check(self)
        return self
