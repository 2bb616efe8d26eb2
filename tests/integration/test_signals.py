"""A real SIGTERM or SIGINT sent to a real step at several moments (the run just opened,
the model being logged, the version registered around the alias move, the network
training) ends its run KILLED or FINISHED, never RUNNING; and an alias points at what a
run produced only if that run ended FINISHED."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import mlflow
import pandas as pd
import pytest
from click.testing import CliRunner

from entrypoints.baseline import main as baseline_command
from entrypoints.etl import main as etl_command
from mlcycle import config
from tests.conftest import ROOT, step_env

pytestmark = pytest.mark.integration


def _start(module: str, tracking_uri: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", f"entrypoints.{module}", *args],
        cwd=ROOT,
        env=step_env(tracking_uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"the step ended before {what}:\n{proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def _step_run(step: str, model_name: str):
    runs = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = '{step}' and params.model_name = '{model_name}'",
    )
    return runs[0] if runs else None


def _versions_of(model_name: str, run_id: str):
    return mlflow.MlflowClient().search_model_versions(
        f"name = '{model_name}' and run_id = '{run_id}'"
    )


def _check_invariant(model_name: str, run_id: str) -> str:
    """The run is not left RUNNING; aliases point at its versions only if it FINISHED."""
    status = mlflow.get_run(run_id).info.status
    assert status in ("KILLED", "FAILED", "FINISHED"), status
    produced = {str(v.version) for v in _versions_of(model_name, run_id)}
    try:
        aliased = mlflow.MlflowClient().get_registered_model(model_name).aliases
    except mlflow.exceptions.MlflowException:
        aliased = {}
    pointing = {alias for alias, version in aliased.items() if str(version) in produced}
    if status != "FINISHED":
        assert not pointing, f"run {status} but {pointing} point at its versions"
    return status


@pytest.fixture(scope="module")
def etl_run(module_tracking_uri):
    """One etl run for the module's store: every step stopped here reads its splits, and
    each test's runs and versions carry a model name of their own (an etl process per
    test was 9 processes for the same splits). The real etl command, in this process."""
    done = CliRunner().invoke(etl_command, [])
    assert done.exit_code == 0, (done.output, done.exception)
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return run.info.run_id


def _logged_model_of(run_id: str):
    def found():
        run = mlflow.get_run(run_id)
        models = mlflow.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run_id}'",
            output_format="list",
        )
        return models or None

    return found


# Each case is a real step process (~15 s here): SIGINT at one moment, SIGTERM at all three.
@pytest.mark.parametrize(
    ("moment", "signum"),
    [
        ("opened", signal.SIGINT),
        ("opened", signal.SIGTERM),
        ("logging", signal.SIGTERM),
        ("registered", signal.SIGTERM),
    ],
)
def test_a_stopped_baseline_ends_its_run_and_never_leaves_an_alias_of_an_unfinished_run(
    module_tracking_uri, etl_run, moment, signum
):
    tracking_uri = module_tracking_uri
    name = f"sig-{moment}-{signum.name.lower()}"
    proc = _start("baseline", tracking_uri, "--etl-run", etl_run, "--model-name", name)
    run = _wait_for(lambda: _step_run("baseline", name), proc, "the run opened")
    run_id = run.info.run_id
    if moment == "logging":
        _wait_for(_logged_model_of(run_id), proc, "the model being logged")
    elif moment == "registered":
        _wait_for(lambda: _versions_of(name, run_id), proc, "the version registered")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    status = _check_invariant(name, run_id)
    if proc.returncode == 0:
        # The step had already finished when the signal arrived.
        assert status == "FINISHED"
    else:
        assert proc.returncode == 128 + signum, err[-2000:]
        assert f"stopped by {signum.name}" in err
        assert status in ("KILLED", "FINISHED"), status
        if moment == "opened":
            assert status == "KILLED"


def test_a_network_stopped_while_training_ends_killed_with_nothing_registered(
    module_tracking_uri, etl_run
):
    tracking_uri = module_tracking_uri
    name = "sig-training"
    proc = _start(
        "retrain",
        tracking_uri,
        *("--etl-run", etl_run, "--model-name", name, "--epochs", "500"),
        *("--strategy", "scratch", "--window", "current"),
    )
    run = _wait_for(lambda: _step_run("retrain", name), proc, "the run opened")
    run_id = run.info.run_id

    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()

    def training():
        return any("training scratch on" in line for line in lines)

    _wait_for(training, proc, "the training to start")
    time.sleep(3)  # inside the epochs
    assert proc.poll() is None, "".join(lines)[-2000:]
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    reader.join(timeout=10)
    err = "".join(lines)
    assert time.monotonic() - started < 30, "the step took too long to stop"
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert mlflow.get_run(run_id).info.status == "KILLED"
    assert not _versions_of(name, run_id)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """batch_02 500 times (~10 s of scoring here: the signal comes in the middle), written
    once for the score cases, which only read it."""
    path = tmp_path_factory.mktemp("big") / "big.csv"
    pd.concat([pd.read_csv(ROOT / "data" / "stream" / "batch_02.csv")] * 500).to_csv(
        path, index=False
    )
    return path


@pytest.mark.parametrize(
    ("moment", "signum"),
    [("opened", signal.SIGTERM), ("scoring", signal.SIGTERM), ("scoring", signal.SIGINT)],
)
def test_a_stopped_score_ends_killed_and_leaves_no_output(
    module_tracking_uri, etl_run, big, tmp_path, moment, signum
):
    tracking_uri = module_tracking_uri
    name = f"sig-score-{moment}-{signum.name.lower()}"
    # The model to score: the real baseline command, in this process (what is stopped
    # here is score's process; a baseline process per case only repeated its start-up).
    args = ["--etl-run", etl_run, "--model-name", name, "--n-estimators", "10"]
    trained = CliRunner().invoke(baseline_command, args)
    assert trained.exit_code == 0, (trained.output, trained.exception)
    output = tmp_path / "out" / "p.parquet"
    proc = _start(
        "score", tracking_uri, "--model-name", name, "--input", str(big), "--output", str(output)
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    if moment == "opened":  # the model loading
        _wait_for(lambda: _step_run("score", name), proc, "the run opened")
    else:
        _wait_for(lambda: any("scoring " in x for x in lines), proc, "the scoring to start")
        time.sleep(1)
    assert proc.poll() is None, "".join(lines)[-2000:]
    proc.send_signal(signum)
    proc.wait(timeout=60)
    reader.join(timeout=10)
    err = "".join(lines)
    assert proc.returncode == 128 + signum, err[-3000:]
    assert f"stopped by {signum.name}" in err and "Traceback" not in err, err[-3000:]
    run = _step_run("score", name)
    assert run.info.status == "KILLED"
    assert not (tmp_path / "out").exists()  # no output, no partial file, no lock


def _mlflow_run(entry: str, tracking_uri: str, params: dict):
    """`mlflow run . -e ENTRY` started, and the lines it prints, gathered as they come."""
    from tests.conftest import BIN

    cmd = [str(BIN / "mlflow"), "run", ".", "-e", entry, "--env-manager", "local"]
    for key, value in params.items():
        cmd += ["-P", f"{key}={value}"]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=step_env(tracking_uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return proc, lines


def test_mlflow_run_stopped_by_sigterm_does_not_leave_its_step_running(
    module_tracking_uri, etl_run
):
    """`mlflow run` exits on SIGTERM without passing it on; the step notices its parent
    is gone and ends its run KILLED instead of training on, orphaned, and registering."""
    name = "sig-mlflow-run"
    params = {"etl_run": etl_run, "model_name": name, "epochs": 500, "strategy": "scratch"}
    proc, lines = _mlflow_run("retrain", module_tracking_uri, {**params, "window": "current"})
    _wait_for(lambda: any("training scratch on" in x for x in lines), proc, "the training")
    run_id = _step_run("retrain", name).info.run_id
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 60
    while mlflow.get_run(run_id).info.status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert mlflow.get_run(run_id).info.status == "KILLED", "".join(lines)[-2000:]
    assert not _versions_of(name, run_id)


def test_main_stopped_while_its_retrain_trains_ends_both_runs_killed(tracking_uri):
    """main runs its steps in its own process: a stop reaching it while retrain trains
    ends retrain's run KILLED, then main's, and retrain registered nothing."""
    name = "sig-main"
    params = {"model_name": name, "n_trials": 0, "refit_families": "", "epochs": 500}
    proc, lines = _mlflow_run("main", tracking_uri, params)
    _wait_for(lambda: any("retrain: candidates:" in x for x in lines), proc, "the training")
    time.sleep(2)
    retrain = _step_run("retrain", name).info.run_id
    main = _step_run("main", name).info.run_id
    proc.send_signal(signal.SIGTERM)  # `mlflow run` exits; main sees its parent gone
    proc.wait(timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "RUNNING" in {
        mlflow.get_run(r).info.status for r in (retrain, main)
    }:
        time.sleep(0.5)
    assert mlflow.get_run(retrain).info.status == "KILLED", "".join(lines)[-3000:]
    assert mlflow.get_run(main).info.status == "KILLED"
    assert not _versions_of(name, retrain)
    _check_invariant(name, retrain)
