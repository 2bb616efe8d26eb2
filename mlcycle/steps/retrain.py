"""The retrain step: a Keras network trained on the new data, registered as challenger."""

from __future__ import annotations

from dataclasses import dataclass

from mlcycle import config
from mlcycle.params import param

STRATEGIES = ("finetune", "scratch")
WINDOWS = ("current", "all")


@dataclass(frozen=True)
class RetrainParams:
    etl_run: str = param("", "etl run id (default: the latest finished one)")
    model_name: str = param(config.DEFAULT_MODEL_NAME, "registered model name")
    epochs: int = param(60, "maximum training epochs", minimum=1)
    batch_size: int = param(32, "rows per gradient step", minimum=1)
    learning_rate: float = param(0.001, "Adam's learning rate (> 0)")
    base_model: str = param("", "model URI to start from (default: models:/NAME@champion)")
    strategy: str = param(
        "finetune",
        "finetune (continue the base network's weights) or scratch",
        choices=STRATEGIES,
    )
    window: str = param(
        "current",
        "training rows: current train only, or all (reference train + current train)",
        choices=WINDOWS,
    )
    params_from: str = param(
        "", "an optimize run (family nn) whose best network hyper-parameters to use"
    )
    patience: int = param(10, "early-stopping patience in epochs; 0 turns it off", minimum=0)
    seed: int = param(42, "seed of the network's weights and batches", minimum=0)
