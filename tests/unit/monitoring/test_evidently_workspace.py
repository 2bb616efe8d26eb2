"""The Evidently workspace monitor feeds: real local workspaces in tmp_path, a real
snapshot of tiny frames; monitors at once are real processes."""

import multiprocessing

import numpy as np
import pandas as pd
import pytest

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.monitoring import drift, evidently_workspace
from mlcycle.steps.monitor import MonitorParams

SCHEMA = Schema(target="y", task="regression", numeric=["revenu (€/mois)"], categorical=["pays"])


@pytest.fixture(scope="module")
def snapshot():
    rng = np.random.default_rng(0)

    def frame(shift):
        return pd.DataFrame(
            {
                "revenu (€/mois)": rng.normal(2000 + shift, 100, 60),
                "pays": rng.choice(["fr", "be"], 60),
                "y": rng.normal(shift, 1, 60),
            }
        )

    return drift.run_drift(frame(0), frame(300), SCHEMA).snapshot


def test_an_empty_parameter_turns_the_workspace_off_and_a_relative_one_is_the_projects():
    assert evidently_workspace.workspace_folder("") is None
    assert evidently_workspace.workspace_folder("  ") is None
    default = MonitorParams().evidently_workspace
    assert default == evidently_workspace.DEFAULT_WORKSPACE == ".mlcycle/evidently"
    # The project's (its output root: a folder of the suite's own under the tests).
    assert evidently_workspace.workspace_folder(default) == config.output_root() / default


def test_a_workspace_that_cannot_be_made_is_one_line_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(MlcycleError, match="^parameter evidently_workspace: cannot create"):
        MonitorParams(evidently_workspace=str(blocker / "ws")).validate()


def test_one_project_per_model_made_once_with_its_dashboard(tmp_path, snapshot):
    columns = evidently_workspace.dashboard_columns(SCHEMA)
    refs = [
        evidently_workspace.add_snapshot(
            tmp_path,
            model,
            snapshot,
            name=f"run {i}",
            metadata={"mlflow_run_id": str(i)},
            columns=columns,
        )
        for i, model in enumerate(["a", "a", "b"])
    ]
    workspace = evidently_workspace.open_workspace(tmp_path)
    projects = {p.name: p for p in workspace.list_projects()}
    assert sorted(projects) == ["a", "b"]
    assert refs[0].project_id == refs[1].project_id == projects["a"].id
    stored = [workspace.get_run(projects["a"].id, s) for s in workspace.list_runs(projects["a"].id)]
    assert sorted(s.metadata["mlflow_run_id"] for s in stored) == ["0", "1"]
    # The report's snapshot is not changed by the copy the workspace got.
    assert (
        snapshot.get_name() is None and "mlflow_run_id" not in snapshot.to_snapshot_model().metadata
    )
    panels = workspace.get_dashboard(projects["a"].id).panels
    followed = {v.metric_labels.get("column") for p in panels for v in p.values}
    assert {"revenu (€/mois)", "pays", "y", "champion_prediction"} <= followed


MODELS = [f"m{i}" for i in range(5)]


def _add(folder, snapshot, barrier, i):
    for model in MODELS:
        barrier.wait(timeout=60)  # every process asks for the model's project at once
        evidently_workspace.add_snapshot(folder, model, snapshot, name=f"run {i}", metadata={})


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_monitors_at_once_share_one_project(tmp_path, snapshot):
    """Without the lock, two of six processes finding no project each make one: seen in
    about one round of three here, so five rounds (models) in a row."""
    # Forked from a fresh server, not from this worker: a worker that loaded TensorFlow or
    # OpenMP threads before may crash its forks (SIGSEGV, seen in CI).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "evidently.ui.workspace", "evidently.core.report"])
    barrier = context.Barrier(6)
    processes = [
        context.Process(target=_add, args=(tmp_path, snapshot, barrier, i)) for i in range(6)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join(180)
    for p in processes:
        if p.is_alive():  # a process that failed leaves the others waiting
            p.terminate()
            p.join()
    assert [p.exitcode for p in processes] == [0] * 6
    workspace = evidently_workspace.open_workspace(tmp_path)
    projects = workspace.list_projects()
    assert sorted(p.name for p in projects) == MODELS
    assert all(len(workspace.list_runs(p.id)) == 6 for p in projects)


def test_a_workspace_a_person_broke_is_one_line(tmp_path, snapshot):
    evidently_workspace.add_snapshot(tmp_path, "m", snapshot, name="first", metadata={})
    (project_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (project_dir / "metadata.json").write_text("{not json")
    with pytest.raises(
        MlcycleError, match=f"^parameter evidently_workspace: cannot add the snapshot to {tmp_path}"
    ):
        evidently_workspace.add_snapshot(tmp_path, "m", snapshot, name="second", metadata={})
