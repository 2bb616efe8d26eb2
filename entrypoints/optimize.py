"""mlflow run . -e optimize: tune the forest or the network with Optuna, on current train.

One parent run (this one) tagged `parameter_optimization`, one nested run per trial this
worker ran; the best parameters of the whole study as `best_params.json`; the best model
refitted on current_train, scored on both test splits, registered, aliased `challenger`.
Several workers on the same `storage` and `study_name` share the study."""

from __future__ import annotations

import logging
import sys

import click
import mlflow

from mlcycle import charts, config, registry, tuning
from mlcycle.cli import INT, step_command, step_run
from mlcycle.errors import MlcycleError
from mlcycle.etl import load_splits, resolve_etl_run
from mlcycle.evaluate import score

log = logging.getLogger("mlcycle.optimize")


@click.command()
@click.option("--etl-run", default="", help="etl run id (default: the latest finished one)")
@click.option("--model-name", default=config.DEFAULT_MODEL_NAME, show_default=True)
@click.option("--family", default="rf", show_default=True, help="rf or nn")
@click.option(
    "--n-trials",
    type=INT,
    default=30,
    show_default=True,
    help="trials this worker runs (0: nothing to do)",
)
@click.option(
    "--timeout",
    type=float,
    default=0,
    show_default=True,
    help="seconds after which this worker starts no new trial (0: none)",
)
@click.option(
    "--n-jobs",
    type=INT,
    default=1,
    show_default=True,
    help="trials run in parallel threads by this worker",
)
@click.option(
    "--storage",
    default="",
    help="journal file path, sqlite:///FILE, postgresql://USER@HOST/DB or mysql://… "
    "(default: a journal file under .mlcycle/)",
)
@click.option("--study-name", default="", help="default: MODEL_NAME-FAMILY-METRIC")
@click.option("--metric", default="", help="default: r2 (regression) or f1 (classification)")
@click.option("--seed", type=INT, default=42, show_default=True)
@step_command
def main(etl_run, model_name, family, n_trials, timeout, n_jobs, storage, study_name, metric, seed):
    tuning.check_family(family)
    tuning.check_metric_name(metric)
    if n_trials < 0:
        raise MlcycleError(f"parameter n_trials must be >= 0, got {n_trials}")
    if timeout < 0:
        raise MlcycleError(f"parameter timeout must be >= 0 (0: none), got {timeout}")
    if n_jobs < 1 and n_jobs != -1:
        raise MlcycleError(f"parameter n_jobs must be >= 1 (or -1: one per core), got {n_jobs}")
    spec = tuning.parse_storage(storage)
    params = {
        "etl_run": etl_run,
        "model_name": model_name,
        "family": family,
        "n_trials": n_trials,
        "timeout": timeout,
        "n_jobs": n_jobs,
        "storage": storage,
        "study_name": study_name,
        "metric": metric,
        "seed": seed,
    }
    with step_run("optimize", params) as run:
        mlflow.set_tags(
            {
                "parameter_optimization": "true",
                "mlcycle.family": family,
                "mlcycle.model_name": model_name,
            }
        )
        if n_trials == 0:
            log.info("n_trials=0: nothing to tune, no model registered")
            mlflow.set_tag("mlcycle.skipped", "n_trials=0")
            return
        _optimize(
            run,
            spec,
            etl_run,
            model_name,
            family,
            n_trials,
            timeout,
            n_jobs,
            study_name,
            metric,
            seed,
        )


def _optimize(
    run, spec, etl_run, model_name, family, n_trials, timeout, n_jobs, study_name, metric, seed
):
    # A database that refuses the connection fails before any data is read; a journal
    # file is created only once the metric is known to fit the task (no stray file).
    storage = tuning.open_storage(spec) if spec.kind == "rdb" else None
    etl_run = resolve_etl_run(etl_run)
    schema, splits = load_splits(etl_run)
    metric, direction = tuning.resolve_metric(metric, schema.task)
    if storage is None:
        storage = tuning.open_storage(spec)
    name = study_name or tuning.default_study_name(model_name, family, metric)
    mlflow.set_tags(
        {
            "mlcycle.etl_run": etl_run,
            "mlcycle.study_name": name,
            "mlcycle.storage": spec.display,
            "mlcycle.metric": metric,
        }
    )
    if spec.is_sqlite and (n_jobs != 1):
        log.warning("SQLite serialises writers; a journal file suits parallel workers better")
    study, _ = tuning.open_study(
        storage,
        name,
        direction,
        {"family": family, "metric": metric, "task": schema.task, "etl_run": etl_run},
        seed,
        tuning.pruner_for(family),
    )
    # Tuned on current_train: the challenger is judged on current data (DESIGN.md).
    objective = tuning.make_objective(family, schema, splits.current_train, metric, direction, seed)
    trials = tuning.TrialLogger(objective, run.info.run_id, run.info.experiment_id, metric, name)
    tuning.run_search(
        study, trials, n_trials, timeout or None, n_jobs, progress=sys.stderr.isatty()
    )
    counts = trials.counts()
    log.info("this worker: %s", {k: int(v) for k, v in counts.items()})
    best = tuning.best_trial(study)
    best_params = tuning.best_params(family, best, schema.task, seed)
    mlflow.log_dict(best_params, "best_params.json")
    mlflow.log_metrics(
        {
            **counts,
            f"best_validation_{metric}": float(best.value),
            "study_trials": float(len(study.trials)),
        }
    )
    mlflow.set_tags(
        {
            "mlcycle.best_trial": str(best.number),
            "mlcycle.best_trial_run": best.user_attrs.get("mlflow_run_id", ""),
        }
    )
    _log_charts(study)
    _refit_and_register(family, best_params, schema, splits, model_name, etl_run, run)


def _log_charts(study) -> None:
    for figure, path in (
        (tuning.history_figure(study), "charts/optuna_history.png"),
        (tuning.importance_figure(study), "charts/param_importances.png"),
    ):
        if figure is not None:
            mlflow.log_figure(figure, path)
            charts.close(figure)


def _refit_and_register(family, best_params, schema, splits, model_name, etl_run, run):
    """Refit the best on all of current_train, score, register, then move the alias."""
    train = splits.current_train
    fields = {k: v for k, v in best_params.items() if k != "family"}
    if family == "rf":
        from mlcycle.forest import ForestParams, fit_forest
        from mlcycle.served_forest import log_forest

        model = fit_forest(schema, ForestParams(**fields), train)
        mlflow.log_metrics(score(model, schema, splits))
        info = log_forest(model, schema, train, model_name)
    else:
        from mlcycle.network import NetworkParams, fit_network, log_network

        model, _ = fit_network(schema, NetworkParams.from_dict(fields), train)
        mlflow.log_metrics(score(model, schema, splits))
        info = log_network(model, schema, train, model_name)
    version = info.registered_model_version
    registry.tag_version(
        model_name,
        version,
        {
            "mlcycle.family": family,
            "mlcycle.etl_run": etl_run,
            "mlcycle.optimize_run": run.info.run_id,
        },
    )
    registry.set_alias(model_name, config.CHALLENGER, version)
    mlflow.set_tag("mlcycle.model_version", version)


if __name__ == "__main__":
    main()
