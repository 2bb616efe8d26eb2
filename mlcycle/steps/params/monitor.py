"""monitor's parameters: the entry point's options and their checks."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.params import ALERT_URL_HELP, check, etl_run_param, model_name_param, param

AUTO = "auto"


@dataclass(frozen=True)
class MonitorParams:
    etl_run: str = etl_run_param()
    model_name: str = model_name_param()
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
        0, f"rows per side for drift; 0: all up to {config.AUTO_SAMPLE_SIZE:,}", minimum=0
    )
    confidence: float = param(
        0.95,
        "the promotion gate judges a paired bootstrap of the difference at this one-sided "
        "confidence; 0: the point estimates alone",
        minimum=0,
    )
    incumbent: bool = param(
        True,
        "the champion has served before this round: the challenger must be better on "
        "current_test at the gate's confidence; false (main sets it for a champion it "
        "registered itself on the same rows): the better of the two on current_test's rows",
    )
    score_run: str = param(
        "",
        "a score run whose batch has no labels yet: monitor it without labels (drift, "
        "prediction drift, estimated performance; never promotes); empty: the etl run's "
        "labelled rows",
    )
    evidently_workspace: str = param(
        config.DEFAULT_EVIDENTLY_WORKSPACE,
        "Evidently workspace that gets the run's snapshot (make evidently-ui); relative to "
        "the project root; empty: none",
    )
    alert_url: str = param("", ALERT_URL_HELP)

    def validate(self) -> MonitorParams:
        """Every check a value allows before any run opens, the report folder included;
        the tolerance comes back spelled as the step logs it ('auto' or a number)."""
        tolerance = parse_tolerance(self.tolerance)
        _check_numbers(
            min_improvement=self.min_improvement,
            sample_size=self.sample_size,
            **({} if tolerance is None else {"tolerance": tolerance}),
        )
        checked = dataclasses.replace(self, tolerance=AUTO if tolerance is None else str(tolerance))
        check(checked)
        if not self.confidence < 1:
            raise MlcycleError(
                f"parameter confidence must be below 1 (0: point rule), got {self.confidence}"
            )
        if self.score_run and self.promote:  # ignored without a word, it read as "kept"
            raise MlcycleError(
                "parameter promote: a batch given by score_run has no labels, so nothing can "
                "be promoted on it (no gate is run); drop promote, or monitor an etl run's "
                "labelled rows"
            )
        config.report_output_folder(self.output, self.model_name)
        config.evidently_workspace_folder(self.evidently_workspace)
        return checked

    @property
    def gate_tolerance(self) -> float | None:
        """The tolerance the gate applies: None is auto (the gain on current_test)."""
        return parse_tolerance(self.tolerance)


def parse_tolerance(text: str) -> float | None:
    """'auto' (or empty) -> None; otherwise a number."""
    if str(text).strip().lower() in (AUTO, ""):
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise MlcycleError(
            f"parameter tolerance must be auto or a number >= 0, got {text!r}"
        ) from exc


def _check_numbers(**values) -> None:
    for name, value in values.items():
        if not math.isfinite(value) or value < 0:
            raise MlcycleError(f"parameter {name} must be a number >= 0, got {value}")
