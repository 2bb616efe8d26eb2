"""`cli.run_child`: a step run inside its parent's process, in the child run the parent
created, ends as its own process would (its run's status, its exit code, its one line),
and leaves the parent's run, environment and signal handlers as they were."""

from __future__ import annotations

import signal
import sys
import types
from dataclasses import dataclass

import mlflow
import pytest

from mlcycle import cli, signals
from mlcycle.errors import MlcycleError
from mlcycle.params import check, param


@dataclass(frozen=True)
class ChildParams:
    behaviour: str = param(
        "ok", "what the step does", choices=("ok", "mistake", "bug", "stop", "stop-wrapped")
    )
    value: float = param(1.0, "a metric to log")

    def validate(self) -> ChildParams:
        check(self)
        return self


def execute(params: ChildParams) -> None:
    mlflow.log_metric("value", params.value)
    if params.behaviour == "mistake":
        raise MlcycleError("the file data.csv has no column y")
    if params.behaviour == "bug":
        raise RuntimeError("a bug")
    if params.behaviour == "stop":
        raise signals.Interrupted(signal.SIGTERM)
    if params.behaviour == "stop-wrapped":  # a stop request a library turned into its error
        signals._state["requested"] = signal.SIGTERM  # noqa: SLF001
        raise RuntimeError("Error calling __set_name__")


@pytest.fixture
def child_entry(monkeypatch):
    module = types.ModuleType("entrypoints.childtest")
    module.main = cli.entry_point("childtest", ChildParams, execute, "childtest: a test step")
    monkeypatch.setitem(sys.modules, "entrypoints.childtest", module)
    return "childtest"


@pytest.fixture
def parent(tracking_uri):
    handlers = {s: signal.getsignal(s) for s in signals.SIGNALS}
    with mlflow.start_run(run_name="parent") as run:
        yield run
    assert {s: signal.getsignal(s) for s in signals.SIGNALS} == handlers


def child_of(run) -> str:
    client = mlflow.MlflowClient()
    child = client.create_run(run.info.experiment_id, tags={"mlflow.parentRunId": run.info.run_id})
    return child.info.run_id


def test_the_step_runs_in_the_run_its_parent_created(child_entry, parent, monkeypatch):
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    run_id = child_of(parent)
    code = cli.run_child(child_entry, ["--value", "3"], run_id, parent.info.experiment_id)
    assert code == 0
    child = mlflow.get_run(run_id)
    assert child.info.status == "FINISHED"
    assert child.data.metrics == {"value": 3.0}
    assert child.data.params == {"behaviour": "ok", "value": "3.0"}
    # The parent's run is active again, untouched; the environment as it was.
    assert mlflow.active_run().info.run_id == parent.info.run_id
    assert mlflow.get_run(parent.info.run_id).data.metrics == {}
    assert "MLFLOW_RUN_ID" not in __import__("os").environ


@pytest.mark.parametrize(
    ("behaviour", "code", "said"),
    [("mistake", 2, "mlcycle error: the file data.csv has no column y"), ("bug", 1, "a bug")],
)
def test_a_failing_step_ends_its_run_failed_with_its_code_and_words(
    child_entry, parent, capsys, behaviour, code, said
):
    run_id = child_of(parent)
    args = ["--behaviour", behaviour]
    assert cli.run_child(child_entry, args, run_id, parent.info.experiment_id) == code
    assert mlflow.get_run(run_id).info.status == "FAILED"
    assert said in capsys.readouterr().err
    assert mlflow.active_run().info.run_id == parent.info.run_id


def test_a_refused_parameter_is_the_steps_one_line_and_code_2(child_entry, parent, capsys):
    run_id = child_of(parent)
    code = cli.run_child(child_entry, ["--value", "x"], run_id, parent.info.experiment_id)
    assert code == 2
    assert "mlcycle error: parameter value must be a number, got 'x'" in capsys.readouterr().err
    assert mlflow.get_run(run_id).info.status == "RUNNING"  # never opened: the caller ends it


def test_a_stop_request_ends_the_child_killed_and_reaches_the_parent(child_entry, parent):
    run_id = child_of(parent)
    with pytest.raises(signals.Interrupted):
        cli.run_child(child_entry, ["--behaviour", "stop"], run_id, parent.info.experiment_id)
    assert mlflow.get_run(run_id).info.status == "KILLED"
    assert mlflow.active_run().info.run_id == parent.info.run_id


def test_a_stop_a_library_turned_into_its_own_error_still_ends_the_child_killed(
    child_entry, parent, monkeypatch
):
    monkeypatch.setitem(signals._state, "requested", None)  # noqa: SLF001
    run_id = child_of(parent)
    args = ["--behaviour", "stop-wrapped"]
    with pytest.raises(signals.Interrupted) as stopped:
        cli.run_child(child_entry, args, run_id, parent.info.experiment_id)
    assert isinstance(stopped.value.__cause__, RuntimeError)
    assert mlflow.get_run(run_id).info.status == "KILLED"


@pytest.fixture
def signal_state(monkeypatch):
    monkeypatch.setattr(signals, "_state", {**signals._state})  # noqa: SLF001
    monkeypatch.setitem(signals._state, "held", False)  # noqa: SLF001
    monkeypatch.setitem(signals._state, "pending", None)  # noqa: SLF001
    monkeypatch.setitem(signals._state, "requested", None)  # noqa: SLF001
    return signals._state  # noqa: SLF001


def test_a_child_leaves_its_parents_hold_to_the_parent(child_entry, parent, signal_state):
    """main holds stop requests once it has moved an alias; a child run after that must
    not release them, or a stop would end main KILLED after its move."""
    signals.hold()
    signals._handler(signal.SIGTERM, None)  # noqa: SLF001 - arrives while held: waits
    run_id = child_of(parent)
    assert cli.run_child(child_entry, [], run_id, parent.info.experiment_id) == 0
    assert mlflow.get_run(run_id).info.status == "FINISHED"
    assert signals.held()
    with pytest.raises(signals.Interrupted):  # the parent's own release acts on it
        signals.release()


def test_a_stop_before_the_child_opens_its_run_ends_that_run_killed(parent, signal_state):
    from mlcycle.lifecycle import workflow

    def stopped_early(*_):
        raise signals.Interrupted(signal.SIGTERM)

    with pytest.raises(signals.Interrupted):
        workflow.run_or_reuse(
            workflow.Step("rollback", {"model_name": "never"}),
            parent_run_id=parent.info.run_id,
            experiment_id=parent.info.experiment_id,
            env_manager="local",
            use_cache=False,
            code="c",
            run_here=stopped_early,
        )
    (child,) = mlflow.search_runs(
        [parent.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        output_format="list",
    )
    assert child.info.status == "KILLED"
