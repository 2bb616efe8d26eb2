"""The baseline step: train the RandomForest champion on reference train."""

from __future__ import annotations

from dataclasses import dataclass

from mlcycle import config
from mlcycle.params import param


@dataclass(frozen=True)
class BaselineParams:
    etl_run: str = param("", "etl run id (default: the latest finished one)")
    model_name: str = param(config.DEFAULT_MODEL_NAME, "registered model name")
    n_estimators: int = param(100, "trees in the forest", minimum=1)
    max_depth: str = param("", "maximum tree depth; empty for unlimited")
    min_samples_split: int = param(2, "rows needed to split a node", minimum=2)
    min_samples_leaf: int = param(1, "rows needed in a leaf", minimum=1)
    class_weight: str = param("", "classification only: balanced, balanced_subsample or empty")
    seed: int = param(42, "seed of the forest", minimum=0)
