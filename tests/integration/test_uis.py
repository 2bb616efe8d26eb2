"""The UIs on what the steps wrote, started for real (the commands `make dashboard` and
`make evidently-ui` run) on a free loopback port: optuna-dashboard on a study a real
optimize wrote, Evidently's UI on the workspace two real monitor runs fed. And what those
monitor runs show in MLflow's UI: the report's tables, and a drift metric per column, for
columns named with an accent and with characters MLflow refuses in a metric name."""

from __future__ import annotations

import contextlib
import html
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import mlflow
import numpy as np
import pandas as pd
import psutil
import pytest
import requests
from click.testing import CliRunner

from entrypoints.monitor import main as monitor_command
from entrypoints.optimize import main as optimize_command
from mlcycle import config
from mlcycle.ingest.datasets import load_splits
from mlcycle.lifecycle import registry
from mlcycle.models.families.rf import ForestParams
from mlcycle.models.families.rf import fit as fit_forest
from mlcycle.models.modelio import log_sklearn
from mlcycle.monitoring import evidently_workspace, tables
from mlcycle.steps.etl import EtlParams, execute
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

ACCENT = "nationalité_francaise"
REFUSED = "revenu (€/mois)"  # '(', '€', '/' and ')' are refused in an MLflow metric name
MODEL = "uis-model"
STUDY = "uis-study"


def _csv(path: Path, seed: int, shift: float) -> Path:
    """Loan-like rows: numbers, categories, the two awkward column names, a number target."""
    rng = np.random.default_rng(seed)
    rows = 240
    age = rng.normal(40 + 8 * shift, 10, rows).round()
    income = rng.normal(2500 + 600 * shift, 400, rows).round()
    french = np.where(rng.random(rows) < 0.8 - 0.3 * shift, "oui", "non")
    region = rng.choice(["nord", "sud", "île-de-france"], rows)
    amount = 3 * income + 50 * age + (french == "oui") * 800 + rng.normal(0, 500, rows)
    frame = pd.DataFrame(
        {"age": age, REFUSED: income, ACCENT: french, "region": region, "montant": amount}
    )
    frame.to_csv(path, index=False)
    return path


def _invoke(command, args: list[str]):
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


@pytest.fixture(scope="module")
def steps(module_tracking_uri, tmp_path_factory) -> SimpleNamespace:
    """etl on the awkward data, a 2-trial forest optimize (its model is the challenger),
    a forest champion, then two monitor runs into one Evidently workspace."""
    folder = tmp_path_factory.mktemp("uis")
    etl_params = EtlParams(
        reference=str(_csv(folder / "old.csv", 1, 0.0)),
        current=str(_csv(folder / "new.csv", 2, 1.0)),
        target="montant",
        drop_columns="",
    )
    with mlflow.start_run(run_name="etl") as etl:
        mlflow.set_tag(config.STEP_TAG, "etl")
        execute(etl_params)
    journal = folder / "optuna.journal"
    _invoke(
        optimize_command,
        ["--etl-run", etl.info.run_id, "--model-name", MODEL, "--family", "rf"]
        + ["--n-trials", "2", "--storage", str(journal), "--study-name", STUDY],
    )
    schema, splits = load_splits(etl.info.run_id)
    forest = fit_forest(schema, ForestParams(n_jobs=1, n_estimators=10), splits.reference_train)
    with mlflow.start_run(run_name="forest"):
        info = log_sklearn(forest, schema, splits.reference_train, MODEL)
    registry.set_alias(MODEL, config.CHAMPION, str(info.registered_model_version))
    workspace = folder / "evidently"
    # Two runs into the workspace, then one with the workspace turned off.
    for target in (workspace, workspace, ""):
        _invoke(
            monitor_command,
            ["--etl-run", etl.info.run_id, "--model-name", MODEL]
            + ["--output", str(folder / "reports"), "--evidently-workspace", str(target)],
        )
    *runs, off = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = 'monitor'",
        order_by=["attributes.start_time ASC"],
    )
    assert len(runs) == 2
    return SimpleNamespace(journal=journal, workspace=workspace, runs=runs, off=off)


def _report_drift_rows(report_html: Path) -> list[tuple[str, str]]:
    """(column, role) of each row of the HTML report's drift table."""
    table = report_html.read_text().split('id="drift-table"')[1].split("</table>")[0]
    rows = re.findall(r"<tr><td><code>(.*?)</code></td><td>(\w+)</td>", table)
    return [(html.unescape(column), role) for column, role in rows]


def test_monitor_logs_the_reports_tables_and_a_drift_score_per_column(steps):
    run = steps.runs[-1]
    metrics = run.data.metrics
    drift = mlflow.load_table(tables.DRIFT_TABLE, run_ids=[run.info.run_id])
    report_rows = _report_drift_rows(Path(run.data.tags["mlcycle.report"]))
    assert list(zip(drift["column"], drift["role"], strict=True)) == report_rows
    assert {ACCENT, REFUSED, "age", "region", "montant"} <= set(drift["column"])
    assert {"champion_prediction_drift_score", "challenger_prediction_drift_score"} <= set(metrics)
    # Every score the table shows is a metric of the run, under the name the table gives
    # (MLflow writes a table's numbers with 10 decimals; the metric keeps them all).
    for row in drift.itertuples():
        if np.isfinite(row.score):
            assert metrics[row.metric] == pytest.approx(row.score, rel=1e-9, abs=1e-10)
    assert f"drift_score.{ACCENT}" in metrics
    refused = tables.metric_safe(REFUSED)
    assert refused != f"drift_score.{REFUSED}" and refused in metrics
    # Runs can be searched and compared on them: the accented name works in a filter.
    found = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"metrics.`drift_score.{ACCENT}` >= 0",
    )
    assert {r.info.run_id for r in found} == {r.info.run_id for r in [*steps.runs, steps.off]}

    comparison = mlflow.load_table(tables.COMPARISON_TABLE, run_ids=[run.info.run_id])
    assert len(comparison) == 8  # 2 test splits x 4 regression metrics, as the report
    for row in comparison.itertuples():
        for role in ("champion", "challenger"):
            assert getattr(row, role) == pytest.approx(metrics[f"{role}_{row.split}_{row.metric}"])
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "tables")}
    assert artifacts == {tables.DRIFT_TABLE, tables.COMPARISON_TABLE}


def test_the_workspace_holds_one_project_per_model_and_one_snapshot_per_monitor_run(steps):
    """Two runs into it, two snapshots, each naming its run; the run with it off, none."""
    workspace = evidently_workspace.open_workspace(steps.workspace)
    (project,) = workspace.list_projects()
    assert project.name == MODEL
    snapshots = [workspace.get_run(project.id, s) for s in workspace.list_runs(project.id)]
    assert sorted(s.metadata["mlflow_run_id"] for s in snapshots) == sorted(
        r.info.run_id for r in steps.runs
    )
    # evidently_workspace="" added nothing, and its run names no snapshot.
    assert not any(k.startswith("mlcycle.evidently") for k in steps.off.data.tags)
    for run in steps.runs:
        tags = run.data.tags
        assert tags["mlcycle.evidently_project"] == str(project.id)
        assert tags["mlcycle.evidently_workspace"] == str(steps.workspace)
        assert tags["mlcycle.evidently_snapshot"] in {
            str(s) for s in workspace.list_runs(project.id)
        }


# --- the servers -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_command(target: str, **variables) -> str:
    """The command `make TARGET VAR=...` runs, read with `make -n` so the test does not
    run make's venv step (CI has just run it; a worktree may share another's venv)."""
    printed = subprocess.run(
        ["make", "-n", "--no-print-directory", target]
        + [f"{name}={value}" for name, value in variables.items()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return printed.strip().splitlines()[-1]


@contextlib.contextmanager
def _serving(command: str, port: int, ready: str, log: Path, timeout: float = 120):
    """Start the command in its own process group, wait until GET `ready` answers 200,
    yield the base URL; stop the whole group afterwards."""
    base = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command, shell=True, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no answer on {base}:\n{log.read_text()}"
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(base + ready, timeout=5).status_code == 200:
                    break
            time.sleep(0.3)
        yield base, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _listening(proc: subprocess.Popen) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process and its children listen on."""
    tree = psutil.Process(proc.pid)
    pids = {tree.pid} | {child.pid for child in tree.children(recursive=True)}
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    }


def _in_browser(url: str, texts: list[str]) -> list[str]:
    """Open url in headless Chromium until every text is on screen; returns the requests the
    page tried beyond this machine (aborted: the UIs must work offline)."""
    from playwright.sync_api import sync_playwright

    from tests.integration.test_report_browser import ARGS, chromium

    outside = []

    def route(request_route):
        if request_route.request.url.startswith(("http://127.0.0.1:", "data:", "blob:")):
            request_route.continue_()
        else:
            outside.append(request_route.request.url)
            request_route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", route)
            page.goto(url, wait_until="load")
            for text in texts:
                page.get_by_text(text, exact=False).first.wait_for(timeout=30_000)
        finally:
            browser.close()
    return outside


def test_optuna_dashboard_serves_the_study_optimize_wrote_on_loopback_only(steps, tmp_path):
    port = _free_port()
    command = _make_command("dashboard", STORAGE=steps.journal, DASHBOARD_PORT=port)
    with _serving(command, port, "/api/studies", tmp_path / "dashboard.log") as (base, proc):
        assert _listening(proc) == {("127.0.0.1", port)}
        studies = requests.get(base + "/api/studies", timeout=10).json()["study_summaries"]
        (study,) = [s for s in studies if s["study_name"] == STUDY]
        detail = requests.get(f"{base}/api/studies/{study['study_id']}", timeout=10).json()
        assert [t["state"] for t in detail["trials"]] == ["Complete", "Complete"]
        assert _in_browser(f"{base}/dashboard", [STUDY]) == []


def test_optuna_dashboard_serves_the_teams_postgresql_study(tmp_path):
    """`make dashboard STORAGE=$OPTUNA_STORAGE` on the team setup's PostgreSQL (docs/team.md),
    on a study its workers would share."""
    import optuna

    from mlcycle.scaleout import optuna_storage
    from tests.integration.test_team import SCRIPT, read_env

    # Under /tmp (world-searchable): the cluster runs as the postgres user when we are root.
    folder = Path(tempfile.mkdtemp(prefix="mlcycle-uis-"))
    try:
        started = subprocess.run(
            ["bash", str(SCRIPT), "start", str(folder)], capture_output=True, text=True, timeout=300
        )
        assert started.returncode == 0, f"{started.stdout}\n{started.stderr}"
        storage = read_env(folder / "team.env")["OPTUNA_STORAGE"]
        study = optuna.create_study(
            study_name="team-dashboard",
            storage=optuna_storage.open_storage(optuna_storage.parse_storage(storage)),
        )
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
        port = _free_port()
        command = _make_command("dashboard", STORAGE=storage, DASHBOARD_PORT=port)
        with _serving(command, port, "/api/studies", tmp_path / "dashboard.log") as (base, proc):
            assert _listening(proc) == {("127.0.0.1", port)}
            studies = requests.get(base + "/api/studies", timeout=10).json()["study_summaries"]
            assert [s["study_name"] for s in studies] == ["team-dashboard"]
        logged = (tmp_path / "dashboard.log").read_text()
        assert "***@" in logged and urlsplit(storage).password not in logged
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], capture_output=True, timeout=300)
        shutil.rmtree(folder, ignore_errors=True)


def test_evidently_ui_serves_the_models_project_and_each_runs_snapshot(steps, tmp_path):
    port = _free_port()
    command = _make_command(
        "evidently-ui", EVIDENTLY_WORKSPACE=steps.workspace, EVIDENTLY_PORT=port
    )
    with _serving(command, port, "/api/projects", tmp_path / "evidently.log") as (base, proc):
        assert _listening(proc) == {("127.0.0.1", port)}
        (project,) = requests.get(base + "/api/projects", timeout=10).json()
        assert project["name"] == MODEL
        listed = requests.get(f"{base}/api/projects/{project['id']}/snapshots", timeout=10).json()
        assert sorted(s["name"] for s in listed) == sorted(
            f"monitor run {r.info.run_id}" for r in steps.runs
        )
        # The snapshots hold the report's column names, as they are (accent, '€', '/').
        columns = requests.get(
            f"{base}/api/v2/snapshots/{project['id']}/label_values",
            params={"metric_type": "evidently:metric_v2:ValueDrift", "label": "column"},
            timeout=10,
        ).json()["label_values"]
        drift = mlflow.load_table(tables.DRIFT_TABLE, run_ids=[steps.runs[-1].info.run_id])
        assert set(columns) == set(drift["column"])
        # The dashboard follows the drifted share over both runs.
        series = requests.post(
            f"{base}/api/v2/snapshots/{project['id']}/data_series_batch",
            json={
                "series_filter": [
                    {
                        "metric": "evidently:metric_v2:DriftedColumnsCount",
                        "metric_labels": {"value_type": "share"},
                        "tags": [],
                        "metadata": {},
                    }
                ]
            },
            timeout=10,
        ).json()
        assert len(series["sources"]) == 2
        (share,) = series["series"]
        expected = [r.data.metrics["drift_share"] for r in steps.runs]
        assert share["values"] == pytest.approx(expected)
        dashboard = requests.get(f"{base}/api/v2/dashboards/{project['id']}", timeout=10).json()
        titles = [panel["title"] for panel in dashboard["panels"]]
        assert "Share of drifted features" in titles and "Drift score per feature" in titles
        assert (
            _in_browser(f"{base}/projects/{project['id']}/reports", [MODEL, listed[0]["name"]])
            == []
        )
