"""What retrain decides and trains, over plain objects: the base model it is measured
against (`Base`) and whether it models this data, the strategy actually used, tuned
parameters, the training rows of a window, and the candidates trained in nested runs,
the best kept. The retrain step (`mlcycle.steps.retrain`) reads runs and models, logs
and registers around these."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields, replace

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.ingest.split import Splits
from mlcycle.models import candidates
from mlcycle.models.candidates import Candidate, Trained, Trainer
from mlcycle.models.families import nn
from mlcycle.models.network import NetworkModel, NetworkParams
from mlcycle.models.serving import base_mismatch
from mlcycle.models.training import (
    finetune_obstacle,
    finetune_params,
    history_metrics,
    training_summary,
)

log = logging.getLogger("mlcycle.retrain")

# Strategies that use the base model's weights, so a base of other data is refused for
# them: fine-tuning it is impossible, and auto would have tried.
CONTINUING = ("finetune", candidates.AUTO)
CANDIDATE_STEP_TAG = "retrain-candidate"


@dataclass
class Base:
    """The model the challenger is measured against (and maybe continues from)."""

    uri: str
    version: str  # registry version, "" for a runs:/ URI
    pyfunc: object
    network: NetworkModel | None = None  # the mlcycle network inside, if it is one


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
    if strategy in CONTINUING:
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


def try_candidates(
    trainer: Trainer, tried: list[Candidate], task: str, base_uri: str | None
) -> Trained:
    """Train every candidate, each in a nested run, and keep the best on the
    validation slice; the run's tags say which and why. One candidate is simply trained."""
    if len(tried) == 1:
        (candidate,) = tried
        log.info(
            "training %s on %s rows (%s)",
            candidate.strategy,
            candidate.window,
            f"from {base_uri}" if candidate.strategy == "finetune" else "fresh network",
        )
        return trainer.train(candidate)
    trainer.check_choice(tried)
    parent = mlflow.active_run()
    runs = [(_candidate_run(trainer, c, parent), c) for c in tried]
    chosen, reason = candidates.choose([t for (t, _), _ in runs], task, trainer.truth)
    client = mlflow.MlflowClient()
    for (trained, run_id), _ in runs:
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
