"""The optimize step: tune a model family with Optuna, one nested run per trial."""

from __future__ import annotations

from dataclasses import dataclass

from mlcycle import config
from mlcycle.families import FAMILY_NAMES
from mlcycle.params import param


@dataclass(frozen=True)
class OptimizeParams:
    etl_run: str = param("", "etl run id (default: the latest finished one)")
    model_name: str = param(config.DEFAULT_MODEL_NAME, "registered model name")
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
