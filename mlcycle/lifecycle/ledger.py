"""The promotion ledger: every alias move of a registered model, kept in the tracking store.

The registry says where `champion`, `challenger` and `previous` point now and forgets
where they pointed before. `aliases.apply` therefore records each move here: the time,
the model, the alias, the version it left and the one it now names, the run that moved
it (the active run, if any), the reason and the code version. "Which version was
champion at time T" is then one query (`champion_at`), and `history` lists every move.

Where the entries live, and why: one small run per move in a dedicated experiment,
`mlcycle-ledger`, its fields as run params.
- Append-only: a move creates a run of its own and nothing is read, changed and written
  back, so concurrent writers (two `main` runs, a `rollback` during a `monitor`) cannot
  overwrite each other's entries. A list kept in a registered-model tag would be a
  read-modify-write that loses entries under concurrency, and is bounded in size.
- Immutable: MLflow refuses to change a logged param, so an entry cannot be edited later.
- Independent of what it describes: entries outlive a deleted model version or alias
  (model-version tags would go with the version).
- Queryable offline with MLflow alone, in the same store as everything else:
  `mlflow.search_runs(experiment_names=["mlcycle-ledger"],
  filter_string="params.model = 'loan-amount' and params.alias = 'champion'")`, and
  browsable in `mlflow ui` as an experiment.
An entry is written as a RUNNING run and only counts once FINISHED, so a writer that dies
half-way leaves nothing that readers see. Times are UTC; the run's start time is the
move's time in milliseconds (what the store can filter on), the `time` param the same
to the microsecond (what orders two moves of one millisecond)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import mlflow
from mlflow.entities import Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.lifecycle import workflow

log = logging.getLogger(__name__)

EXPERIMENT = "mlcycle-ledger"
MODEL_TAG = "mlcycle.ledger.model"
# MLflow's limit for a param value is 6000 characters; a reason is a sentence.
MAX_REASON = 1000


@dataclass(frozen=True)
class Entry:
    """One alias move: `alias` of `model` went from `from_version` to `to_version`
    (None: unset) at `time`, moved by run `run_id` ("" when no run was active)."""

    time: datetime
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    run_id: str
    reason: str
    code_version: str
    seq: int = 0  # order of the moves made together (one `apply`)
    entry_id: str = ""  # the ledger run holding the entry

    @property
    def order(self) -> tuple[datetime, int]:
        return (self.time, self.seq)

    def describe(self) -> str:
        return (
            f"{self.time:%Y-%m-%d %H:%M:%S} UTC {self.model} {self.alias}: "
            f"{self.from_version or '-'} -> {self.to_version or '-'}"
            + (f" ({self.reason})" if self.reason else "")
        )


# ---------------------------------------------------------------- pure: entries and time


def entries_for(
    model_name: str,
    moves: Iterable,
    reason: str,
    *,
    run_id: str,
    code_version: str,
    when: datetime,
) -> list[Entry]:
    """The entries of moves applied together at `when` (aliases.Move: alias, to, was)."""
    return [
        Entry(
            time=when,
            model=model_name,
            alias=move.alias,
            from_version=move.was,
            to_version=move.to,
            run_id=run_id,
            reason=reason[:MAX_REASON],
            code_version=code_version,
            seq=i,
        )
        for i, move in enumerate(moves)
    ]


def alias_at(entries: Iterable[Entry], alias: str, when: datetime) -> str | None:
    """The version `alias` named at `when`: where its last move up to then took it.

    None before its first recorded move (or after a move that unset it)."""
    when = as_utc(when)
    moved = [e for e in entries if e.alias == alias and e.time <= when]
    return max(moved, key=lambda e: e.order).to_version if moved else None


def as_utc(when: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is taken as UTC, as the ledger writes."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _millis(when: datetime) -> int:
    return int(as_utc(when).timestamp() * 1000)


def to_params(entry: Entry) -> dict[str, str]:
    return {
        "time": entry.time.isoformat(),
        "model": entry.model,
        "alias": entry.alias,
        "from": entry.from_version or "",
        "to": entry.to_version or "",
        "run": entry.run_id,
        "reason": entry.reason,
        "code_version": entry.code_version,
        "seq": str(entry.seq),
    }


def from_params(params: dict[str, str], entry_id: str = "") -> Entry:
    return Entry(
        time=datetime.fromisoformat(params["time"]),
        model=params["model"],
        alias=params["alias"],
        from_version=params.get("from") or None,
        to_version=params.get("to") or None,
        run_id=params.get("run", ""),
        reason=params.get("reason", ""),
        code_version=params.get("code_version", ""),
        seq=int(params.get("seq", "0")),
        entry_id=entry_id,
    )


# ---------------------------------------------------------------------- the store


def record(model_name: str, moves: list, reason: str = "") -> list[Entry]:
    """Write one entry per move just applied, all stamped with this moment.

    Raises when the store refuses; the entries already written are deleted first, so a
    failed record leaves no partial trace (aliases.apply then puts the aliases back)."""
    if not moves:
        return []
    active = mlflow.active_run()
    entries = entries_for(
        model_name,
        moves,
        reason,
        run_id=active.info.run_id if active else "",
        code_version=workflow.code_version(),
        when=datetime.now(UTC),
    )
    client = mlflow.MlflowClient()
    experiment_id = _experiment_id(client)
    written: list[str] = []
    try:
        for entry in entries:
            written.append(_write(client, experiment_id, entry))
    except Exception:
        for run_id in written:
            # The store is failing already: the exception raised below says why.
            with contextlib.suppress(MlflowException):
                client.delete_run(run_id)
        raise
    return [_with_id(e, i) for e, i in zip(entries, written, strict=True)]


def _with_id(entry: Entry, entry_id: str) -> Entry:
    return Entry(**{**entry.__dict__, "entry_id": entry_id})


def _write(client: mlflow.MlflowClient, experiment_id: str, entry: Entry) -> str:
    name = f"{entry.model} {entry.alias}: {entry.from_version or '-'} -> {entry.to_version or '-'}"
    millis = _millis(entry.time)
    run = client.create_run(experiment_id, start_time=millis, tags={MODEL_TAG: entry.model})
    run_id = run.info.run_id
    client.log_batch(
        run_id,
        params=[Param(k, v) for k, v in to_params(entry).items()],
        tags=[RunTag(MLFLOW_RUN_NAME, name)],
    )
    client.set_terminated(run_id, "FINISHED", end_time=millis)
    return run_id


def _experiment_id(client: mlflow.MlflowClient, create: bool = True) -> str | None:
    """The ledger's experiment, created on first use (a concurrent creator may win)."""
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None and found.lifecycle_stage == "deleted" and create:
        raise MlcycleError(
            f"the promotion ledger's experiment {EXPERIMENT!r} is deleted, so alias moves "
            f"cannot be recorded: restore it (mlflow experiments restore --experiment-id "
            f"{found.experiment_id}); nothing moved"
        )
    if found is not None:
        return found.experiment_id
    if not create:
        return None
    try:
        return client.create_experiment(EXPERIMENT)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(EXPERIMENT).experiment_id


def _search(model_name: str, *conditions: str, **kwargs) -> list[Entry]:
    """FINISHED entries of the model meeting the search conditions."""
    client = mlflow.MlflowClient()
    experiment_id = _experiment_id(client, create=False)
    if experiment_id is None:
        return []
    query = " and ".join(
        ["attributes.status = 'FINISHED'", *_model_condition(model_name), *conditions]
    )
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id], filter_string=query, output_format="list", **kwargs
    )
    entries = [from_params(r.data.params, r.info.run_id) for r in runs]
    return [e for e in entries if e.model == model_name]


def _model_condition(model_name: str) -> list[str]:
    """MLflow's search syntax has no escapes: a name holding a single quote is written in
    double quotes; one holding both is matched after the search instead."""
    if "'" not in model_name:
        return [f"params.model = '{model_name}'"]
    return [f'params.model = "{model_name}"'] if '"' not in model_name else []


def history(model_name: str) -> list[Entry]:
    """Every recorded move of the model's aliases, oldest first."""
    return sorted(_search(model_name), key=lambda e: e.order)


def champion_at(model_name: str, when: datetime) -> str | None:
    """The version that was the model's champion at `when` (None: it had none recorded).

    One query: the latest champion moves up to that millisecond; the microsecond `time`
    then settles moves of the same millisecond."""
    recent = _search(
        model_name,
        f"params.alias = '{config.CHAMPION}'",
        f"attributes.start_time <= {_millis(when)}",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    return alias_at(recent, config.CHAMPION, when)


def listed(model_name: str) -> list[dict]:
    """The ledger's alias moves of the model, as the report's History lists them."""
    return [
        {
            "time": e.time.strftime("%Y-%m-%d %H:%M:%S"),
            "alias": e.alias,
            "from_version": e.from_version,
            "to_version": e.to_version,
            "reason": e.reason,
        }
        for e in history(model_name)
    ]
