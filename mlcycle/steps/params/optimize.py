"""optimize's parameters: the entry point's options and their checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlcycle.models.families import FAMILY_NAMES
from mlcycle.params import check, etl_run_param, model_name_param, param

if TYPE_CHECKING:
    from mlcycle.scaleout.optuna_storage import StorageSpec


@dataclass(frozen=True)
class OptimizeParams:
    etl_run: str = etl_run_param()
    model_name: str = model_name_param()
    family: str = param("rf", "model family to tune", choices=FAMILY_NAMES)
    n_trials: int = param(30, "trials this worker runs (0: nothing to do)", minimum=0)
    timeout: float = param(
        0.0, "seconds after which this worker starts no new trial (0: none)", minimum=0
    )
    n_jobs: int = param(1, "trials run in parallel threads by this worker", minimum=1, allow=(-1,))
    storage: str = param(
        "",
        "journal file path, sqlite:///FILE, postgresql://USER@HOST/DB or mysql://… "
        "(default: a journal file under .mlcycle/)",
    )
    study_name: str = param("", "Optuna study (default: MODEL_NAME-FAMILY-METRIC)")
    metric: str = param("", "metric to tune (default: r2 for regression, f1 for classification)")
    seed: int = param(42, "seed of the sampler and the models", minimum=0)

    def validate(self) -> OptimizeParams:
        check(self)  # first: the closed sets and bounds need no library
        from mlcycle.models import tuning

        tuning.check_metric_name(self.metric)
        self.storage_spec()
        return self

    def storage_spec(self) -> StorageSpec:
        from mlcycle.scaleout import optuna_storage

        return optuna_storage.parse_storage(self.storage)
