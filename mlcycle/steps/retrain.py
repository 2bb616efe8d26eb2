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
from dataclasses import dataclass, fields, replace

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.ingest.split import Splits
from mlcycle.lifecycle import aliases, lineage, registry
from mlcycle.models import candidates
from mlcycle.models.candidates import Candidate, Trained, Trainer
from mlcycle.models.families import nn
from mlcycle.models.network import NetworkModel, NetworkParams, is_network, network_of
from mlcycle.models.serving import base_mismatch
from mlcycle.models.training import (
    finetune_obstacle,
    finetune_params,
    history_metrics,
    training_summary,
)
from mlcycle.monitoring import charts
from mlcycle.monitoring.evaluate import score
from mlcycle.monitoring.metrics import PRIMARY, prefixed
from mlcycle.params import check, etl_run_param, model_name_param, param
from mlcycle.steps.etl import open_etl
from mlcycle.steps.optimize import BEST_PARAMS

log = logging.getLogger("mlcycle.retrain")

STRATEGIES = (candidates.AUTO, *candidates.STRATEGIES)
WINDOWS = (candidates.AUTO, *candidates.WINDOWS)
# Strategies that use the base model's weights, so a base of other data is refused for
# them: fine-tuning it is impossible, and auto would have tried.
_CONTINUING = ("finetune", candidates.AUTO)
CANDIDATE_STEP_TAG = "retrain-candidate"


@dataclass(frozen=True)
class RetrainParams:
    etl_run: str = etl_run_param()
    model_name: str = model_name_param()
    epochs: int = param(60, "maximum training epochs", minimum=1)
    batch_size: int = param(32, "rows per gradient step", minimum=1)
    learning_rate: float = param(0.001, "Adam's learning rate (> 0)")
    base_model: str = param("", "model URI to start from (default: models:/NAME@champion)")
    strategy: str = param(
        candidates.AUTO,
        "auto (try the others, keep the best on a validation slice of current train "
        "rows), finetune (continue the base network), transfer (a network of reference "
        "rows continued on the window) or scratch",
        choices=STRATEGIES,
    )
    window: str = param(
        candidates.AUTO,
        "training rows: auto (current or all, judged as strategy auto is), current "
        "train only, or all (reference train + current train)",
        choices=WINDOWS,
    )
    params_from: str = param(
        "", "an optimize run (family nn) whose best network hyper-parameters to use"
    )
    patience: int = param(10, "early-stopping patience in epochs; 0 turns it off", minimum=0)
    seed: int = param(42, "seed of the network's weights and batches", minimum=0)

    def validate(self) -> RetrainParams:
        check(self)
        self.network()
        return self

    def network(self) -> NetworkParams:
        """The training asked for; the architecture is NetworkParams' own until tuned
        parameters (params_from) or a fine-tuned base decide it."""
        return NetworkParams(
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            epochs=self.epochs,
            patience=self.patience,
            seed=self.seed,
        ).validate()


@dataclass
class Base:
    """The model the challenger is measured against (and maybe continues from)."""

    uri: str
    version: str  # registry version, "" for a runs:/ URI
    pyfunc: object
    network: NetworkModel | None = None  # the mlcycle network inside, if it is one


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


# --- decisions over plain objects ---------------------------------------------------------


def tuned_params(params: NetworkParams, best: dict, run_id: str) -> NetworkParams:
    """params with the network hyper-parameters an optimize run found best (its
    best_params.json, `best`); the training budget (epochs, patience, seed) stays this
    step's."""
    if best.get("family") != nn.NAME:
        raise MlcycleError(
            f"parameter params_from: run {run_id} tuned family "
            f"{best.get('family')!r}, not a network ({nn.NAME!r})"
        )
    names = {f.name for f in fields(NetworkParams)} - set(nn.TRAINING_BUDGET)
    tuned = NetworkParams.from_dict({k: v for k, v in best.items() if k in names})
    params = replace(params, **{k: getattr(tuned, k) for k in names if k in best}).validate()
    log.info(
        "network hyper-parameters from optimize run %s: %s",
        run_id,
        {k: best[k] for k in sorted(names) if k in best},
    )
    return params


def comparability(
    base: Base | None, schema: Schema, strategy: str, etl_run: str
) -> tuple[bool, str | None]:
    """(whether the base can be compared with on this data, why not when it cannot).

    A base of another task, target or columns (a model of another dataset) cannot be
    continued nor compared: with strategy finetune or auto (which would try to continue
    it) that is an error before any training; with scratch or transfer (the base was only
    the yardstick) the network trains without before_* metrics, and the run says why in
    the tag mlcycle.before_skipped."""
    if base is None:
        return False, None
    reason = base_mismatch(base.pyfunc, schema)
    if reason is None:
        return True, None
    where = f"base model {base.uri} does not model the data of etl run {etl_run}: {reason}"
    if strategy in _CONTINUING:
        raise MlcycleError(
            f"{where}; it can be neither fine-tuned nor compared with: pass a base_model of "
            "this data, or strategy=scratch to train without before_ metrics"
        )
    return False, f"{where}; no before_ metrics"


def choose_strategy(
    strategy: str, base: Base | None, schema: Schema
) -> tuple[str, NetworkModel | None]:
    """(strategy actually used, the NetworkModel to continue or None), saying why when
    fine-tuning is asked for and impossible. auto stays auto, with the base network when
    fine-tuning it is one of the candidates."""
    if strategy in ("scratch", "transfer"):
        return strategy, None
    reason = _why_not_finetune(base, schema)
    if strategy == candidates.AUTO:
        if reason:
            log.info("strategy auto: no finetune candidate: %s", reason)
            return strategy, None
        return strategy, base.network
    if reason:
        level = logging.INFO if base is None else logging.WARNING
        log.log(level, "strategy finetune: %s, so training from scratch", reason)
        return "scratch", None
    return "finetune", base.network


def _why_not_finetune(base: Base | None, schema: Schema) -> str | None:
    if base is None:
        return "no base model"
    if base.network is None:
        return (
            f"the base model {base.uri} is not a network (e.g. the RandomForest champion), "
            "fine-tuning is impossible"
        )
    return finetune_obstacle(base.network, schema)


def finetuned(params: NetworkParams, base: NetworkModel) -> NetworkParams:
    """The base network's architecture, saying so when it replaces the one asked for."""
    continued = finetune_params(params, base)
    if continued != params:
        log.warning(
            "strategy finetune: the base network's architecture (hidden_units %s, dropout %s) "
            "replaces the one asked for (hidden_units %s, dropout %s): the weights only fit "
            "its shape",
            list(continued.hidden_units),
            continued.dropout,
            list(params.hidden_units),
            params.dropout,
        )
    return continued


def training_rows(splits: Splits, window: str) -> pd.DataFrame:
    """current: current train only; all: reference train then current train. (Of these,
    the candidates hold back their validation slice: `mlcycle.models.candidates`.)"""
    return candidates.window_rows(window, splits.reference_train, splits.current_train)


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
        if strategy in _CONTINUING:
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


# --- candidates as nested runs ----------------------------------------------------------


def try_candidates(trainer: Trainer, p: Plan) -> Trained:
    """Train every candidate of the plan, each in a nested run, and keep the best on the
    validation slice; the run's tags say which and why. One candidate is simply trained."""
    if len(p.candidates) == 1:
        (candidate,) = p.candidates
        log.info(
            "training %s on %s rows (%s)",
            candidate.strategy,
            candidate.window,
            f"from {p.base.uri}" if candidate.strategy == "finetune" else "fresh network",
        )
        return trainer.train(candidate)
    trainer.check_choice(p.candidates)
    parent = mlflow.active_run()
    tried = [(_candidate_run(trainer, c, parent), c) for c in p.candidates]
    chosen, reason = candidates.choose([t for (t, _), _ in tried], p.schema.task, trainer.truth)
    client = mlflow.MlflowClient()
    for (trained, run_id), _ in tried:
        client.set_tag(run_id, "mlcycle.auto.chosen", str(trained is chosen).lower())
    log.info("auto: %s", reason)
    mlflow.set_tags({"mlcycle.auto.choice": chosen.candidate.name, "mlcycle.auto.reason": reason})
    return chosen


def _candidate_run(trainer: Trainer, candidate: Candidate, parent) -> tuple[Trained, str]:
    """Train one candidate in a run nested under the step's (through the client: the
    step's own run stays the active one), ended FAILED or KILLED if training stops."""
    client = mlflow.MlflowClient()
    run = client.create_run(
        parent.info.experiment_id,
        run_name=f"candidate-{candidate.strategy}-{candidate.window}",
        tags={
            MLFLOW_PARENT_RUN_ID: parent.info.run_id,
            config.STEP_TAG: CANDIDATE_STEP_TAG,
            "mlcycle.candidate": candidate.name,
            "mlcycle.strategy": candidate.strategy,
            "mlcycle.window": candidate.window,
        },
    )
    run_id = run.info.run_id
    try:
        trained = trainer.train(candidate)
    except BaseException as exc:
        client.set_terminated(run_id, "FAILED" if isinstance(exc, Exception) else "KILLED")
        raise
    _log_candidate(client, run_id, trained)
    client.set_terminated(run_id, "FINISHED")
    return trained, run_id


def _log_candidate(client, run_id: str, trained: Trained) -> None:
    """The candidate's validation metrics, training summary and curves, and the network
    it trained, in one batch."""
    now = int(time.time() * 1000)
    values = {
        **trained.metrics,
        **training_summary(trained.history, trained.params),
        **trained.pretrain,
        "train_rows": float(trained.train_rows),
        "validation_rows": float(trained.validation_rows),
        "seconds": trained.seconds,
    }
    metrics = [Metric(k, float(v), now, 0) for k, v in values.items()]
    metrics += [
        Metric(name, value, now, step)
        for name, curve in history_metrics(trained.history).items()
        for step, value in enumerate(curve, start=1)
    ]
    params = [Param(f"network.{k}", str(v)) for k, v in trained.params.to_dict().items()]
    client.log_batch(run_id, metrics=metrics, params=params)


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
        p.schema, p.network, p.splits.reference_train, p.splits.current_train, p.start_from
    )
    chosen = try_candidates(trainer, p)
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
    _report(p.schema.task, before, after)
    # Registered only once fitted and evaluated, then the metrics; the alias moves last.
    return register(chosen, p, params, metrics, before)
