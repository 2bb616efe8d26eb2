"""mlflow run . -e retrain: train a Keras network on the new data and register it as the
challenger, with the base model's metrics before and the new model's after, on the same
held-out rows.

Reads the etl run's splits and the base model (models:/NAME@champion unless told);
writes the `network.*` params of the network actually trained, `before_*`, `after_*` (and
the new model's plain `<split>_<metric>`) metrics, `train_rows`, `epochs_trained`,
`kept_epoch`, the per-epoch `train_loss`/`val_loss` curves, `charts/learning_curve.png`,
and a registered pyfunc with alias `challenger`, tagged with the base version and the
strategy used. A base model of other data is refused for finetune; with scratch the run
has no `before_*` metrics and says why in the tag `mlcycle.before_skipped`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace

import click
import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from mlcycle import config, registry
from mlcycle.cli import options_from, step_command, step_run
from mlcycle.datasets import load_splits
from mlcycle.errors import MlcycleError
from mlcycle.evaluate import score
from mlcycle.families import nn
from mlcycle.metrics import PRIMARY, prefixed
from mlcycle.network import FAMILY, NetworkParams, is_network, network_of
from mlcycle.steps.etl import resolve_etl_run
from mlcycle.steps.retrain import RetrainParams, base_mismatch, log_history
from mlcycle.training import (
    finetune_obstacle,
    finetune_params,
    fit_network,
    training_summary,
)

log = logging.getLogger("mlcycle.retrain")

STRATEGIES = ("finetune", "scratch")
WINDOWS = ("current", "all")
BEST_PARAMS = "best_params.json"


@dataclass
class Base:
    """The model the challenger is measured against (and maybe continues from)."""

    uri: str
    version: str  # registry version, "" for a runs:/ URI
    pyfunc: object


@click.command()
@options_from(RetrainParams)
@step_command
def main(
    etl_run,
    model_name,
    epochs,
    batch_size,
    learning_rate,
    base_model,
    strategy,
    window,
    params_from,
    patience,
    seed,
):
    _check_choice("strategy", strategy, STRATEGIES)
    _check_choice("window", window, WINDOWS)
    params = NetworkParams(
        learning_rate=learning_rate,
        batch_size=batch_size,
        epochs=epochs,
        patience=patience,
        seed=seed,
    ).validate()
    flags = {
        "etl_run": etl_run,
        "model_name": model_name,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "base_model": base_model,
        "strategy": strategy,
        "window": window,
        "params_from": params_from,
        "patience": patience,
        "seed": seed,
    }
    with step_run("retrain", flags):
        # The base and tuned parameters first: a wrong URI or run id fails before any work.
        if params_from:
            params = tuned_params(params_from, params)
        base = load_base(base_model, model_name)
        etl_run = resolve_etl_run(etl_run)
        mlflow.set_tag("mlcycle.etl_run", etl_run)
        schema, splits = load_splits(etl_run)
        comparable = check_base(base, schema, strategy, etl_run)
        used, start_from = choose_strategy(strategy, base, schema)
        if start_from is not None:
            params = _finetuned(params, start_from)
        # Logged once the architecture is settled: they describe the network trained.
        mlflow.log_params({f"network.{k}": v for k, v in params.to_dict().items()})
        train = training_rows(splits, window)
        log.info(
            "training %s on %d %s rows (%s)",
            used,
            len(train),
            window,
            f"from {base.uri}" if start_from else "fresh network",
        )

        before = _before(base, schema, splits, etl_run, strategy) if comparable else {}
        model, history = fit_network(schema, params, train, base=start_from)
        after = score(model, schema, splits)
        mlflow.log_metrics(
            {
                **before,
                **prefixed(after, "after"),
                **after,
                **training_summary(history, params),
                "train_rows": float(len(train)),
            }
        )
        log_history(history)
        _report(schema.task, before, after)

        # Registered only once fitted and evaluated; the alias moves last.
        tags = {
            "mlcycle.family": FAMILY,
            "mlcycle.etl_run": etl_run,
            "mlcycle.strategy": used,
            "mlcycle.window": window,
            "mlcycle.base_model": base.uri if base else "",
            "mlcycle.base_model_version": base.version if base else "",
        }
        version = nn.log(
            model, schema, train, model_name, version_tags=tags
        ).registered_model_version
        registry.set_alias(model_name, config.CHALLENGER, version)
        mlflow.set_tags(
            {**tags, "mlcycle.model_name": model_name, "mlcycle.model_version": version}
        )


def check_base(base: Base | None, schema, strategy: str, etl_run: str) -> bool:
    """Whether the base model can be compared with on this data (before_* metrics).

    A base of another task, target or columns (a model of another dataset) cannot be
    continued nor compared: with strategy finetune that is an error before any training;
    with scratch (the base was only the yardstick) the network trains without before_*
    metrics, and the run says why in the tag mlcycle.before_skipped."""
    if base is None:
        return False
    reason = base_mismatch(base.pyfunc, schema)
    if reason is None:
        return True
    where = f"base model {base.uri} does not model the data of etl run {etl_run}: {reason}"
    if strategy == "finetune":
        raise MlcycleError(
            f"{where}; it can be neither fine-tuned nor compared with: pass a base_model of "
            "this data, or strategy=scratch to train without before_ metrics"
        )
    _skip_before(f"{where}; no before_ metrics")
    return False


def _skip_before(reason: str) -> None:
    log.warning("%s", reason)
    mlflow.set_tag("mlcycle.before_skipped", reason[:5000])


def _before(base, schema, splits, etl_run: str, strategy: str) -> dict[str, float]:
    """The base model on the held-out rows. When it cannot read them at all (a model that
    did not say what it reads): an error for finetune, no before_ metrics for scratch."""
    try:
        return prefixed(score(base.pyfunc, schema, splits), "before")
    except Exception as exc:  # noqa: BLE001 - any model may refuse foreign rows
        text = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).strip()
        reason = " ".join(text.split())[:300]
        where = f"base model {base.uri} cannot score the rows of etl run {etl_run}: {reason}"
        if strategy == "finetune":
            raise MlcycleError(
                f"{where}; pass a base_model of this data, or strategy=scratch to train "
                "without before_ metrics"
            ) from exc
        _skip_before(f"{where}; no before_ metrics")
        return {}


def _finetuned(params: NetworkParams, base) -> NetworkParams:
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


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise MlcycleError(f"parameter {name} must be one of {', '.join(choices)}, got {value!r}")


def tuned_params(run_id: str, params: NetworkParams) -> NetworkParams:
    """params with the network hyper-parameters an optimize run found best; the training
    budget (epochs, patience, seed) stays this step's."""
    try:
        mlflow.get_run(run_id)
    except MlflowException as exc:
        raise MlcycleError(f"parameter params_from: no run with id {run_id!r}") from exc
    try:
        best = mlflow.artifacts.load_dict(f"runs:/{run_id}/{BEST_PARAMS}")
    except Exception as exc:  # noqa: BLE001 - missing artifact: MlflowException or OSError
        raise MlcycleError(
            f"parameter params_from: run {run_id} has no {BEST_PARAMS} (is it an optimize run?)"
        ) from exc
    if best.get("family") != FAMILY:
        raise MlcycleError(
            f"parameter params_from: run {run_id} tuned family "
            f"{best.get('family')!r}, not a network ({FAMILY!r})"
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
    return Base(uri=uri, version=version.version if version else "", pyfunc=pyfunc)


def choose_strategy(strategy: str, base: Base | None, schema):
    """(strategy actually used, the NetworkModel to continue or None), saying why when
    fine-tuning is asked for and impossible."""
    if strategy == "scratch":
        return "scratch", None
    if base is None:
        log.info("strategy finetune: no base model, so training from scratch")
        return "scratch", None
    network = network_of(base.pyfunc) if is_network(base.uri) else None
    if network is None:
        log.warning(
            "strategy finetune: the base model %s is not a network (e.g. the "
            "RandomForest champion), fine-tuning is impossible: training from scratch",
            base.uri,
        )
        return "scratch", None
    if reason := finetune_obstacle(network, schema):
        log.warning("strategy finetune: %s; training from scratch", reason)
        return "scratch", None
    return "finetune", network


def training_rows(splits, window: str) -> pd.DataFrame:
    if window == "current":
        return splits.current_train
    return pd.concat([splits.reference_train, splits.current_train], ignore_index=True)


def _report(task: str, before: dict, after: dict) -> None:
    key = f"current_test_{PRIMARY[task]}"
    if before:
        log.info("%s: base %.4f -> retrained %.4f", key, before[f"before_{key}"], after[key])
    else:
        log.info("%s: retrained %.4f", key, after[key])


if __name__ == "__main__":
    main()
