"""mlflow run . (entry point main): etl -> baseline -> optimize -> retrain -> monitor,
as child runs of one parent, reusing finished identical steps (mlcycle.workflow)."""

from __future__ import annotations

import hashlib
import json
import logging

import click
import mlflow

from mlcycle import config, registry
from mlcycle.cli import options_from, step_command, step_run
from mlcycle.config import resolve_path
from mlcycle.errors import MlcycleError
from mlcycle.steps.main import MainParams
from mlcycle.workflow import (
    Step,
    adopt_baseline,
    code_version,
    data_identity,
    run_or_reuse,
)

log = logging.getLogger("mlcycle.main")

ALIASES = (config.CHAMPION, config.CHALLENGER, config.PREVIOUS)
PIPELINE_KEY_TAG = "mlcycle.pipeline_key"
REGISTRY_IN_TAG = "mlcycle.registry_in"
REGISTRY_OUT_TAG = "mlcycle.registry_out"


def registry_state(model_name: str) -> dict[str, str]:
    """alias -> version, for the aliases the pipeline reads and moves."""
    state = {}
    for alias in ALIASES:
        version = registry.version_for_alias(model_name, alias)
        state[alias] = version.version if version else ""
    return state


def starting_state(
    model_name: str, pipeline_key: str, experiment_id: str, use_cache: bool
) -> dict[str, str]:
    """The registry state this pipeline starts from.

    When the registry is exactly as the last identical main run left it (its own
    promotion moved the champion), that run's starting state is used, so a re-run with
    nothing changed reuses every step instead of retraining on its own output. An alias
    moved by anyone else makes the steps that read it run again."""
    now = registry_state(model_name)
    if not use_cache:
        return now
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.`{PIPELINE_KEY_TAG}` = '{pipeline_key}' "
        "and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    if runs and json.loads(runs[0].data.tags.get(REGISTRY_OUT_TAG, "{}")) == now:
        log.info(
            "the registry is as main run %s left it: starting from its state", runs[0].info.run_id
        )
        return json.loads(runs[0].data.tags[REGISTRY_IN_TAG])
    return now


def registered_version(model_name: str, run_id: str) -> str | None:
    """The version a step's run registered under model_name, if any."""
    versions = registry.client().search_model_versions(
        f"name = '{model_name}' and run_id = '{run_id}'"
    )
    return max((v.version for v in versions), key=int) if versions else None


@click.command()
@options_from(MainParams)
@step_command
def main(**opts):
    if opts["n_trials"] < 0:
        raise MlcycleError(f"parameter n_trials must be >= 0, got {opts['n_trials']}")
    if opts["optimize_family"] not in ("rf", "nn"):
        raise MlcycleError(
            f"parameter optimize_family must be rf or nn, got {opts['optimize_family']!r}"
        )
    with step_run("main", opts) as run:
        run_pipeline(run, **opts)


def run_pipeline(
    run,
    *,
    reference,
    current,
    target,
    task,
    drop_columns,
    test_size,
    seed,
    model_name,
    n_trials,
    optimize_family,
    epochs,
    promote,
    use_cache,
    force_baseline,
    env_manager,
):
    experiment_id, parent = run.info.experiment_id, run.info.run_id
    code = code_version()
    data_files = [resolve_path(reference), resolve_path(current)]
    for path in data_files:
        if not path.is_file():
            raise MlcycleError(f"data file not found: {path}")
    pipeline_key = file_digest_of(
        {
            "code": code,
            "data": [data_identity(p) for p in data_files],
            "params": [
                target,
                task,
                drop_columns,
                test_size,
                seed,
                model_name,
                n_trials,
                optimize_family,
                epochs,
                promote,
                force_baseline,
            ],
        }
    )
    mlflow.set_tag(PIPELINE_KEY_TAG, pipeline_key)
    state = starting_state(model_name, pipeline_key, experiment_id, use_cache)
    mlflow.set_tag(REGISTRY_IN_TAG, json.dumps(state, sort_keys=True))
    common = dict(
        parent_run_id=parent,
        experiment_id=experiment_id,
        env_manager=env_manager,
        use_cache=use_cache,
        code=code,
    )
    done: dict[str, tuple[str, bool]] = {}

    def step(name, parameters, **kwargs):
        child, reused = run_or_reuse(Step(name, parameters, **kwargs), **common)
        done[name] = (child.info.run_id, reused)
        return child.info.run_id

    etl_run = step(
        "etl",
        dict(
            reference=str(data_files[0]),
            current=str(data_files[1]),
            target=target,
            task=task,
            drop_columns=drop_columns,
            test_size=test_size,
            seed=seed,
        ),
        data_files=data_files,
    )

    champion = state[config.CHAMPION]
    if not champion or force_baseline:
        # With force_baseline the new forest replaces the champion: retrain starts from it
        # and monitor compares with it. A reused baseline moved nothing itself, hence here.
        baseline_run = step("baseline", dict(etl_run=etl_run, model_name=model_name, seed=seed))
        forest = registered_version(model_name, baseline_run)
        if forest is None:
            raise MlcycleError(f"step baseline (run {baseline_run}) registered no model")
        if adopt_baseline(model_name, forest, champion):
            log.info(
                "step baseline: version %s is the champion now (previous: %s)",
                forest,
                champion or "none",
            )
        champion = forest
    else:
        log.info("step baseline: skipped, %s has a champion (version %s)", model_name, champion)
    champion_uri = f"models:/{model_name}/{champion}"

    params_from = ""
    if n_trials > 0:
        # A study per etl run: new data must not resume a study tuned on the old.
        optimize_run = step(
            "optimize",
            dict(
                etl_run=etl_run,
                model_name=model_name,
                family=optimize_family,
                n_trials=n_trials,
                study_name=f"{model_name}-{optimize_family}-{etl_run[:12]}",
                seed=seed,
            ),
        )
        params_from = optimize_run if optimize_family == "nn" else ""
    else:
        log.info("step optimize: skipped (n_trials=0)")

    retrain_run = step(
        "retrain",
        dict(
            etl_run=etl_run,
            model_name=model_name,
            epochs=epochs,
            base_model=champion_uri,
            params_from=params_from,
            seed=seed,
        ),
    )
    challenger = registered_version(model_name, retrain_run)
    if challenger is None:
        raise MlcycleError(f"step retrain (run {retrain_run}) registered no model")

    step(
        "monitor",
        dict(
            etl_run=etl_run,
            model_name=model_name,
            champion=champion_uri,
            challenger=f"models:/{model_name}/{challenger}",
            promote=str(promote).lower(),
        ),
    )

    mlflow.set_tag(REGISTRY_OUT_TAG, json.dumps(registry_state(model_name), sort_keys=True))
    reused = [name for name, (_, was_reused) in done.items() if was_reused]
    mlflow.set_tags({f"mlcycle.run.{name}": run_id for name, (run_id, _) in done.items()})
    mlflow.log_metric("steps_reused", len(reused))
    for name, (run_id, was_reused) in done.items():
        log.info("%-9s %s run %s", name, "reused" if was_reused else "ran   ", run_id)
    log.info("main: %d of %d steps reused", len(reused), len(done))


def file_digest_of(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


if __name__ == "__main__":
    main()
