"""The blend step: a weighted blend of the candidates main trained, kept when the judging
slice of current train rows says it beats the best single one (at `confidence`, 0.5 by
default: its median gain over the bootstrap's resamples; `mlcycle.models.blending`).

Reads the etl run (the slice's truth, the rows the blend is scored and logged with) and,
for each candidate run given (`label=run_id`: optimize's, the refits', retrain's), its
slice predictions (`mlcycle.models.blending.SLICE_PREDICTIONS`) and its registered version
(`mlcycle.model_version`). Writes the blend's cross-fitted `validation_<metric>`,
`blend_gain` with its bounds, `weight.<label>`, the tags `mlcycle.blend_kept` and
`mlcycle.blend_reason`; when kept, one pyfunc carrying the registered members (loaded,
not re-trained; `mlcycle.models.served_blend`) with its test metrics, registered and
nominated `challenger` as the other candidates are."""

from __future__ import annotations

import logging

import mlflow

from mlcycle.errors import MlcycleError
from mlcycle.lifecycle import aliases, lineage, registry
from mlcycle.models import blending, served_blend
from mlcycle.models.selection import judging_slice
from mlcycle.monitoring.evaluate import score
from mlcycle.monitoring.metrics import PRIMARY
from mlcycle.steps.etl import open_etl
from mlcycle.steps.params.blend import BlendParams

log = logging.getLogger("mlcycle.blend")

VERSION_TAG = "mlcycle.model_version"


def gather(runs: dict[str, str], schema, truth) -> tuple[list, dict[str, str]]:
    """The candidates whose slice predictions match the judging slice, and why others
    were left out (label -> reason)."""
    kept, left = [], {}
    for label, run_id in runs.items():
        frame = blending.read_slice_predictions(run_id)
        if frame is None:
            left[label] = "no slice predictions logged"
        elif len(frame) != len(truth) or list(frame[blending.TRUTH]) != list(truth):
            left[label] = "predictions of other rows than the judging slice"
        elif (candidate := blending.candidate_of(label, frame, schema)) is None:
            left[label] = "no class probabilities"
        else:
            kept.append(candidate)
    for label, reason in left.items():
        log.info("blend: %s left out: %s", label, reason)
    return kept, left


def build(outcome: blending.Outcome, runs: dict[str, str], model_name: str, schema):
    """The blend of the registered members (loaded as logged) and their requirements."""
    members, versions, needs = [], [], []
    for label in outcome.members:
        version = mlflow.get_run(runs[label]).data.tags.get(VERSION_TAG)
        if not version:
            raise MlcycleError(f"candidate {label} (run {runs[label]}) registered no model")
        uri = f"models:/{model_name}/{version}"
        member = served_blend.member_of(registry.load_pyfunc(uri))
        if member is None:
            raise MlcycleError(f"candidate {label} ({uri}) is not a model a blend can carry")
        members.append(member)
        versions.append(version)
        needs.append(mlflow.pyfunc.get_model_dependencies(uri))
    model = served_blend.BlendModel(schema, members, outcome.weights, outcome.members, versions)
    return model, served_blend.requirements(needs)


def register(model, requirements, schema, splits, params: BlendParams, etl_run: str) -> str:
    """Log and register the blend with its test metrics; its version, not yet challenger."""
    tags = {"mlcycle.family": served_blend.FAMILY, "mlcycle.etl_run": etl_run}
    train = splits.current_train
    info = served_blend.log_blend(
        model, schema, train, params.model_name, requirements, version_tags=tags
    )
    lineage.log_lineage(
        info.model_id, schema, splits, etl_run, score(model, schema, splits), "current_train"
    )
    version = str(info.registered_model_version)
    mlflow.set_tags({VERSION_TAG: version, "mlcycle.model_name": params.model_name})
    return version


def execute(params: BlendParams) -> str | None:
    """Decide on the slice; log, register and nominate the blend when kept. Its version,
    or None."""
    etl = open_etl(params.etl_run)
    schema, splits = etl.schema, etl.splits
    _, judge = judging_slice(splits.current_train, params.seed)
    truth = judge[schema.target].to_numpy()
    runs = params.runs()
    found, left = gather(runs, schema, truth)
    outcome = blending.decide(
        schema.task, truth, found, list(schema.classes), params.seed, params.confidence
    )
    if left:
        outcome.reason += " (left out: " + "; ".join(f"{k}: {v}" for k, v in left.items()) + ")"
    log.info("blend: %s", outcome.reason)
    version = None
    if outcome.kept:
        model, requirements = build(outcome, runs, params.model_name, schema)
        version = register(model, requirements, schema, splits, params, etl.run_id)
    # The run's own figures once the model is logged (they are not the model's), and
    # the alias last, once the run holds everything it says about the blend.
    lineage.log_run_metrics(outcome.metrics(PRIMARY[schema.task]))
    kept = {"mlcycle.blend_kept": str(outcome.kept).lower()}
    mlflow.set_tags(kept | {"mlcycle.blend_reason": outcome.reason[:5000]})
    if version is not None:
        aliases.nominate_challenger(
            params.model_name,
            version,
            f"blend: {outcome.reason}"[:500],
            mlflow.active_run().info.run_id,
        )
    return version
