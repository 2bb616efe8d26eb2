"""The monitor step: drift, champion vs challenger, and (optionally) promotion."""

from __future__ import annotations

from dataclasses import dataclass

from mlcycle import config
from mlcycle.drift import AUTO_SAMPLE_SIZE
from mlcycle.params import param


@dataclass(frozen=True)
class MonitorParams:
    etl_run: str = param("", "etl run id (default: the latest finished one)")
    model_name: str = param(config.DEFAULT_MODEL_NAME, "registered model name")
    champion: str = param("", "model URI (default: models:/NAME@champion)")
    challenger: str = param("", "model URI (default: models:/NAME@challenger)")
    output: str = param("reports/", "report folder; relative to the project root")
    promote: bool = param(False, "move the champion alias when the challenger qualifies")
    min_improvement: float = param(
        0.0,
        "absolute gain needed on current_test's primary metric (R² or F1)",
        minimum=0,
    )
    tolerance: str = param(
        "auto",
        "absolute loss allowed on reference_test's primary metric; auto: at most the gain "
        "on current_test",
    )
    sample_size: int = param(
        0, f"rows per side for drift; 0: all up to {AUTO_SAMPLE_SIZE:,}", minimum=0
    )
