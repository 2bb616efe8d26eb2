"""The real optimize step: two workers sharing one journal-file study (one through `mlflow
run . -e optimize`, one as `python -m entrypoints.optimize`, as main's children and a
second machine's worker start it), a resumed study, the network family (pruned trials,
and retrain on its best parameters), and bad parameters refused before any alias moves or
any state is written."""

import logging
import subprocess
import sys

import mlflow
import optuna
import pytest
from click.testing import CliRunner

from entrypoints.optimize import main as optimize_command
from mlcycle import config
from mlcycle.models import tuning
from mlcycle.scaleout import optuna_storage
from mlcycle.steps.etl import EtlParams, execute
from tests.conftest import BIN, ROOT, assert_ok, flags, step_env

pytestmark = pytest.mark.integration


@pytest.fixture
def etl_run(tracking_uri) -> str:
    """An etl run on the bundled data, made in-process (a subprocess costs ~15 s)."""
    with mlflow.start_run(run_name="etl") as run:
        mlflow.set_tag(config.STEP_TAG, "etl")
        execute(EtlParams())
    return run.info.run_id


def _start_worker(tracking_uri, params, *, through_mlflow_run: bool = True) -> subprocess.Popen:
    """A worker through `mlflow run . -e optimize`, or its step's process directly."""
    if through_mlflow_run:
        cmd = [str(BIN / "mlflow"), "run", ".", "-e", "optimize", "--env-manager", "local"]
        for key, value in params.items():
            cmd += ["-P", f"{key}={value}"]
    else:
        cmd = [sys.executable, "-m", "entrypoints.optimize", *flags(params)]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=step_env(tracking_uri),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _finish(proc) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _runs(filter_string):
    return mlflow.search_runs(
        search_all_experiments=True, output_format="list", filter_string=filter_string
    )


def _trials_of(parent_id) -> list[int]:
    return sorted(
        int(r.data.tags["optuna.trial_number"])
        for r in _runs(
            f"tags.`mlflow.parentRunId` = '{parent_id}' and "
            f"tags.`{config.STEP_TAG}` = '{tuning.TRIAL_STEP_TAG}'"
        )
    )


def test_two_workers_share_one_study_then_a_third_run_resumes_it(tracking_uri, etl_run, tmp_path):
    journal = tmp_path / "study.journal"
    common = {"etl_run": etl_run, "storage": journal, "study_name": "shared", "n_trials": 3}
    workers = [
        _start_worker(tracking_uri, {**common, "seed": 1}),
        _start_worker(tracking_uri, {**common, "seed": 1, "n_jobs": 2}, through_mlflow_run=False),
    ]
    for result in map(_finish, workers):
        assert_ok(result)
        assert "database is locked" not in result.stderr

    parents = _runs(f"tags.`{config.STEP_TAG}` = 'optimize'")
    assert len(parents) == 2
    study = optuna.load_study(
        study_name="shared",
        storage=optuna_storage.open_storage(optuna_storage.parse_storage(str(journal))),
    )
    assert sorted(t.number for t in study.trials) == list(range(6))  # none lost, none twice
    for parent in parents:
        pid = parent.info.run_id
        assert parent.data.tags["parameter_optimization"] == "true"
        assert parent.data.tags["mlcycle.study_name"] == "shared"
        assert parent.data.tags["mlcycle.storage"] == str(journal)
        own = sorted(t.number for t in study.trials if t.user_attrs["mlflow_parent_run_id"] == pid)
        assert _trials_of(pid) == own and len(own) == 3  # each parent holds its own trials
        assert parent.data.metrics["trials_complete"] == 3
        # The best of the whole study when this worker finished, other workers' included.
        best = mlflow.artifacts.load_dict(f"runs:/{pid}/best_params.json")
        best_trial = study.trials[int(parent.data.tags["mlcycle.best_trial"])]
        assert best.pop("family") == "rf"
        assert {k: best[k] for k in best_trial.params} == best_trial.params
        assert {"current_test_r2", "reference_test_r2"} <= set(parent.data.metrics)
        charts = {a.path for a in mlflow.MlflowClient().list_artifacts(pid, "charts")}
        assert {"charts/optuna_history.png", "charts/param_importances.png"} <= charts
    challenger = mlflow.MlflowClient().get_model_version_by_alias("loan-amount", "challenger")
    assert challenger.run_id in {p.info.run_id for p in parents}
    assert challenger.tags["mlcycle.family"] == "rf"

    # Re-running with the same storage and study name adds to the study (in-process: the
    # command is the same, a third process would cost ~20 s of imports).
    result = CliRunner().invoke(
        optimize_command,
        [
            "--etl-run",
            etl_run,
            "--storage",
            str(journal),
            "--study-name",
            "shared",
            "--n-trials",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        len(
            optuna.load_study(
                study_name="shared",
                storage=optuna_storage.open_storage(optuna_storage.parse_storage(str(journal))),
            ).trials
        )
        == 8
    )


def test_network_family_prunes_by_epoch_and_retrain_trains_its_best_params(
    tracking_uri, classification_csvs, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    old, new = classification_csvs
    with mlflow.start_run(run_name="etl") as etl:
        mlflow.set_tag(config.STEP_TAG, "etl")
        execute(
            EtlParams(
                reference=str(old), current=str(new), target="churn", drop_columns="customer_id"
            )
        )
    journal = tmp_path / "j.log"
    result = CliRunner().invoke(
        optimize_command,
        [
            "--etl-run",
            etl.info.run_id,
            "--model-name",
            "churn",
            "--family",
            "nn",
            "--n-trials",
            "4",
            "--metric",
            "roc_auc",
            "--storage",
            str(journal),
        ],
    )
    assert result.exit_code == 0, result.output
    (parent,) = _runs(f"tags.`{config.STEP_TAG}` = 'optimize'")
    pid = parent.info.run_id
    assert parent.data.tags["mlcycle.study_name"] == "churn-nn-roc_auc"
    assert _trials_of(pid) == [0, 1, 2, 3]
    trial_runs = _runs(
        f"tags.`mlflow.parentRunId` = '{pid}' and "
        f"tags.`{config.STEP_TAG}` = '{tuning.TRIAL_STEP_TAG}'"
    )
    assert {r.data.tags["trial_state"] for r in trial_runs} <= {"complete", "pruned"}
    client = mlflow.MlflowClient()
    for run in trial_runs:  # each epoch's validation loss, which the pruner judged
        assert len(client.get_metric_history(run.info.run_id, "val_loss")) >= 1

    # The pruner really stopped trials (seeded: the same ones every time), and the
    # Optuna study and the MLflow runs agree on which, and when.
    study = optuna.load_study(
        study_name="churn-nn-roc_auc",
        storage=optuna_storage.open_storage(optuna_storage.parse_storage(str(journal))),
    )
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and len(pruned) < len(study.trials)
    assert parent.data.metrics["trials_pruned"] == len(pruned)
    for trial in pruned:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["trial_state"] == "pruned" and run.info.status == "KILLED"
        stopped_at = max(trial.intermediate_values)  # the epoch the pruner judged last
        assert stopped_at < trial.params["epochs"]
        assert len(client.get_metric_history(run.info.run_id, "val_loss")) == stopped_at
        assert "validation_roc_auc" not in run.data.metrics

    best = mlflow.artifacts.load_dict(f"runs:/{pid}/best_params.json")
    from mlcycle.models.families.nn import TRAINING_BUDGET
    from mlcycle.models.network import NetworkParams, load_network

    assert best.pop("family") == "nn" and isinstance(best["hidden_units"], list)
    assert set(best) == set(NetworkParams.__dataclass_fields__)
    NetworkParams.from_dict(best).validate()
    assert "current_test_roc_auc" in parent.data.metrics
    version = client.get_model_version_by_alias("churn", "challenger")
    assert version.tags["mlcycle.family"] == "nn" and version.run_id == pid

    # retrain -P params_from=<this run> trains the tuned network: its logged params and
    # the registered model hold best_params.json, except the training budget it keeps.
    from entrypoints.retrain import main as retrain_command

    result = CliRunner().invoke(
        retrain_command,
        [
            "--etl-run",
            etl.info.run_id,
            "--model-name",
            "churn",
            "--epochs",
            "2",
            "--params-from",
            pid,
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    (retrained,) = _runs(f"tags.`{config.STEP_TAG}` = 'retrain'")
    logged = {
        k.removeprefix("network."): v
        for k, v in retrained.data.params.items()
        if k.startswith("network.")
    }
    tuned = {k: v for k, v in best.items() if k not in TRAINING_BUDGET}
    assert {k: logged[k] for k in tuned} == {k: str(v) for k, v in tuned.items()}
    assert (logged["epochs"], logged["patience"], logged["seed"]) == ("2", "10", "42")
    assert best["epochs"] != 2  # the tuned epochs were not taken
    new_version = retrained.data.tags["mlcycle.model_version"]
    network = load_network(f"models:/churn/{new_version}")
    assert network.params == NetworkParams.from_dict({**best, "epochs": 2, "patience": 10})

    # retrain's network replaces optimize's challenger: said in the log and tagged on the
    # replaced version, not overwritten silently.
    assert str(client.get_model_version_by_alias("churn", "challenger").version) == new_version
    assert (
        f"churn: challenger version {version.version} is replaced by version {new_version}"
        in caplog.text
    )
    replaced = client.get_model_version("churn", version.version)
    assert replaced.tags["mlcycle.superseded_by"] == f"{new_version} ({retrained.info.run_id})"


BAD_PARAMETERS = [
    (["--family", "xgboost"], "parameter family must be one of rf, nn, hgb, got 'xgboost'"),
    (["--metric", "accuracy_score"], "parameter metric must be one of"),
    (["--metric", "f1"], "parameter metric 'f1' does not apply to a regression task"),
    (["--storage", "redis://127.0.0.1:6379"], "parameter storage: unsupported scheme 'redis'"),
    (
        ["--storage", "postgresql:/127.0.0.1/optuna"],
        "parameter storage: 'postgresql:/127.0.0.1/optuna' is not a valid postgresql URL",
    ),
    (
        ["--storage", "sqlite:////nonexistent-dir/x/optuna.db"],
        "parameter storage: cannot open sqlite:////nonexistent-dir/x/optuna.db",
    ),
    (
        ["--storage", "postgresql://nobody:pw@127.0.0.1:1/optuna"],
        "parameter storage: cannot open postgresql://nobody:***@127.0.0.1:1/optuna: "
        "(psycopg.OperationalError) connection failed: "
        'connection to server at "127.0.0.1", port 1 failed',
    ),
    (["--n-trials", "-1"], "parameter n_trials must be >= 0"),
]


def test_bad_parameters_get_one_message_and_touch_no_alias(tracking_uri, etl_run, tmp_path):
    """The real command in-process (an MLflow import per case would cost minutes). Every
    case names a storage under tmp_path (a case's own --storage comes later and wins):
    none may write a journal into the project's .mlcycle/."""
    journal = tmp_path / "bad-parameters.journal"
    for args, message in BAD_PARAMETERS:
        result = CliRunner().invoke(
            optimize_command,
            ["--etl-run", etl_run, "--n-trials", "1", "--storage", str(journal), *args],
        )
        assert result.exit_code == 2, (args, result.output)
        assert f"mlcycle error: {message}" in result.stderr, args
        assert "pw@" not in result.stderr and "Traceback" not in result.stderr
    # A metric that does not fit the task is found before the journal file is created.
    assert not journal.exists()
    opened = _runs(f"tags.`{config.STEP_TAG}` = 'optimize'")
    assert opened and {r.info.status for r in opened} == {"FAILED"}
    assert mlflow.MlflowClient().search_registered_models() == []

    # n_trials=0 (how main skips the step) is nothing to do: exit 0, nothing registered.
    result = CliRunner().invoke(
        optimize_command,
        ["--etl-run", etl_run, "--n-trials", "0", "--storage", str(tmp_path / "j")],
    )
    assert result.exit_code == 0, result.output
    skipped = [
        r for r in _runs(f"tags.`{config.STEP_TAG}` = 'optimize'") if r.info.status == "FINISHED"
    ]
    assert [r.data.tags["mlcycle.skipped"] for r in skipped] == ["n_trials=0"]
    assert mlflow.MlflowClient().search_registered_models() == []


def test_the_network_search_knows_what_the_models_newest_retrain_kept(tracking_uri):
    from mlcycle.models.families import nn
    from mlcycle.steps.optimize import retrains_choice

    assert retrains_choice("loan-amount", nn.known_trial) is None  # no retrain yet
    for units, status in (("[16]", "FINISHED"), ("[64, 32]", "FINISHED"), ("[8]", "FAILED")):
        with mlflow.start_run() as run:
            mlflow.set_tag(config.STEP_TAG, "retrain")
            mlflow.log_params({"model_name": "loan-amount", "network.hidden_units": units})
            mlflow.log_params({"network.epochs": 30, "network.batch_size": 16})
        mlflow.MlflowClient().set_terminated(run.info.run_id, status)
    kept = retrains_choice("loan-amount", nn.known_trial)
    assert (kept["n_layers"], kept["units_0"], kept["units_1"], kept["epochs"]) == (2, 64, 32, 30)
    assert retrains_choice("other-model", nn.known_trial) is None
