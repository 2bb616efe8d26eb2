"""retrain's candidates: the ways a network can learn the new data, trained side by side
and judged on one validation slice of the current training rows.

A candidate is a strategy and a window:

- `finetune`: continue the base network (the champion) from its weights; only when the
  base is an mlcycle network of this data;
- `transfer`: a fresh network trained on the reference train rows, then continued on the
  window's rows (the flow of the brief this project grew from; possible whatever the
  champion is, a forest included);
- `scratch`: a fresh network trained on the window's rows;

and the window is `current` (current train rows) or `all` (reference train + current
train). Which drift a data set carries decides which wins: a total drift wants current
rows only, a relationship that held wants every row, a partial one often the transfer.
Nothing here talks to MLflow; the retrain step logs each candidate as a nested run."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.models.network import NetworkModel, NetworkParams
from mlcycle.models.training import (
    add_members,
    finetune_params,
    fit_bag,
    fit_network,
    split_validation,
)
from mlcycle.monitoring.evaluate import predict, predict_proba
from mlcycle.monitoring.gate import paired_bootstrap
from mlcycle.monitoring.metrics import PRIMARY, evaluate, prefixed

log = logging.getLogger(__name__)

AUTO, STRATEGIES, WINDOWS = config.AUTO, config.STRATEGIES, config.WINDOWS
# What strategy=auto tries when the window is auto too: every strategy on current rows,
# and a fresh network on every row. Left out for the time they cost: fine-tuning the
# champion on all rows (it has seen the reference rows already) and the transfer
# continued on all rows (the reference rows twice).
AUTO_BOTH = (("finetune", "current"), ("transfer", "current"), ("scratch", "current"))
AUTO_BOTH_EXTRA = (("scratch", "all"),)
# When the validation slice cannot tell two candidates apart, the one that learns from
# more rows is kept (`choose`): every row at once, then the reference rows before the
# current ones, then the champion's own rows before them, then current rows alone.
PREFERENCE = (
    "scratch/all",
    "transfer/all",
    "transfer/current",
    "finetune/all",
    "finetune/current",
    "scratch/current",
)
TIE_CONFIDENCE = 0.84  # one-sided: one standard error of a normal difference
TIE_RESAMPLES = 1000


@dataclass(frozen=True)
class Candidate:
    strategy: str  # finetune, transfer or scratch
    window: str  # current or all: the rows of the (last) training

    @property
    def name(self) -> str:
        return f"{self.strategy}/{self.window}"


@dataclass
class Trained:
    """A candidate once trained: its model, how it trained, its validation metrics."""

    candidate: Candidate
    model: NetworkModel
    params: NetworkParams  # as trained: a fine-tune keeps the base's architecture
    history: dict[str, list[float]]
    metrics: dict[str, float]  # validation_<metric> on the validation slice
    train_rows: int  # the window's rows, validation slice included (as retrain counts them)
    validation_rows: int
    pretrain: dict[str, float] = field(default_factory=dict)  # transfer: its first training
    seconds: float = 0.0
    predictions: np.ndarray | None = field(default=None, repr=False)  # on the slice

    def score(self, task: str) -> float:
        return self.metrics[f"validation_{PRIMARY[task]}"]


def propose(strategy: str, window: str, can_finetune: bool) -> list[Candidate]:
    """The candidates a strategy and a window ask for, in the order they are tried (and
    preferred on a tie). An explicit strategy and window are one candidate: no choice."""
    if strategy == AUTO and window == AUTO:
        pairs = AUTO_BOTH + AUTO_BOTH_EXTRA
    else:
        strategies = STRATEGIES if strategy == AUTO else (strategy,)
        windows = WINDOWS if window == AUTO else (window,)
        pairs = tuple((s, w) for s in strategies for w in windows)
    return [Candidate(s, w) for s, w in pairs if s != "finetune" or can_finetune]


def validation_slice(
    current_train: pd.DataFrame, params: NetworkParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows to fit on, rows to judge on): a seeded slice (params.validation_share) of the
    current train rows, the same one early stopping has always watched.

    Why there: the challenger is judged on current data, so the choice between candidates
    must be made on current rows; the test rows are what the before_/after_ metrics and
    monitor's gate judge on, and a choice made on them would make those figures
    optimistic; reference rows describe the relationship that may have drifted away."""
    return split_validation(current_train, params.validation_share, params.seed)


def window_rows(window: str, reference_train: pd.DataFrame, fit: pd.DataFrame) -> pd.DataFrame:
    """current: the current rows to fit on; all: reference train first, then those."""
    if window == "current":
        return fit
    return pd.concat([reference_train, fit], ignore_index=True)


def validation_metrics(model, schema: Schema, frame: pd.DataFrame) -> dict[str, float]:
    """Every metric of the task on the validation slice, named validation_<metric>."""
    features, target = frame[schema.features], frame[schema.target]
    proba = None
    if schema.task == "classification":
        proba = predict_proba(model, features, schema.classes)
    return prefixed(evaluate(schema.task, target, predict(model, features), proba), "validation")


class Trainer:
    """Trains candidates on the same rows and judges them on the validation slice, which
    neither their weights nor their stopping epoch have seen: each is fitted on the
    window's rows less the slice and less a stopping slice carved from the current rows
    left, and early-stopped on that. The one kept is fitted again as it is registered
    (`refit`): on every current train row but the validation slice, early-stopped on it,
    as optimize refits its best. The transfer's reference network is trained once,
    however many transfer candidates continue it.

    Why: a slice that chose a network's epoch would flatter it against optimize's
    network and the refitted trees, which main compares with it on the same slice and
    which never saw it."""

    def __init__(
        self,
        schema: Schema,
        params: NetworkParams,
        reference_train: pd.DataFrame,
        current_train: pd.DataFrame,
        base: NetworkModel | None = None,
        members: int = 1,
    ):
        self.schema, self.params, self.base = schema, params, base
        self.members = members  # networks in the kept candidate's bag (`bag`, `refit`)
        self.reference_train = reference_train
        self.fit_rows, self.validation = validation_slice(current_train, params)
        # The judged fits' early stopping: a slice of the rows they fit on (none without a
        # validation slice: then the fit carves its own, as before).
        self.stop_fit, self.stop_rows = (
            split_validation(self.fit_rows, params.validation_share, params.seed)
            if len(self.validation)
            else (self.fit_rows, None)
        )
        self._reference_network: tuple[NetworkModel, dict] | None = None

    @property
    def truth(self) -> pd.Series:
        """The validation slice's target, which `choose` compares predictions with."""
        return self.validation[self.schema.target]

    def check_choice(self, candidates: list[Candidate]) -> None:
        """A choice needs rows to judge on: one line when the slice is empty."""
        if len(candidates) > 1 and self.validation.empty:
            raise MlcycleError(
                "parameter strategy/window auto: the candidates are judged on a validation "
                f"slice of the current train rows, and there is none (validation_share "
                f"{self.params.validation_share}, {len(self.fit_rows)} current train rows): "
                "pass a strategy and a window"
            )

    def train(self, candidate: Candidate) -> Trained:
        """The candidate fitted to be judged: its metrics and predictions on the slice."""
        start = time.perf_counter()
        params, start_from, pretrain, rows, stop = self._judging(candidate)
        model, history = fit_network(self.schema, params, rows, base=start_from, validation=stop)
        metrics, predictions = {}, None
        if len(self.validation):
            metrics = validation_metrics(model, self.schema, self.validation)
            predictions = predict(model, self.validation[self.schema.features])
        trained = Trained(
            candidate,
            model,
            params,
            history,
            metrics,
            train_rows=self._train_rows(candidate),
            validation_rows=len(self.validation),
            pretrain=pretrain,
            seconds=time.perf_counter() - start,
            predictions=predictions,
        )
        if metrics:
            log.info(
                "candidate %s: validation %s %.4f (%d epochs, %.1f s)",
                candidate.name,
                PRIMARY[self.schema.task],
                trained.score(self.schema.task),
                len(history.get("loss", [])),
                trained.seconds,
            )
        return trained

    def bag(self, trained: Trained) -> Trained:
        """The kept candidate judged as the bag it is registered as: `members` - 1 more
        networks trained as it was (same rows, same stopping rows, seeds params.seed + i),
        averaged with it (`mlcycle.models.training.fit_bag`); its slice metrics and
        predictions then the bag's. The candidates were compared one network each."""
        if self.members == 1 or not len(self.validation):
            return trained
        start = time.perf_counter()
        params, start_from, _, rows, stop = self._judging(trained.candidate)
        model = add_members(
            trained.model,
            self.schema,
            params,
            rows,
            self.members - 1,
            base=start_from,
            validation=stop,
        )
        metrics = validation_metrics(model, self.schema, self.validation)
        log.info(
            "candidate %s as a bag of %d networks: validation %s %.4f (one network: %.4f)",
            trained.candidate.name,
            self.members,
            PRIMARY[self.schema.task],
            metrics[f"validation_{PRIMARY[self.schema.task]}"],
            trained.score(self.schema.task),
        )
        return replace(
            trained,
            model=model,
            metrics=metrics,
            predictions=predict(model, self.validation[self.schema.features]),
            seconds=trained.seconds + time.perf_counter() - start,
        )

    def refit(self, trained: Trained) -> Trained:
        """The kept candidate as it is registered: fitted on every current train row but
        the validation slice (and the reference rows of window all), early-stopped on the
        slice. Its judged figures stay those of `train`: this model has seen the slice."""
        if not len(self.validation):
            return trained  # fitted on every row already: nothing was held out to judge
        start = time.perf_counter()
        params, start_from, _ = self._start(trained.candidate)
        rows = window_rows(trained.candidate.window, self.reference_train, self.fit_rows)
        model, history = fit_bag(
            self.schema,
            params,
            rows,
            members=self.members,
            base=start_from,
            validation=self.validation,
        )
        log.info(
            "candidate %s refitted on %d rows (%d epochs, %.1f s)",
            trained.candidate.name,
            len(rows),
            len(history.get("loss", [])),
            time.perf_counter() - start,
        )
        return replace(
            trained,
            model=model,
            params=params,
            history=history,
            seconds=trained.seconds + time.perf_counter() - start,
        )

    def _start(self, candidate: Candidate):
        """(parameters, network to start from, what its pretraining did) of a candidate."""
        if candidate.strategy == "finetune":
            if self.base is None:
                raise MlcycleError("strategy finetune needs a base network")
            return finetune_params(self.params, self.base), self.base, {}
        if candidate.strategy == "transfer":
            start_from, pretrain = self.reference_network()
            return self.params, start_from, pretrain
        return self.params, None, {}

    def _judging(self, candidate: Candidate):
        """What a candidate judged on the slice is trained with: `_start`'s three, the
        rows of its window it learns from (the slice and stopping rows left out) and the
        rows its early stopping watches (None: no stopping rows)."""
        params, start_from, pretrain = self._start(candidate)
        rows = window_rows(candidate.window, self.reference_train, self.stop_fit)
        stop = self.stop_rows if self.stop_rows is not None and len(self.stop_rows) else None
        return params, start_from, pretrain, rows, stop

    def _train_rows(self, candidate: Candidate) -> int:
        """The rows retrain counts for the candidate: its window, the validation slice
        included."""
        rows = window_rows(candidate.window, self.reference_train, self.fit_rows)
        return len(rows) + len(self.validation)

    def reference_network(self) -> tuple[NetworkModel, dict[str, float]]:
        """A fresh network on the reference train rows (early-stopped on its own slice of
        them: it learns the reference relationship), and what its training did."""
        if self._reference_network is None:
            model, history = fit_network(self.schema, self.params, self.reference_train)
            summary = {
                "pretrain_rows": float(len(self.reference_train)),
                "pretrain_epochs": float(len(history.get("loss", []))),
            }
            self._reference_network = (model, summary)
        return self._reference_network


def choose(trained: list[Trained], task: str, truth=None) -> tuple[Trained, str]:
    """(the candidate kept, the reason in one line).

    The best validation score wins, unless the slice cannot tell it from a candidate that
    learns from more rows (`PREFERENCE`): then that one is kept. A slice of a few hundred
    rows measures R² or F1 to a point or two, so the best score alone often picks a
    lucky draw; between candidates the slice cannot separate, the one that learnt from
    more rows is the safer bet (the one-standard-error rule of model selection, with the
    data a candidate learns from as its simplicity). "Cannot separate": the paired
    bootstrap of best − other on the slice (`mlcycle.monitoring.gate`, the promotion gate's) has its
    lower bound at TIE_CONFIDENCE (one standard error) at or below 0. Without `truth`
    (the slice's target) or predictions, only the scores count. On an exact tie the
    earlier candidate wins: the order of `propose`."""
    metric = PRIMARY[task]
    best = max(trained, key=lambda t: (t.score(task), -trained.index(t)))
    kept, bound = best, None
    if truth is not None and all(t.predictions is not None for t in trained):
        for other in sorted(trained, key=_preference):
            if _preference(other) >= _preference(best):
                break
            interval = paired_bootstrap(
                task,
                truth,
                other.predictions,
                best.predictions,
                n_resamples=TIE_RESAMPLES,
                confidence=TIE_CONFIDENCE,
            )
            if interval.low <= 0:
                kept, bound = other, interval.low
                break
    others = ", ".join(f"{t.candidate.name} {t.score(task):.4f}" for t in trained if t is not kept)
    where = f"on {kept.validation_rows} current train rows"
    if kept is best:
        return kept, (
            f"{kept.candidate.name} has the best validation {metric} {where}: "
            f"{kept.score(task):.4f} (others: {others or 'none'})"
        )
    return kept, (
        f"{kept.candidate.name} learns from more rows than {best.candidate.name} and the "
        f"validation slice cannot tell them apart: {metric} {kept.score(task):.4f} against "
        f"{best.score(task):.4f} {where}, the paired bootstrap's one-standard-error bound "
        f"of the difference {bound:+.4f} <= 0 (others: {others})"
    )


def _preference(trained: Trained) -> int:
    return PREFERENCE.index(trained.candidate.name)
