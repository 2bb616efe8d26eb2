"""The optimize step: tune a model family with Optuna, one nested run per trial.

Tuned on current train (the challenger is judged on current data) less main's judging
slice: the family's objective scores each trial on those rows only, and the slice stays
unseen until it judges the best parameters beside main's other candidates. Writes one
parent run (the active one) tagged `parameter_optimization`, one nested run per trial
this worker ran, the best parameters of the whole study as `best_params.json`, and the
best model refitted on current train, scored on both test splits (its metrics and
`train_rows` on the logged model too, each naming its rows; current train its training
input), registered and nominated `challenger`. The study's first trial is the family's
defaults (for the network, then the one the model's newest retrain kept), so its best is
never below them on validation. `validation_<metric>` metrics: the best parameters
fitted on current train less the judging slice, scored on that slice
(`mlcycle.models.selection`: the rows main compares every candidate on).
Several workers on the same `storage` and `study_name` share the study."""

from __future__ import annotations

import logging
import sys

import mlflow
import optuna

from mlcycle import config
from mlcycle.ingest.data import Schema
from mlcycle.ingest.split import Splits
from mlcycle.lifecycle import aliases, lineage
from mlcycle.models import blending, families, selection, tuning
from mlcycle.monitoring import charts
from mlcycle.monitoring.evaluate import score
from mlcycle.scaleout import optuna_storage
from mlcycle.steps.etl import open_etl
from mlcycle.steps.params.optimize import OptimizeParams

log = logging.getLogger("mlcycle.optimize")

BEST_PARAMS = "best_params.json"


def best_params(family: str, trial: optuna.trial.FrozenTrial, task: str, seed: int) -> dict:
    """What best_params.json holds: the family's parameters of the trial, plus 'family'
    (retrain reads it to refuse the parameters of another family)."""
    return {**families.get(family).best_params(trial, task, seed), "family": family}


def refit_params(best: dict):
    """The family's own parameters from what best_params.json holds."""
    return families.get(best["family"]).params_from(best)


def search(
    params: OptimizeParams,
    storage,
    schema: Schema,
    splits: Splits,
    metric: str,
    direction: str,
    etl_run: str,
) -> tuple[optuna.Study, dict[str, float]]:
    """Run this worker's trials on the shared study, each an MLflow run nested under
    the active one; the study and this worker's trial counts."""
    run = mlflow.active_run()
    family = families.get(params.family)
    name = study_name(params, metric)
    study, _ = tuning.open_study(
        storage,
        name,
        direction,
        {"family": params.family, "metric": metric, "task": schema.task, "etl_run": etl_run},
        params.seed,
        family.pruner(),
    )
    # The defaults first (unless a trial of this study tried them): tuning then never
    # ends below what the family gives untuned.
    study.enqueue_trial(family.default_trial(schema.task), skip_if_exists=True)
    # The network's next: what retrain last kept for this model, when known.
    known = getattr(family, "known_trial", None)
    if known and (kept := retrains_choice(params.model_name, known)):
        study.enqueue_trial(kept, skip_if_exists=True)
    objective = family.objective(
        schema, tuning_rows(splits, params.seed), metric, direction, params.seed
    )
    trials = tuning.TrialLogger(objective, run.info.run_id, run.info.experiment_id, metric, name)
    tuning.run_search(
        study,
        trials,
        params.n_trials,
        params.timeout or None,
        params.n_jobs,
        progress=sys.stderr.isatty(),
    )
    counts = trials.counts()
    log.info("this worker: %s", {k: int(v) for k, v in counts.items()})
    return study, counts


def tuning_rows(splits: Splits, seed: int):
    """The rows the trials learn and are scored on: current train less main's judging
    slice (`selection.judging_slice`), when there is one. The slice then judges the best
    parameters as it judges every other candidate, on rows none of the trials saw: scored
    on the rows it was chosen on, the best of 20 trials looks better than it is, and main
    would nominate it over a candidate that is better on new rows."""
    fit_rows, judge = selection.judging_slice(splits.current_train, seed)
    return splits.current_train if judge.empty else fit_rows


def retrains_choice(model_name: str, known_trial) -> dict | None:
    """The network the model's newest finished retrain kept (its `network.*` params: with
    strategy auto, the candidate it chose), as search-space values; None when there is
    none or it lies outside the space."""
    runs = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = 'retrain' and params.model_name = "
        f"'{model_name}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    prefix = "network."
    values = {
        k[len(prefix) :]: v
        for k, v in (runs[0].data.params if runs else {}).items()
        if k.startswith(prefix)
    }
    return known_trial(values) if values else None


def study_name(params: OptimizeParams, metric: str) -> str:
    return params.study_name or tuning.default_study_name(params.model_name, params.family, metric)


def log_search(
    study: optuna.Study,
    trial: optuna.trial.FrozenTrial,
    best: dict,
    counts: dict,
    metric: str,
    judged: dict[str, float],
) -> None:
    """best_params.json, this worker's trial counts, the study's best value, the best
    parameters' scores on the judging slice (`judged`) and charts. The metrics are the
    run's, not the model's: logged once the model is."""
    mlflow.log_dict(best, BEST_PARAMS)
    lineage.log_run_metrics(
        {
            **counts,
            **judged,
            f"best_validation_{metric}": float(trial.value),
            "study_trials": float(len(study.trials)),
        }
    )
    mlflow.set_tags(
        {
            "mlcycle.best_trial": str(trial.number),
            "mlcycle.best_trial_run": trial.user_attrs.get("mlflow_run_id", ""),
        }
    )
    for figure, path in (
        (charts.history_figure(study), "charts/optuna_history.png"),
        (charts.importance_figure(study), "charts/param_importances.png"),
    ):
        if figure is not None:
            mlflow.log_figure(figure, path)
            charts.close(figure)


def register_best(
    best: dict, schema: Schema, splits: Splits, params: OptimizeParams, etl_run: str
) -> str:
    """Refit the best on all of current train, score, register (its metrics each with
    the test split it was measured on, current train its training input). Returns the
    version, not yet challenger."""
    run_id = mlflow.active_run().info.run_id
    family = families.get(params.family)
    train = splits.current_train
    model = family.fit(schema, refit_params(best), train)
    metrics = score(model, schema, splits)
    tags = {
        "mlcycle.family": family.NAME,
        "mlcycle.etl_run": etl_run,
        "mlcycle.optimize_run": run_id,
    }
    info = family.log(model, schema, train, params.model_name, version_tags=tags)
    lineage.log_lineage(info.model_id, schema, splits, etl_run, metrics, "current_train")
    version = str(info.registered_model_version)
    mlflow.set_tag("mlcycle.model_version", version)
    return version


def execute(params: OptimizeParams) -> str | None:
    """Tune, log and register the best model in the active run; its version, or None
    when there was nothing to tune (n_trials=0, how main skips the step)."""
    mlflow.set_tags(
        {
            "parameter_optimization": "true",
            "mlcycle.family": params.family,
            "mlcycle.model_name": params.model_name,
        }
    )
    if params.n_trials == 0:
        log.info("n_trials=0: nothing to tune, no model registered")
        mlflow.set_tag("mlcycle.skipped", "n_trials=0")
        return None
    spec = params.storage_spec()
    # A database that refuses the connection fails before any data is read; a journal
    # file is created only once the metric is known to fit the task (no stray file).
    storage = optuna_storage.open_storage(spec) if spec.kind == "rdb" else None
    etl = open_etl(params.etl_run)
    etl_run, schema, splits = etl.run_id, etl.schema, etl.splits
    metric, direction = tuning.resolve_metric(params.metric, schema.task)
    if storage is None:
        storage = optuna_storage.open_storage(spec)
    mlflow.set_tags(
        {
            "mlcycle.study_name": study_name(params, metric),
            "mlcycle.storage": spec.display,
            "mlcycle.metric": metric,
        }
    )
    if spec.is_sqlite and params.n_jobs != 1:
        log.warning("SQLite serialises writers; a journal file suits parallel workers better")
    study, counts = search(params, storage, schema, splits, metric, direction, etl_run)
    trial = tuning.best_trial(study)
    best = best_params(params.family, trial, schema.task, params.seed)
    version = register_best(best, schema, splits, params, etl_run)
    judged, predictions = selection.slice_fit(
        families.get(params.family), schema, refit_params(best), splits.current_train, params.seed
    )
    log_search(study, trial, best, counts, metric, judged)
    if predictions is not None:  # what main's blend candidate weighs
        blending.log_slice_predictions(predictions)
    # The alias moves last, once the run holds everything it says about the model.
    aliases.nominate_challenger(
        params.model_name,
        version,
        reason="optimize: the best model of the study",
        by_run=mlflow.active_run().info.run_id,
    )
    return version
