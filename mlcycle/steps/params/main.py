"""main's parameters: the entry point's options and their checks."""

from __future__ import annotations

from dataclasses import dataclass

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.models.families import FAMILY_NAMES
from mlcycle.params import ALERT_URL_HELP, check, model_name_param, param
from mlcycle.steps.params.etl import EtlParams


@dataclass(frozen=True)
class MainParams(EtlParams):
    """etl's parameters (in their order; main's seed also seeds models and search), then
    the pipeline's own."""

    seed: int = param(42, "seed of the splits, models and search", minimum=0)
    model_name: str = model_name_param()
    n_trials: int = param(20, "optimize trials (0 skips optimize)", minimum=0)
    optimize_family: str = param("nn", "family optimize tunes", choices=FAMILY_NAMES)
    refit_families: str = param(
        "rf,hgb",
        "families also fitted with their defaults on current train as candidates "
        "(comma-separated; the tuned family is left out; empty for none)",
    )
    epochs: int = param(60, "retrain's maximum epochs")
    members: int = param(
        1, "networks averaged in retrain's model (retrain's own default: 5)", minimum=1
    )
    promote: bool = param(True, "let monitor move the champion alias")
    use_cache: bool = param(True, "reuse finished identical steps")
    force_baseline: bool = param(
        False, "train a new forest even when a champion exists, and make it the champion"
    )
    env_manager: str = param(
        "local",
        "environment manager of the child runs (local inside an isolated env)",
        choices=config.ENV_MANAGERS,
    )
    alert_url: str = param("", ALERT_URL_HELP)

    def validate(self) -> MainParams:
        check(self)
        if unknown := set(self.refits()) - set(FAMILY_NAMES):
            raise MlcycleError(
                f"parameter refit_families must name families of {', '.join(FAMILY_NAMES)}, "
                f"got {', '.join(sorted(unknown))}"
            )
        return self

    def refits(self) -> list[str]:
        """The families refitted as candidates, in order, without the tuned one."""
        names = [f.strip() for f in self.refit_families.split(",") if f.strip()]
        tuned = self.optimize_family if self.n_trials else None
        return [f for i, f in enumerate(names) if f != tuned and f not in names[:i]]
