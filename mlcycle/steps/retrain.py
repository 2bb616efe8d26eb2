"""The retrain step: a Keras network trained on the new data, registered as challenger,
with the base model's metrics before and the new model's after, on the same held-out rows.

Reads the etl run's splits and the base model (models:/NAME@champion unless told);
with strategy or window `auto` (the defaults) trains every candidate they allow
(`mlcycle.models.candidates`), each a nested run with its validation score, and keeps the best
on a validation slice of the current train rows, saying which and why in the tags
`mlcycle.auto.choice` and `mlcycle.auto.reason`. Writes the `network.*` params of the
network kept, `before_*`, `after_*` (and the new model's plain `<split>_<metric>`)
metrics, `validation_*`, `train_rows`, `epochs_trained`, `kept_epoch`, the per-epoch
`train_loss`/`val_loss` curves, `charts/learning_curve.png`, and a registered pyfunc
nominated `challenger`, tagged with the base version and the strategy and window used. A
base model of other data is refused for finetune and auto; with scratch or transfer the
run has no `before_*` metrics and says why in the tag `mlcycle.before_skipped`."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import mlflow
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.ingest.split import Splits
from mlcycle.lifecycle import aliases, lineage, registry
from mlcycle.models import blending, candidates
from mlcycle.models.candidates import Candidate, Trained, Trainer
from mlcycle.models.families import nn
from mlcycle.models.network import NetworkModel, NetworkParams, is_network, network_of
from mlcycle.models.retraining import (
    CONTINUING,
    Base,
    choose_strategy,
    comparability,
    finetuned,
    try_candidates,
    tuned_params,
)
from mlcycle.models.training import (
    history_metrics,
    training_summary,
)
from mlcycle.monitoring import charts
from mlcycle.monitoring.evaluate import score
from mlcycle.monitoring.metrics import PRIMARY, prefixed
from mlcycle.steps.etl import open_etl
from mlcycle.steps.optimize import BEST_PARAMS
from mlcycle.steps.params.retrain import RetrainParams

log = logging.getLogger("mlcycle.retrain")


@dataclass
class Plan:
    """What retrain trains, decided before any training."""

    etl_run: str
    schema: Schema
    splits: Splits
    base: Base | None
    comparable: bool  # whether before_* metrics can be measured on these rows
    strategy: str  # the one asked for, once settled: finetune may become scratch
    start_from: NetworkModel | None  # the base network, when it can be fine-tuned
    network: NetworkParams
    candidates: list[Candidate]  # one when strategy and window are given: no choice


# --- reading runs and models ------------------------------------------------------------


def read_best_params(run_id: str) -> dict:
    """An optimize run's best_params.json, or one line saying why there is none."""
    try:
        mlflow.get_run(run_id)
    except MlflowException as exc:
        raise MlcycleError(f"parameter params_from: no run with id {run_id!r}") from exc
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{BEST_PARAMS}")
    except Exception as exc:  # noqa: BLE001 - missing artifact: MlflowException or OSError
        raise MlcycleError(
            f"parameter params_from: run {run_id} has no {BEST_PARAMS} (is it an optimize run?)"
        ) from exc


def load_base(base_model: str, model_name: str) -> Base | None:
    """The given model, else the champion; None (train from scratch) when there is no
    champion. A given URI that does not exist is an error."""
    uri = base_model or registry.alias_uri(model_name, config.CHAMPION)
    if not base_model and registry.version_for_alias(model_name, config.CHAMPION) is None:
        log.info("%s has no champion yet: training from scratch, no before_ metrics", model_name)
        return None
    version = registry.resolve_version(uri)
    pyfunc = registry.load_pyfunc(uri)
    log.info("base model %s%s", uri, f" (version {version.version})" if version else "")
    network = network_of(pyfunc) if is_network(uri) else None
    return Base(uri=uri, version=version.version if version else "", pyfunc=pyfunc, network=network)


def score_before(
    base: Base, schema: Schema, splits: Splits, etl_run: str, strategy: str
) -> tuple[dict[str, float], str | None]:
    """(the base model's before_* metrics on the held-out rows, why there are none).
    When it cannot read the rows at all (a model that did not say what it reads): an
    error for finetune, no before_ metrics for scratch."""
    try:
        return prefixed(score(base.pyfunc, schema, splits), "before"), None
    except Exception as exc:  # noqa: BLE001 - any model may refuse foreign rows
        text = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).strip()
        reason = " ".join(text.split())[:300]
        where = f"base model {base.uri} cannot score the rows of etl run {etl_run}: {reason}"
        if strategy in CONTINUING:
            raise MlcycleError(
                f"{where}; pass a base_model of this data, or strategy=scratch to train "
                "without before_ metrics"
            ) from exc
        return {}, f"{where}; no before_ metrics"


# --- the step ---------------------------------------------------------------------------


def plan(params: RetrainParams) -> Plan:
    """Every decision before training, in the active run. The base and tuned parameters
    come first: a wrong URI or run id fails before any work."""
    network = params.network()
    if params.params_from:
        best = read_best_params(params.params_from)
        network = tuned_params(network, best, params.params_from)
    base = load_base(params.base_model, params.model_name)
    etl = open_etl(params.etl_run)
    etl_run, schema, splits = etl.run_id, etl.schema, etl.splits
    comparable, skipped = comparability(base, schema, params.strategy, etl_run)
    if skipped:
        _skip_before(skipped)
    used, start_from = choose_strategy(params.strategy, base, schema)
    if start_from is not None:
        finetuned(network, start_from)  # says so when the base's shape wins
    tried = candidates.propose(used, params.window, start_from is not None)
    if len(tried) > 1:
        log.info("candidates: %s", ", ".join(c.name for c in tried))
    return Plan(etl_run, schema, splits, base, comparable, used, start_from, network, tried)


def _skip_before(reason: str) -> None:
    log.warning("%s", reason)
    mlflow.set_tag("mlcycle.before_skipped", reason[:5000])


def log_history(history: dict[str, list[float]]) -> None:
    """Per-epoch losses as MLflow metrics with steps (epoch 1, 2, ...) in one batch, and
    the learning-curve chart, in the active run."""
    curves = history_metrics(history)
    now = int(time.time() * 1000)
    metrics = [
        Metric(name, value, now, step)
        for name, values in curves.items()
        for step, value in enumerate(values, start=1)
    ]
    if metrics:
        mlflow.MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=metrics)
        fig = charts.learning_curve_figure(curves, "learning curve")
        mlflow.log_figure(fig, "charts/learning_curve.png")
        charts.close(fig)


def _report(task: str, before: dict, after: dict) -> None:
    key = f"current_test_{PRIMARY[task]}"
    if before:
        log.info("%s: base %.4f -> retrained %.4f", key, before[f"before_{key}"], after[key])
    else:
        log.info("%s: retrained %.4f", key, after[key])


def register(chosen: Trained, p: Plan, params: RetrainParams, metrics: dict, before: dict) -> str:
    """Register the network kept with its metrics (each naming the rows it was measured
    on: a test split, else its training rows) and its training input, then nominate it
    challenger (saying so when it replaces another candidate, e.g. optimize's); the run
    and the version say what it came from. The base model's `before` figures are the
    run's only."""
    base = p.base
    tags = {
        "mlcycle.family": nn.NAME,
        "mlcycle.etl_run": p.etl_run,
        "mlcycle.strategy": chosen.candidate.strategy,
        "mlcycle.window": chosen.candidate.window,
        "mlcycle.base_model": base.uri if base else "",
        "mlcycle.base_model_version": base.version if base else "",
    }
    name = params.model_name
    info = nn.log(chosen.model, p.schema, p.splits.current_train, name, version_tags=tags)
    window = chosen.candidate.window
    trained_on = {"current": "current_train", "all": "all_train"}[window]
    rows = candidates.window_rows(window, p.splits.reference_train, p.splits.current_train)
    lineage.log_lineage(info.model_id, p.schema, p.splits, p.etl_run, metrics, trained_on, rows)
    lineage.log_run_metrics(before)
    version = str(info.registered_model_version)
    aliases.nominate_challenger(
        name, version, "retrain: the retrained network", mlflow.active_run().info.run_id
    )
    mlflow.set_tags({**tags, "mlcycle.model_name": name, "mlcycle.model_version": version})
    return version


def execute(params: RetrainParams) -> str:
    """Plan, train (the candidates, keeping the best), measure before and after, log and
    register, in the active run; the version registered."""
    p = plan(params)
    before: dict[str, float] = {}
    if p.comparable:
        before, skipped = score_before(p.base, p.schema, p.splits, p.etl_run, params.strategy)
        if skipped:
            _skip_before(skipped)
    trainer = Trainer(
        p.schema,
        p.network,
        p.splits.reference_train,
        p.splits.current_train,
        p.start_from,
        members=params.members,
    )
    judged = try_candidates(trainer, p.candidates, p.schema.task, p.base.uri if p.base else None)
    judged = trainer.bag(judged)  # the slice judges the bag main compares and blends
    chosen = trainer.refit(judged)  # the network registered; judged is what the slice saw
    # Logged once trained: they describe the network kept (a fine-tune's is the base's).
    mlflow.log_params({f"network.{k}": v for k, v in chosen.params.to_dict().items()})
    after = score(chosen.model, p.schema, p.splits)
    metrics = {
        **prefixed(after, "after"),
        **after,
        **chosen.metrics,
        **training_summary(chosen.history, chosen.params),
        **chosen.pretrain,
        "train_rows": float(chosen.train_rows),
    }
    log_history(chosen.history)
    if len(trainer.validation):  # what main's blend candidate weighs (never trained on)
        blending.log_slice_predictions(
            blending.slice_predictions(judged.model, p.schema, trainer.validation)
        )
    _report(p.schema.task, before, after)
    # Registered only once fitted and evaluated, then the metrics; the alias moves last.
    return register(chosen, p, params, metrics, before)
