"""The main step: etl -> baseline -> optimize -> refits -> retrain -> blend -> monitor, as
child runs of one parent, reusing finished identical steps (mlcycle.lifecycle.workflow).
Of the candidates (optimize's best, the refitted families, retrain's network, and their
blend when the blend step kept one) the best on one validation slice of current train
becomes the challenger monitor judges (`mlcycle.models.selection`;
`validation_<metric>.<candidate>`, `mlcycle.candidate_winner`).

Reads the two data files and the registry's aliases once, at the start; hands each step
the run ids and model versions the earlier steps recorded (never an alias read back);
writes the child runs' ids as tags `mlcycle.run.<step>`, `steps_reused`, and the registry
state it started from and left (`mlcycle.registry_in` / `_out`), which lets a re-run with
nothing changed reuse every step."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import fields

import mlflow
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from mlcycle import cli, config
from mlcycle.config import resolve_path
from mlcycle.errors import MlcycleError
from mlcycle.ingest.datasets import newest_finished
from mlcycle.lifecycle import alerts, aliases, registry
from mlcycle.lifecycle.workflow import Step, code_version, data_identity, run_or_reuse
from mlcycle.models import selection
from mlcycle.models.network import FAMILY as RETRAINED_FAMILY
from mlcycle.monitoring.metrics import PRIMARY
from mlcycle.steps import nomination
from mlcycle.steps.etl import EtlParams
from mlcycle.steps.params.main import MainParams

log = logging.getLogger(__name__)

PIPELINE_KEY_TAG = "mlcycle.pipeline_key"
REGISTRY_IN_TAG = "mlcycle.registry_in"
REGISTRY_OUT_TAG = "mlcycle.registry_out"


def registry_state(model_name: str) -> dict[str, str]:
    """alias -> version ('' when unset), as main records it in its tags."""
    return {alias: version or "" for alias, version in aliases.read_state(model_name).items()}


def pipeline_key(params: MainParams, code: str, data_files) -> str:
    """What makes two main runs identical: code, data content and the parameters."""
    payload = {
        "code": code,
        "data": [data_identity(p) for p in data_files],
        "params": [
            params.target,
            params.task,
            params.drop_columns,
            params.test_size,
            params.seed,
            params.model_name,
            params.n_trials,
            params.optimize_family,
            params.refit_families,
            params.epochs,
            params.members,
            params.promote,
            params.force_baseline,
        ],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def starting_state(
    model_name: str, key: str, experiment_id: str, use_cache: bool
) -> dict[str, str]:
    """The registry state this pipeline starts from.

    When the registry is exactly as the last identical main run left it (its own
    promotion moved the champion), that run's starting state is used, so a re-run with
    nothing changed reuses every step instead of retraining on its own output. An alias
    moved by anyone else makes the steps that read it run again."""
    now = registry_state(model_name)
    if not use_cache:
        return now
    last = newest_finished(experiment_id, PIPELINE_KEY_TAG, key)
    if last and json.loads(last.data.tags.get(REGISTRY_OUT_TAG, "{}")) == now:
        log.info(
            "the registry is as main run %s left it: starting from its state", last.info.run_id
        )
        return json.loads(last.data.tags[REGISTRY_IN_TAG])
    return now


class Pipeline:
    """The child runs of one main run, in order, each run or reused."""

    def __init__(self, run, params: MainParams, code: str):
        self.params = params
        self.common = dict(
            parent_run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            env_manager=params.env_manager,
            use_cache=params.use_cache,
            code=code,
            run_here=cli.run_child,
        )
        self.done: dict[str, tuple[str, bool]] = {}

    def step(self, name: str, parameters: dict, label: str = "", **kwargs):
        child, reused = run_or_reuse(Step(name, parameters, **kwargs), **self.common)
        self.done[label or name] = (child.info.run_id, reused)
        return child


def execute(params: MainParams) -> None:
    """Run or reuse every step as a child of the active main run."""
    run = mlflow.active_run()
    code = code_version()
    data_files = [resolve_path(params.reference), resolve_path(params.current)]
    for path in data_files:
        if not path.is_file():
            raise MlcycleError(f"data file not found: {path}")
    key = pipeline_key(params, code, data_files)
    mlflow.set_tag(PIPELINE_KEY_TAG, key)
    name = params.model_name
    state = starting_state(name, key, run.info.experiment_id, params.use_cache)
    mlflow.set_tag(REGISTRY_IN_TAG, json.dumps(state, sort_keys=True))
    pipeline = Pipeline(run, params, code)

    etl = pipeline.step(
        "etl",
        {f.name: getattr(params, f.name) for f in fields(EtlParams)}
        | {"reference": str(data_files[0]), "current": str(data_files[1])},
        data_files=data_files,
    )
    etl_run = etl.info.run_id

    champion, own = _baseline(pipeline, etl_run, state[config.CHAMPION])
    champion_uri = f"models:/{name}/{champion}"
    metric, family, entries = PRIMARY[etl.data.tags["mlcycle.task"]], params.optimize_family, []
    params_from = ""
    if params.n_trials == 0:
        log.info("step optimize: skipped (n_trials=0)")
    else:
        tuned = _optimize(pipeline, etl_run, family)
        entries.append(selection.entry_of(tuned, f"optimize-{family}", metric))
        # retrain trains the network: it takes tuned parameters of that family only.
        params_from = tuned.info.run_id if family == RETRAINED_FAMILY else ""
    for refit in params.refits():
        run_of = _optimize(pipeline, etl_run, refit, True)
        entries.append(selection.entry_of(run_of, f"refit-{refit}", metric))
    retrained = pipeline.step(
        "retrain",
        dict(
            etl_run=etl_run,
            model_name=name,
            epochs=params.epochs,
            members=params.members,
            base_model=champion_uri,
            params_from=params_from,
            seed=params.seed,
        ),
    )
    entries.append(selection.entry_of(retrained, "retrain", metric))
    entries += _blend(pipeline, etl_run, entries, metric) if len(entries) > 1 else []
    challenger = nomination.nominate_best(
        run, name, entries, etl.data.tags["mlcycle.task"], params.seed
    )
    monitored = pipeline.step(
        "monitor",
        dict(
            etl_run=etl_run,
            model_name=name,
            champion=champion_uri,
            challenger=f"models:/{name}/{challenger}",
            promote=str(params.promote).lower(),
            incumbent=str(not own).lower(),
        ),
    )
    mlflow.set_tag(REGISTRY_OUT_TAG, json.dumps(registry_state(name), sort_keys=True))
    _summarise(pipeline.done)
    # The monitor child's promotion, drift and decay, once: a reused monitor run already
    # told them when it ran. (Not passed to the child: its cache key would change.)
    if not pipeline.done["monitor"][1]:
        alerts.report_monitor_run(params.alert_url, monitored.info.run_id)


def _baseline(pipeline: Pipeline, etl_run: str, champion: str) -> tuple[str, bool]:
    """The champion retrain starts from and monitor compares with: the one the pipeline
    started from, or a new forest when there is none or force_baseline asks for one; and
    whether it is this pipeline's own forest (`own_forest`), which monitor then judges as
    one more candidate of this round, not as an incumbent that served."""
    params = pipeline.params
    name = params.model_name
    if champion and not params.force_baseline:
        log.info("step baseline: skipped, %s has a champion (version %s)", name, champion)
        return champion, own_forest(name, champion, etl_run)
    # With force_baseline the new forest replaces the champion. A reused baseline moved
    # nothing itself, hence the adoption here.
    run = pipeline.step("baseline", dict(etl_run=etl_run, model_name=name, seed=params.seed))
    forest = selection.registered_version(run, "baseline")
    moves = aliases.adoption(aliases.read_state(name), forest, champion)
    if aliases.apply(name, moves, reason="main: force_baseline makes the new forest the champion"):
        log.info(
            "step baseline: version %s is the champion now (previous: %s)",
            forest,
            champion or "none",
        )
    return forest, True


def own_forest(name: str, version: str, etl_run: str) -> bool:
    """Whether the champion is a forest main's baseline registered on this etl run's rows
    (a main run stopped after its baseline and resumed, even with other parameters, finds
    its own forest there): a candidate of this round that has served no one. A champion
    set by hand, trained on other rows, or of another step is an incumbent."""
    client = mlflow.MlflowClient()
    found = client.get_model_version(name, version)
    if (found.tags or {}).get(registry.ETL_RUN_TAG) != etl_run:
        return False
    run = client.get_run(found.run_id)
    parent = run.data.tags.get(MLFLOW_PARENT_RUN_ID)
    if run.data.tags.get(config.STEP_TAG) != "baseline" or not parent:
        return False
    return client.get_run(parent).data.tags.get(config.STEP_TAG) == "main"


def _optimize(pipeline: Pipeline, etl_run: str, family: str, refit: bool = False):
    """optimize tuning the family (a study per etl run: new data must not resume a study
    tuned on the old), or with refit its defaults fitted on current train: one trial,
    which is the defaults, in a study of its own."""
    params = pipeline.params
    study = f"{params.model_name}-{family}{'-defaults' if refit else ''}-{etl_run[:12]}"
    return pipeline.step(
        "optimize",
        dict(
            etl_run=etl_run,
            model_name=params.model_name,
            family=family,
            n_trials=1 if refit else params.n_trials,
            study_name=study,
            seed=params.seed,
        ),
        label=f"refit-{family}" if refit else "",
    )


def _blend(pipeline: Pipeline, etl_run: str, entries, metric: str) -> list[selection.Entry]:
    """The blend of the candidates (`mlcycle.models.blending`): a candidate when kept."""
    p = pipeline.params
    run = pipeline.step("blend", selection.blend_parameters(etl_run, p.model_name, entries, p.seed))
    metrics, tags = selection.blend_shown(run, metric)
    mlflow.log_metrics(metrics)
    mlflow.set_tags(tags)
    kept = run.data.tags.get(selection.VERSION_TAG)
    return [selection.entry_of(run, "blend", metric)] if kept else []


def _summarise(done: dict[str, tuple[str, bool]]) -> None:
    reused = [name for name, (_, was_reused) in done.items() if was_reused]
    mlflow.set_tags({f"mlcycle.run.{name}": run_id for name, (run_id, _) in done.items()})
    mlflow.log_metric("steps_reused", len(reused))
    for name, (run_id, was_reused) in done.items():
        log.info("%-9s %s run %s", name, "reused" if was_reused else "ran   ", run_id)
    log.info("main: %d of %d steps reused", len(reused), len(done))
