"""rollback's parameters: the entry point's options and their checks."""

from __future__ import annotations

from dataclasses import dataclass

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.params import ALERT_URL_HELP, check, param


@dataclass(frozen=True)
class RollbackParams:
    model_name: str = param(config.DEFAULT_MODEL_NAME, "registered model name")
    to_version: str = param(
        "", "version to make champion again; empty: the version the previous alias names"
    )
    reason: str = param("manual rollback", "why, as the promotion ledger records it")
    alert_url: str = param("", ALERT_URL_HELP)

    def validate(self) -> RollbackParams:
        check(self)
        if self.to_version and not self.to_version.strip().isdigit():
            raise MlcycleError(
                f"parameter to_version must be a version number or empty, got {self.to_version!r}"
            )
        return self
