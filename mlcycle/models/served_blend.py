"""The blend as it is served: one MLflow pyfunc carrying its members (the served forests,
boosted trees and networks main registered, as they were logged: not re-trained) and
their weights (`mlcycle.models.blending` chose them).

A regression answers the weighted mean of its members' values; a classifier the weighted
mean of their class probabilities, and the most probable class. Raw rows in, as every
served model: each member reads them with its own preprocessing, and a row a member
cannot read is the same 400 naming the column (`serving.BadInput`).

Saved as a folder: one sub-folder per member (the member's own saved form) and
`blend.json` with the weights, the members' kinds, labels and versions, and the schema."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.models.network import NetworkModel
from mlcycle.models.served_forest import ForestModel
from mlcycle.models.serving import BadInput, RawRowPyfunc, log_from_code, served_model

log = logging.getLogger(__name__)

FAMILY = "blend"
BLEND_ARTIFACT = "blend"
MEMBERS_TAG = "mlcycle.blend_members"  # label:version=weight, ...
KINDS = {"forest": ForestModel, "network": NetworkModel}
_FORMAT = 1
_META_FILE = "blend.json"


class BlendModel:
    """In memory: the members (ForestModel or NetworkModel), their weights, the schema."""

    def __init__(
        self,
        schema: Schema,
        members: list,
        weights: list[float],
        labels: list[str] | None = None,
        versions: list[str] | None = None,
    ):
        if len(members) != len(weights) or not members:
            raise MlcycleError("a blend needs one weight per member, and a member")
        self.schema = schema
        self.members = list(members)
        self.weights = [float(w) for w in weights]
        self.labels = list(labels or [f"member{i}" for i in range(len(members))])
        self.versions = list(versions or [""] * len(members))
        self.classes_ = list(schema.classes) if schema.task == "classification" else []
        # Each member's probability columns in the blend's class order.
        self._orders = [self._order(m) for m in self.members] if self.classes_ else []

    def _order(self, member) -> list[int]:
        """For each of the blend's classes, its column in the member's probabilities (-1:
        a class the member's training rows lacked, probability 0)."""
        has, wanted = [str(c) for c in member.classes_], [str(c) for c in self.classes_]
        if set(has) - set(wanted):
            raise MlcycleError(f"a blend member answers classes {has}, not {self.classes_}")
        return [has.index(c) if c in has else -1 for c in wanted]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw rows -> the weighted mean of the members' values, or the most probable class."""
        if self.schema.task == "classification":
            proba = self.predict_proba(frame)
            return np.asarray(self.classes_)[proba.argmax(axis=1)]
        out = np.zeros(len(frame))
        for member, weight in zip(self.members, self.weights, strict=True):
            out += weight * np.asarray(member.predict(frame), dtype="float64")
        return out

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """The weighted mean of the members' class probabilities, in classes_ order."""
        if self.schema.task != "classification":
            raise MlcycleError("predict_proba is for classification models only")
        out = np.zeros((len(frame), len(self.classes_)))
        for member, weight, order in zip(self.members, self.weights, self._orders, strict=True):
            proba = np.asarray(member.predict_proba(frame), dtype="float64")
            known = [j for j, i in enumerate(order) if i >= 0]
            out[:, known] += weight * proba[:, [order[j] for j in known]]
        return out

    def describe(self) -> str:
        return ", ".join(
            f"{label}:{version}={weight:g}"
            for label, version, weight in zip(self.labels, self.versions, self.weights, strict=True)
        )

    # -- persistence: a folder per member and one JSON of the rest
    def save(self, path: str | Path) -> Path:
        kinds = [
            next((k for k, c in KINDS.items() if isinstance(m, c)), None) for m in self.members
        ]
        if None in kinds:
            odd = self.members[kinds.index(None)]
            raise MlcycleError(f"a blend cannot carry a {type(odd).__name__}")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        members = []
        for i, (member, kind) in enumerate(zip(self.members, kinds, strict=True)):
            member.save(path / f"member_{i}")
            members.append(
                {
                    "kind": kind,
                    "folder": f"member_{i}",
                    "weight": self.weights[i],
                    "label": self.labels[i],
                    "version": self.versions[i],
                }
            )
        meta = {"format": _FORMAT, "schema": self.schema.to_dict(), "members": members}
        (path / _META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> BlendModel:
        path = Path(path)
        meta = json.loads((path / _META_FILE).read_text())
        members = meta["members"]
        return cls(
            Schema.from_dict(meta["schema"]),
            [KINDS[m["kind"]].load(path / m["folder"]) for m in members],
            [m["weight"] for m in members],
            [m["label"] for m in members],
            [m["version"] for m in members],
        )


class BlendPyfunc(RawRowPyfunc):
    """The logged blend: raw rows in; values or labels out, or class probabilities with
    params={'predict_method': 'predict_proba'}, as its members answer."""

    ANSWERED_AS_400 = (BadInput, MlcycleError)

    def load_context(self, context):
        self.model = BlendModel.load(context.artifacts[BLEND_ARTIFACT])
        # Warm every member once, so the first served request is not the slow one.
        schema = self.model.schema
        empty = {c: [np.nan] for c in schema.numeric} | {c: [None] for c in schema.categorical}
        self.model.predict(pd.DataFrame(empty))


def log_blend(
    model: BlendModel,
    schema: Schema,
    train: pd.DataFrame,
    model_name: str | None,
    pip_requirements: list[str],
    version_tags: dict[str, str] | None = None,
):
    """Log the blend as a raw-row pyfunc (`serving.log_from_code`) with its members'
    requirements; register it under model_name when given. Returns MLflow's ModelInfo."""
    tags = {MEMBERS_TAG: model.describe()}
    info = log_from_code(
        model,
        BlendPyfunc,
        schema,
        train,
        model_name,
        artifact=BLEND_ARTIFACT,
        family=FAMILY,
        pip_requirements=pip_requirements,
        metadata={MEMBERS_TAG: model.describe()},
        version_tags=version_tags,
        tags=tags,
    )
    log.info(
        "logged blend %s of %s (registered version %s)",
        info.model_uri,
        model.describe(),
        info.registered_model_version,
    )
    return info


def blend_of(pyfunc_model) -> BlendModel | None:
    """The BlendModel inside a loaded pyfunc, or None when it is another kind of model."""
    return served_model(pyfunc_model, BlendModel)


def member_of(pyfunc_model):
    """The mlcycle model inside a candidate's loaded pyfunc that a blend can carry (a
    forest, boosted trees, a network), or None."""
    inner = served_model(pyfunc_model)
    return inner if isinstance(inner, tuple(KINDS.values())) else None


def requirements(paths: list[str]) -> list[str]:
    """The union of the members' requirements.txt lines, in order."""
    lines: list[str] = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.strip() and line.strip() not in lines:
                lines.append(line.strip())
    return lines
