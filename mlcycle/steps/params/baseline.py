"""baseline's parameters: the entry point's options and their checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlcycle.errors import MlcycleError
from mlcycle.models import families
from mlcycle.params import check, etl_run_param, model_name_param, param

if TYPE_CHECKING:
    from mlcycle.models.families import rf


# The families baseline trains: trees with their preprocessing, served alike.
TREE_FAMILIES = ("rf", "hgb")


@dataclass(frozen=True)
class BaselineParams:
    etl_run: str = etl_run_param()
    model_name: str = model_name_param()
    n_estimators: int = param(100, "trees in the forest", minimum=1)
    max_depth: str = param("", "maximum tree depth; empty for unlimited")
    min_samples_split: int = param(2, "rows needed to split a node", minimum=2)
    min_samples_leaf: int = param(1, "rows needed in a leaf", minimum=1)
    class_weight: str = param("", "classification only: balanced, balanced_subsample or empty")
    seed: int = param(42, "seed of the forest", minimum=0)
    family: str = param(
        "rf",
        "rf (the forest, with the parameters above) or hgb (boosted trees, their defaults)",
        choices=TREE_FAMILIES,
    )

    def validate(self) -> BaselineParams:
        parse_max_depth(self.max_depth)
        check(self)
        self.forest().validate()
        return self

    def forest(self) -> rf.ForestParams:
        """The forest these parameters describe (the other fields keep their defaults)."""
        from mlcycle.models.families import rf  # scikit-learn and MLflow: on need

        return rf.ForestParams(
            n_estimators=self.n_estimators,
            max_depth=parse_max_depth(self.max_depth),
            min_samples_split=self.min_samples_split,
            min_samples_leaf=self.min_samples_leaf,
            class_weight=self.class_weight or None,
            seed=self.seed,
        )

    def model_params(self):
        """The parameters of the family asked for: the forest's from the step's, the
        boosted trees' defaults (with the step's seed)."""
        from mlcycle.models.families import rf

        if self.family == rf.NAME:
            return self.forest()
        return families.get(self.family).params_from({"seed": self.seed})


def parse_max_depth(text: str | None) -> int | None:
    """'' (MLproject has no optional int) means unlimited depth."""
    if text in (None, "", "None", "none"):
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise MlcycleError(
            f"parameter max_depth must be an integer or empty, got {text!r}"
        ) from exc
