"""watch's parameters: the entry point's options and their checks."""

from __future__ import annotations

from dataclasses import dataclass

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.lifecycle import trigger
from mlcycle.params import ALERT_URL_HELP, check, model_name_param, param


@dataclass(frozen=True)
class WatchParams:
    model_name: str = model_name_param()
    policy: str = param("auto", "when to retrain", choices=trigger.POLICIES)
    max_decay: float = param(
        trigger.DEFAULTS["max_decay"],
        "drop of the primary metric (R², F1) below the champion's baseline that counts as decay",
        minimum=0,
    )
    k: int = param(trigger.DEFAULTS["k"], "decayed labelled windows needed ...", minimum=1)
    n: int = param(trigger.DEFAULTS["n"], "... among the last n labelled windows", minimum=1)
    max_drift_share: float = param(
        trigger.DEFAULTS["max_drift_share"],
        "share of drifted features above which drift triggers",
        minimum=0,
    )
    max_age: int = param(
        trigger.DEFAULTS["max_age"],
        "batches a champion may score before a retrain; 0: no limit",
        minimum=0,
    )
    cooldown: int = param(
        trigger.DEFAULTS["cooldown"],
        "batches after a retrain or promotion in which drift, estimates or age do not trigger",
        minimum=0,
    )
    reference: str = param(
        "", "main's reference CSV when it retrains; empty: the data the champion learned on"
    )
    n_trials: int = param(20, "main's optimize trials when it retrains", minimum=0)
    epochs: int = param(60, "main's retrain epochs when it retrains", minimum=1)
    env_manager: str = param(
        "local", "environment manager of main and its children", choices=config.ENV_MANAGERS
    )
    alert_url: str = param("", ALERT_URL_HELP)

    def validate(self) -> WatchParams:
        check(self)
        if self.k > self.n:
            raise MlcycleError(f"parameter k ({self.k}) must not exceed n ({self.n})")
        if self.max_drift_share > 1:
            raise MlcycleError(
                f"parameter max_drift_share is a share between 0 and 1 (0.5: half the "
                f"features), got {self.max_drift_share}; 1: drift never triggers"
            )
        # Checked now, not the day watch triggers main, weeks into a schedule.
        if self.reference and not config.resolve_path(self.reference).is_file():
            raise MlcycleError(
                f"parameter reference: data file not found: {config.resolve_path(self.reference)}"
            )
        return self

    @property
    def thresholds(self) -> dict:
        return {name: getattr(self, name) for name in trigger.DEFAULTS}
