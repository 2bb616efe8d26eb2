"""The watch step: decide whether a model needs retraining, record why, and retrain it.

Reads, for the model (runs filtered by the tag `mlcycle.model_name`, in every
experiment), what the production loop wrote (docs/lifecycle.md, "Deciding when to
retrain"): `feedback_batch` runs (realised metrics per scored batch), label-free
`monitor` runs (estimated metric and band, drift share), `score` runs (the batches), the
promotion ledger (when the champion took over), the registry (the champion; the monitor
run that promoted it, whose `challenger_current_test_<metric>` is the champion's own
held-out metric, the baseline of decay) and earlier `watch` and `main` runs (the last
retrain). `mlcycle.lifecycle.trigger.decide` judges that evidence under the policy.

Writes, in its own run (tag mlcycle.step=watch): the decision as tags
(`mlcycle.watch.trigger`, `mlcycle.watch.reason`, `mlcycle.watch.rules_fired`), the
figures as metrics, and `watch/evidence.json` (the evidence, every rule's verdict, the
thresholds). Every decision is recorded, "no" included. When it triggers it posts a
`trigger` alert and runs `main` as a child run on the labelled rows `feedback` gathered
(the `mlcycle.feedback.output` files, merged when several): when realised decay
triggered, those of the batches since the champion last held (the present after a
change, tag `mlcycle.watch.labels`), else every row labelled since the champion took
over; reference = the data the champion learned on (its etl run's `current` file)."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import mlflow
import pandas as pd

from mlcycle import cli, config
from mlcycle.config import resolve_path
from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import parse_columns
from mlcycle.lifecycle import alerts, evidence, registry, trigger
from mlcycle.lifecycle.evidence import TRIGGER_TAG
from mlcycle.lifecycle.workflow import Step, code_version, run_or_reuse
from mlcycle.monitoring.gate import MIN_TEST_ROWS
from mlcycle.steps.params.etl import EtlParams
from mlcycle.steps.params.watch import WatchParams

log = logging.getLogger(__name__)

REASON_TAG = "mlcycle.watch.reason"
RULES_TAG = "mlcycle.watch.rules_fired"
POLICY_TAG = "mlcycle.watch.policy"
EVIDENCE_FILE = "watch/evidence.json"
LABELS_TAG = "mlcycle.watch.labels"


def main_etl_params(version) -> dict:
    """The parameters of the champion's etl run ({} when none is recorded)."""
    etl_run = evidence.etl_run_of(version)
    return mlflow.get_run(etl_run).data.params if etl_run else {}


def main_parameters(params: WatchParams, version, current: Path) -> dict:
    """main's parameters: the champion's etl settings, the labelled rows as current, and
    reference = what the champion learned on (its etl run's current file)."""
    etl = main_etl_params(version)
    reference = params.reference or etl.get("current") or config.DEFAULT_REFERENCE
    if not params.reference:
        log.info("reference for main: %s (the data the champion learned on)", reference)
    if not resolve_path(reference).is_file():
        if params.reference:
            raise MlcycleError(
                f"parameter reference: data file not found: {resolve_path(reference)}"
            )
        raise MlcycleError(
            f"the data the champion learned on, {resolve_path(reference)} (the current file of "
            f"etl run {evidence.etl_run_of(version)}), is gone: pass reference (a CSV with the "
            "same columns) for main's reference"
        )
    chosen = {
        "reference": str(resolve_path(reference)),
        "current": str(current),
        "model_name": params.model_name,
        "n_trials": params.n_trials,
        "epochs": params.epochs,
        "env_manager": params.env_manager,
        "alert_url": params.alert_url,
    }
    for name in ("target", "task", "drop_columns", "test_size", "seed"):
        if etl.get(name) not in (None, ""):
            chosen[name] = etl[name]
    chosen["drop_columns"] = with_prediction_id(
        chosen.get("drop_columns", config.DEFAULT_DROP_COLUMNS)
    )
    return chosen


def with_prediction_id(drop_columns: str) -> str:
    """The identifiers main drops, prediction_id included: the labelled rows carry it, and
    once they are a reference (the next retrain's) it would otherwise become a feature."""
    columns = parse_columns(drop_columns)
    return ",".join(
        columns if evidence.PREDICTION_ID in columns else [*columns, evidence.PREDICTION_ID]
    )


# ---------------------------------------------------------------- logging, then the step


def record(decision: trigger.Decision, params: WatchParams) -> None:
    """The decision as tags and metrics, its evidence as an artifact."""
    ev = decision.evidence
    mlflow.set_tags(
        {
            "mlcycle.model_name": params.model_name,
            "mlcycle.champion_version": ev.get("champion_version") or "",
            POLICY_TAG: params.policy,
            TRIGGER_TAG: str(decision.trigger).lower(),
            REASON_TAG: decision.summary[:4900],
            RULES_TAG: ",".join(decision.fired),
        }
    )
    windows = ev.get("windows") or []
    figures = {
        "watch_trigger": float(decision.trigger),
        "baseline": ev.get("baseline"),
        "last_realised": windows[-1]["realised"] if windows else None,
        "labelled_windows": float(len(windows)),
        "drift_share": ev.get("drift_share"),
        "age_batches": ev.get("age_batches"),
        "batches_since_retrain": ev.get("batches_since_retrain"),
    }
    mlflow.log_metrics({k: float(v) for k, v in figures.items() if v is not None})
    content = {
        "policy": params.policy,
        "thresholds": params.thresholds,
        "trigger": decision.trigger,
        "reasons": decision.reasons,
        "rules": [vars(r) for r in decision.rules],
        "evidence": ev,
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(EVIDENCE_FILE).name
        path.write_text(json.dumps(content, indent=2, default=str))
        mlflow.log_artifact(str(path), str(Path(EVIDENCE_FILE).parent))


def said_before(model_name: str, run_id: str, reason: str) -> bool:
    """Whether the model's previous watch run gave the same reason: an hourly schedule
    during a cooldown would otherwise repeat the same held-back alert every hour."""
    earlier = [r for r in evidence.runs(model_name, "watch") if r["run_id"] != run_id]
    return bool(earlier) and earlier[-1]["tags"].get(REASON_TAG) == reason[:4900]


def tell(decision: trigger.Decision, params: WatchParams, run_id: str) -> None:
    """A trigger alert; a decay or drift seen but not acted on (cooldown, never) too,
    unless the previous watch said the very same."""
    ev = decision.evidence
    kind = "trigger" if decision.trigger else None
    if not kind and decision.fired:
        kind = "decay" if any("decay" in name for name in decision.fired) else "drift"
    if not kind or not params.alert_url:
        return
    if not decision.trigger and said_before(params.model_name, run_id, decision.summary):
        log.info("watch: %s alert not repeated (the previous watch said the same)", kind)
        return
    windows = ev.get("windows") or []
    alerts.send(
        params.alert_url,
        kind,
        model=params.model_name,
        version=ev.get("champion_version"),
        message=decision.summary,
        metrics={
            "baseline": ev.get("baseline"),
            f"realised_{ev.get('metric')}": windows[-1]["realised"] if windows else None,
            "drift_share": ev.get("drift_share"),
            "age_batches": ev.get("age_batches"),
        },
        thresholds=params.thresholds,
        run_id=run_id,
        policy=params.policy,
        rules_fired=decision.fired,
    )


def labelled_rows(params: WatchParams, decision: trigger.Decision, run_id: str):
    """main's `current`: when realised decay triggered, the rows of the batches since the
    champion last held (the present; `trigger.decayed_since_change`), if they leave the
    gate enough test rows; otherwise every row labelled since the champion took over.
    The file (or None) and which rows it holds, in words."""
    version = evidence.champion_version(params.model_name)
    since = evidence.champion_since(params.model_name, version)
    present = []
    if "realised_decay" in decision.fired:
        present = trigger.decayed_since_change(decision.evidence, params.max_decay)
    if present:
        labels = evidence.gathered_labels(params.model_name, since, run_id, batches=present)
        test_size = float(main_etl_params(version).get("test_size") or EtlParams().test_size)
        rows = 0 if labels is None else len(pd.read_csv(labels, usecols=[0]))
        if int(rows * test_size) >= MIN_TEST_ROWS:
            return labels, f"{rows} rows of the {len(present)} decayed batch(es) since it held"
        log.info(
            "watch: %d labelled rows since the champion last held leave the gate fewer than "
            "%d test rows: main learns from every row labelled since it took over",
            rows,
            MIN_TEST_ROWS,
        )
    labels = evidence.gathered_labels(params.model_name, since, run_id)
    return labels, "every row labelled since the champion took over"


def retrain(params: WatchParams, run, decision: trigger.Decision) -> str | None:
    """main, as a child of this run, on the labelled rows gathered; its run id."""
    version = evidence.champion_version(params.model_name)
    labels, which = labelled_rows(params, decision, run.info.run_id)
    if labels is None:
        log.warning("watch: no labelled rows gathered since the champion took over: main not run")
        mlflow.set_tag("mlcycle.watch.main", "not run: no labelled rows since the champion")
        return None
    mlflow.set_tag(LABELS_TAG, which)
    log.info("watch: main's current: %s (%s)", labels, which)
    parameters = main_parameters(params, version, labels)
    child, reused = run_or_reuse(
        Step("main", parameters, data_files=[Path(parameters["reference"]), labels]),
        parent_run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        env_manager=params.env_manager,
        use_cache=True,
        code=code_version(),
        run_here=cli.run_child,
    )
    mlflow.set_tags({"mlcycle.run.main": child.info.run_id, "mlcycle.watch.main": "ran"})
    log.info("watch: main %s run %s", "reused" if reused else "ran as", child.info.run_id)
    return child.info.run_id


def execute(params: WatchParams) -> trigger.Decision:
    """Gather, decide, record, tell; retrain when it triggers."""
    run = mlflow.active_run()
    if evidence.champion_version(params.model_name) is None:
        registry.require_registered(params.model_name)
    found = evidence.read_evidence(params.model_name)
    decision = trigger.decide(found, params.policy, params.thresholds)
    record(decision, params)
    log.info(
        "watch %s (%s): %s — %s",
        params.model_name,
        params.policy,
        "RETRAIN" if decision.trigger else "no retrain",
        decision.summary,
    )
    tell(decision, params, run.info.run_id)
    if decision.trigger:
        retrain(params, run, decision)
    return decision
