"""blend's parameters: the entry point's options and their checks."""

from __future__ import annotations

from dataclasses import dataclass

from mlcycle.errors import MlcycleError
from mlcycle.params import check, etl_run_param, model_name_param, param


@dataclass(frozen=True)
class BlendParams:
    etl_run: str = etl_run_param()
    model_name: str = model_name_param()
    candidates: str = param(
        "", "the candidates' runs, label=run_id comma-separated (main passes its own)"
    )
    confidence: float = param(
        0.5,
        "one-sided level of the paired bootstrap the blend's gain must clear (0.5: its median)",
    )
    seed: int = param(42, "seed of the judging slice, its halves and the bootstrap", minimum=0)

    def validate(self) -> BlendParams:
        check(self)
        self.runs()
        if not 0.5 <= self.confidence < 1:
            raise MlcycleError(f"parameter confidence must be in [0.5, 1), got {self.confidence}")
        return self

    def runs(self) -> dict[str, str]:
        """label -> run id, in the order given."""
        pairs = [p.strip() for p in self.candidates.split(",") if p.strip()]
        if any(p.count("=") != 1 or not all(p.split("=")) for p in pairs):
            raise MlcycleError(
                f"parameter candidates must be label=run_id pairs, got {self.candidates!r}"
            )
        return dict(p.split("=") for p in pairs)
