"""The team setup, for real: a private PostgreSQL cluster, an authenticated `mlflow server`
on it (scripts/team-server.sh), `main` and two concurrent `optimize` workers through it,
checked through the server's REST API. Everything started is stopped at the end.

One server for the module; the tests run in file order and the later ones read what the
earlier ones wrote (main's etl run). The steps run from a copy of the working tree: main's
cache keys hold the code version, which must not change between its two runs while
others commit to this checkout."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
import requests

from mlcycle.monitoring import promotion
from mlcycle.scaleout import optuna_storage, remote
from tests.conftest import BIN, ROOT, flags, step_env

pytestmark = pytest.mark.integration

SCRIPT = ROOT / "scripts" / "team-server.sh"
MODEL = "loan-amount"
# The outage and the resume through the server are what is tested, not the candidates: no
# refitted family (hgb's refit is one more step run, ~20 s; main's own test covers it).
MAIN_PARAMS = {"n_trials": 2, "optimize_family": "rf", "epochs": 2, "refit_families": ""}


def read_env(path: Path) -> dict[str, str]:
    """The `export KEY=VALUE` lines of a file team-server.sh wrote."""
    pairs = (
        line.removeprefix("export ").split("=", 1)
        for line in path.read_text().splitlines()
        if line.startswith("export ")
    )
    return dict(pairs)


def snapshot(folder: Path) -> Path:
    """The project's files (tracked and new, not ignored) copied to folder, outside git."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        if (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    return folder


@dataclass
class Team:
    folder: Path
    project: Path
    env: dict[str, str]  # the team member's: tracking URI, credentials, Optuna storage
    admin: tuple[str, str]
    started: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    @property
    def member(self) -> tuple[str, str]:
        return self.env["MLFLOW_TRACKING_USERNAME"], self.env["MLFLOW_TRACKING_PASSWORD"]

    def script(self, action: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(SCRIPT), action, str(self.folder)],
            capture_output=True,
            text=True,
            timeout=300,
        )

    def api(self, method: str, path: str, auth=None, **kwargs) -> requests.Response:
        return requests.request(
            method,
            f"{self.url}/api/2.0/mlflow/{path}",
            timeout=60,
            auth=self.member if auth is None else auth,
            **kwargs,
        )

    def ok(self, method: str, path: str, **kwargs) -> dict:
        response = self.api(method, path, **kwargs)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response.json()

    def runs(self, filter_string: str) -> list[dict]:
        return self.ok(
            "POST",
            "runs/search",
            json={
                "experiment_ids": ["0"],
                "filter": filter_string,
                "max_results": 1000,
                "order_by": ["attributes.start_time DESC"],
            },
        ).get("runs", [])

    def aliases(self, model: str) -> dict[str, str]:
        response = self.api("GET", "registered-models/get", params={"name": model})
        if response.status_code == 404:
            return {}
        assert response.status_code == 200, response.text
        return {
            a["alias"]: a["version"] for a in response.json()["registered_model"].get("aliases", [])
        }

    def start_run(self, entry: str, params: dict) -> subprocess.Popen:
        """`mlflow run . -e ENTRY` as a team member types it, after `source team.env`."""
        cmd = [str(BIN / "mlflow"), "run", ".", "-e", entry, "--env-manager", "local"]
        for key, value in params.items():
            cmd += ["-P", f"{key}={value}"]
        return self._start(cmd)

    def start_step(self, entry: str, params: dict) -> subprocess.Popen:
        """`python -m entrypoints.ENTRY` with the entry's flags, in the same environment:
        the process `mlflow run` starts, without `mlflow run`'s own (~2 s of CPU)."""
        return self._start([sys.executable, "-m", f"entrypoints.{entry}", *flags(params)])

    def _start(self, cmd: list[str]) -> subprocess.Popen:
        env = step_env(
            self.url, **{k: v for k, v in self.env.items() if k != "MLFLOW_TRACKING_URI"}
        )
        proc = subprocess.Popen(
            cmd,
            cwd=self.project,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its children (the steps) are stopped with it
        )
        self.started.append(proc)
        return proc

    def stop_started(self) -> None:
        """Kill what a failed test left running, so the server can be stopped."""
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=60)


def tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def metrics(run: dict) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, f"{out}\n{err}"


@pytest.fixture(scope="module")
def team(request) -> Team:
    # Under /tmp (world-searchable): the cluster runs as the postgres user when we are root.
    folder = Path(tempfile.mkdtemp(prefix="mlcycle-team-"))
    members: list[Team] = []

    def stop():
        for member in members:
            member.stop_started()
        result = subprocess.run(
            ["bash", str(SCRIPT), "stop", str(folder)], capture_output=True, text=True, timeout=300
        )
        shutil.rmtree(folder, ignore_errors=True)
        assert result.returncode == 0, result.stderr

    request.addfinalizer(stop)  # before start: a half-started setup is stopped too
    started = subprocess.run(
        ["bash", str(SCRIPT), "start", str(folder)], capture_output=True, text=True, timeout=600
    )
    assert started.returncode == 0, f"{started.stdout}\n{started.stderr}"
    admin = read_env(folder / "admin.env")
    members.append(
        Team(
            folder,
            snapshot(folder / "project"),
            read_env(folder / "team.env"),
            (admin["MLFLOW_TRACKING_USERNAME"], admin["MLFLOW_TRACKING_PASSWORD"]),
        )
    )
    return members[0]


def test_server_refuses_missing_credentials_and_missing_permissions(team):
    assert (
        team.api("GET", "experiments/search", auth=False, params={"max_results": 5}).status_code
        == 401
    )
    assert (
        team.api(
            "GET", "experiments/search", auth=(team.member[0], "wrong"), params={"max_results": 5}
        ).status_code
        == 401
    )
    # Writes without credentials are refused too, and write nothing.
    assert (
        team.api("POST", "runs/create", auth=False, json={"experiment_id": "0"}).status_code == 401
    )
    assert (
        team.api(
            "POST", "registered-models/create", auth=False, json={"name": "anonymous"}
        ).status_code
        == 401
    )
    # A registered user the team granted nothing.
    outsider = ("outsider", "outsider-password-1")
    created = requests.post(
        f"{team.url}{remote.CREATE_USER}",
        auth=team.admin,
        timeout=60,
        json={"username": outsider[0], "password": outsider[1]},
    )
    assert created.status_code == 200, created.text
    team.ok("POST", "registered-models/create", json={"name": "team-probe"})

    assert (
        team.api("GET", "experiments/get", auth=outsider, params={"experiment_id": "0"}).status_code
        == 403
    )
    assert (
        team.api("POST", "runs/create", auth=outsider, json={"experiment_id": "0"}).status_code
        == 403
    )
    assert (
        team.api(
            "GET", "registered-models/get", auth=outsider, params={"name": "team-probe"}
        ).status_code
        == 403
    )
    assert (
        team.api(
            "POST",
            "registered-models/set-tag",
            auth=outsider,
            json={"name": "team-probe", "key": "owner", "value": "outsider"},
        ).status_code
        == 403
    )
    # Nothing was written by the refused calls.
    assert team.runs("") == []
    assert (
        team.api(
            "GET", "registered-models/get", auth=team.admin, params={"name": "anonymous"}
        ).status_code
        == 404
    )
    probe = team.ok("GET", "registered-models/get", params={"name": "team-probe"})
    assert not probe["registered_model"].get("tags")


def test_main_through_the_server_fails_cleanly_when_it_goes_away_then_resumes(team):
    first = team.start_run("main", MAIN_PARAMS)
    # Stop the tracking server once optimize's child run exists: etl and baseline are done.
    deadline = time.monotonic() + 600
    while not team.runs("tags.`mlcycle.step` = 'optimize'"):
        assert first.poll() is None, "main ended before optimize:\n" + finish(first)[1]
        assert time.monotonic() < deadline, "optimize never started"
        time.sleep(1)
    aliases_before = team.aliases(MODEL)
    assert aliases_before.get("champion")
    stopped = team.script("stop-mlflow")
    assert stopped.returncode == 0, stopped.stderr
    gone = time.monotonic()

    code, output = finish(first, timeout=300)  # bounded retries: no hang
    assert code != 0
    assert time.monotonic() - gone < 240
    assert team.url in output and any(word in output for word in remote._UNREACHABLE), output

    restarted = team.script("restart-mlflow")
    assert restarted.returncode == 0, restarted.stderr
    assert team.aliases(MODEL) == aliases_before  # the failed step moved nothing
    failed_main = next(r for r in team.runs("tags.`mlcycle.step` = 'main'"))
    first_etl = (
        tags(failed_main).get("mlcycle.run.etl")
        or team.runs("tags.`mlcycle.step` = 'etl'")[0]["info"]["run_id"]
    )

    # The resume: main's own process (the failure above went through `mlflow run`).
    code, output = finish(team.start_step("main", MAIN_PARAMS))
    assert code == 0, output

    main_run = team.runs("tags.`mlcycle.step` = 'main' and attributes.status = 'FINISHED'")[0]
    main_tags = tags(main_run)
    # Resumed at the failed step: etl reused, the champion kept (no new baseline).
    assert main_tags["mlcycle.run.etl"] == first_etl
    assert "mlcycle.run.baseline" not in main_tags
    assert metrics(main_run)["steps_reused"] >= 1
    optimize_id = main_tags["mlcycle.run.optimize"]
    trials = team.runs(f"tags.`mlflow.parentRunId` = '{optimize_id}'")
    assert len(trials) == MAIN_PARAMS["n_trials"]  # nested trial runs on the server
    # The aliases follow the monitor's decision: a promoted challenger becomes champion
    # (the old one kept as previous); otherwise champion stays and challenger is set.
    monitor_id = main_tags["mlcycle.run.monitor"]
    monitor_run = team.ok("GET", "runs/get", params={"run_id": monitor_id})["run"]
    decision = tags(monitor_run)[promotion.DECISION_TAG]
    aliases = team.aliases(MODEL)
    if decision == promotion.PROMOTED:
        assert "challenger" not in aliases
        assert aliases["previous"] == aliases_before["champion"] != aliases["champion"]
    else:
        assert aliases["champion"] == aliases_before["champion"] and aliases["challenger"]
    # The report, uploaded through the server and read back through it.
    listed = team.ok("GET", "artifacts/list", params={"run_id": monitor_id, "path": "report"})
    assert "report/report.html" in {f["path"] for f in listed["files"]}
    report = requests.get(
        f"{team.url}/get-artifact",
        auth=team.member,
        timeout=60,
        params={"run_id": monitor_id, "path": "report/report.html"},
    )
    assert report.status_code == 200 and "<html" in report.text.lower()
    assert (
        requests.get(
            f"{team.url}/get-artifact",
            timeout=60,
            params={"run_id": monitor_id, "path": "report/report.html"},
        ).status_code
        == 401
    )


def test_two_optimize_workers_share_one_postgresql_study(team):
    etl_run = team.runs("tags.`mlcycle.step` = 'etl' and attributes.status = 'FINISHED'")
    assert etl_run, "no finished etl run on the server"
    storage = team.env["OPTUNA_STORAGE"]
    assert storage.startswith("postgresql")
    common = {
        "etl_run": etl_run[0]["info"]["run_id"],
        "storage": storage,
        "study_name": "team-shared",
        "n_trials": 3,
        "model_name": "team-tuning",
    }
    workers = [team.start_step("optimize", {**common, "seed": seed}) for seed in (1, 2)]
    for code, output in map(finish, workers):
        assert code == 0, output

    study = optuna.load_study(
        study_name="team-shared",
        storage=optuna_storage.open_storage(optuna_storage.parse_storage(storage)),
    )
    assert sorted(t.number for t in study.trials) == list(range(6))  # none lost, none twice
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    parents = team.runs(
        "tags.`mlcycle.study_name` = 'team-shared' and tags.`mlcycle.step` = 'optimize'"
    )
    assert len(parents) == 2
    for parent in parents:
        pid = parent["info"]["run_id"]
        own = sorted(t.number for t in study.trials if t.user_attrs["mlflow_parent_run_id"] == pid)
        logged = sorted(
            int(tags(r)["optuna.trial_number"])
            for r in team.runs(f"tags.`mlflow.parentRunId` = '{pid}'")
        )
        assert logged == own and len(own) == 3  # each worker's parent holds its own trials


def test_unreachable_server_is_named_in_one_line():
    """What mlcycle.scaleout.remote makes of MLflow's error once its bounded retries are spent."""
    from mlflow.exceptions import MlflowException

    url = "http://127.0.0.1:9"
    try:
        try:
            raise ConnectionError("HTTPConnectionPool: Max retries exceeded (Connection refused)")
        except ConnectionError as exc:
            raise MlflowException(f"API request to {url}/api/2.0/mlflow/runs/get failed") from exc
    except MlflowException as exc:
        message = remote.unreachable_message(exc, url)
        assert message and url in message and "\n" not in message
        assert remote.unreachable_message(exc, "sqlite:///mlflow.db") is None
    assert remote.unreachable_message(MlflowException("RESOURCE_DOES_NOT_EXIST"), url) is None
