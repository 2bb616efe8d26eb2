"""retrain's parameters: the entry point's options and their checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlcycle import config
from mlcycle.params import check, etl_run_param, model_name_param, param

if TYPE_CHECKING:
    from mlcycle.models.network import NetworkParams


STRATEGIES = (config.AUTO, *config.STRATEGIES)


WINDOWS = (config.AUTO, *config.WINDOWS)


@dataclass(frozen=True)
class RetrainParams:
    etl_run: str = etl_run_param()
    model_name: str = model_name_param()
    epochs: int = param(60, "maximum training epochs", minimum=1)
    batch_size: int = param(32, "rows per gradient step", minimum=1)
    learning_rate: float = param(0.001, "Adam's learning rate (> 0)")
    base_model: str = param("", "model URI to start from (default: models:/NAME@champion)")
    strategy: str = param(
        config.AUTO,
        "auto (try the others, keep the best on a validation slice of current train "
        "rows), finetune (continue the base network), transfer (a network of reference "
        "rows continued on the window) or scratch",
        choices=STRATEGIES,
    )
    window: str = param(
        config.AUTO,
        "training rows: auto (current or all, judged as strategy auto is), current "
        "train only, or all (reference train + current train)",
        choices=WINDOWS,
    )
    params_from: str = param(
        "", "an optimize run (family nn) whose best network hyper-parameters to use"
    )
    patience: int = param(10, "early-stopping patience in epochs; 0 turns it off", minimum=0)
    seed: int = param(42, "seed of the network's weights and batches", minimum=0)
    members: int = param(
        5,
        "networks averaged in the model registered: the kept candidate trained again from "
        "seeds seed+1, seed+2, ... on the same rows (1: one network)",
        minimum=1,
    )

    def validate(self) -> RetrainParams:
        check(self)
        self.network()
        return self

    def network(self) -> NetworkParams:
        """The training asked for; the architecture is NetworkParams' own until tuned
        parameters (params_from) or a fine-tuned base decide it."""
        from mlcycle.models.network import NetworkParams  # MLflow: on need

        return NetworkParams(
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            epochs=self.epochs,
            patience=self.patience,
            seed=self.seed,
        ).validate()
