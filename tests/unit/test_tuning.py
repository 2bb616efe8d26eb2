"""Storage parsing, metrics, search spaces, study resuming and trial logging of tuning."""

import json

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest

from mlcycle import tuning
from mlcycle.data import Schema
from mlcycle.errors import MlcycleError
from mlcycle.forest import ForestParams

optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- storage ----------------------------------------------------------------------------


def test_empty_storage_means_the_journal_file_under_the_state_folder(tmp_path):
    spec = tuning.parse_storage("", state_dir=tmp_path / ".mlcycle")
    assert spec.kind == "journal"
    assert spec.location == str(tmp_path / ".mlcycle" / tuning.JOURNAL_FILE)
    storage = tuning.open_storage(spec)
    optuna.create_study(storage=storage, study_name="s").optimize(lambda t: 1.0, n_trials=1)
    assert (tmp_path / ".mlcycle" / tuning.JOURNAL_FILE).is_file()


@pytest.mark.parametrize(
    ("text", "kind", "location"),
    [
        ("{d}/journal.log", "journal", "{d}/journal.log"),
        ("file://{d}/journal.log", "journal", "{d}/journal.log"),
        ("file://localhost{d}/journal.log", "journal", "{d}/journal.log"),
        ("{d}/a:b.log", "journal", "{d}/a:b.log"),  # a colon after a slash is a file name
        ("sqlite:///{d}/optuna.db", "rdb", "sqlite:///{d}/optuna.db"),
        ("sqlite:///optuna.db", "rdb", "sqlite:///optuna.db"),
        ("sqlite+pysqlite:///{d}/o.db", "rdb", "sqlite+pysqlite:///{d}/o.db"),
        (
            "postgresql://user@localhost:5432/optuna",
            "rdb",
            "postgresql+psycopg2://user@localhost:5432/optuna",
        ),
        (
            "postgresql+psycopg2://user@localhost/optuna",
            "rdb",
            "postgresql+psycopg2://user@localhost/optuna",
        ),
        ("postgres+psycopg2://u@h/db", "rdb", "postgresql+psycopg2://u@h/db"),
        (
            "postgresql://u@/db?host=/var/run/postgresql",
            "rdb",
            "postgresql+psycopg2://u@/db?host=/var/run/postgresql",
        ),
        ("mysql://u@h/db", "rdb", "mysql://u@h/db"),
        ("mysql+pymysql://u:pw@h:3306/db", "rdb", "mysql+pymysql://u:pw@h:3306/db"),
    ],
)
def test_storage_that_is_accepted(tmp_path, text, kind, location):
    spec = tuning.parse_storage(text.format(d=tmp_path))
    assert (spec.kind, spec.location) == (kind, location.format(d=tmp_path))


def test_a_bare_postgresql_url_uses_the_installed_driver():
    # SQLAlchemy 2.1 reads postgresql:// as psycopg 3, which is not installed.
    assert tuning.parse_storage("postgresql://u@h/db").location == "postgresql+psycopg2://u@h/db"
    assert tuning.parse_storage("postgres://u@h/db").location == "postgresql+psycopg2://u@h/db"


def test_a_password_in_a_storage_url_is_never_displayed():
    spec = tuning.parse_storage("postgresql://me:s3cret@db.example:5432/optuna")
    assert "s3cret" not in spec.display and "db.example" in spec.display
    assert spec.location.endswith("me:s3cret@db.example:5432/optuna")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # A scheme and a colon that do not make a valid URL: never a journal file name.
        (
            "postgresql:/host/db",
            "'postgresql:/host/db' is not a valid postgresql URL: write postgresql://",
        ),
        ("postgres:/host/db", "is not a valid postgres URL: write postgresql://USER@HOST"),
        ("postgresql:/me:s3cret@host/db", "'postgresql:/me:\\*\\*\\*@host/db' is not a valid"),
        ("postgresql//host/db", "'postgresql//host/db' looks like a URL without its ':'"),
        ("sqlite:/x.db", "'sqlite:/x.db' is not a valid sqlite URL: write sqlite:///FILE"),
        ("sqlite:x.db", "is not a valid sqlite URL"),
        ("sqlite://x.db", "is not a valid sqlite URL: it names no database file"),
        ("sqlite://", "it names no database file"),
        ("sqlite:///:memory:", "it names no database file"),
        ("mysql:/h/db", "is not a valid mysql URL: write mysql://USER@HOST"),
        ("file:/x.log", "is not a valid file URL"),
        ("file://otherhost/x.log", "is not a valid file URL"),
        ("host:5432/db", "'host:5432/db' is neither a journal file path nor a storage URL"),
        ("localhost:5432", "is neither a journal file path nor a storage URL"),
        ("study:1.log", "a file whose name holds ':' is written ./NAME"),
        ("postgresql://u@h", "it needs a host and a database"),
        ("postgresql://u@h:notaport/db", "its port is not a number"),
        ("postgresql://u@h:99999/db", "port 99999 is out of range"),
        ("postgress://u@h/db", "unsupported scheme 'postgress' .*did you mean postgresql"),
        ("sqlit:///x.db", "unsupported scheme 'sqlit' .*did you mean sqlite"),
        ("redis://localhost:6379", "unsupported scheme 'redis'"),
        ("http://example.com/db", "unsupported scheme 'http'"),
        ("{d}", "is a folder; a journal file is needed"),
        ("{d}/existing.db", "is an SQLite database, not a journal file"),
    ],
)
def test_bad_storage_text_is_refused_with_one_message(tmp_path, text, message):
    """Each of these used to be taken for a journal file name (or a URL that fails late)."""
    import sqlite3

    sqlite3.connect(tmp_path / "existing.db").execute("create table t (x)").connection.commit()
    with pytest.raises(MlcycleError, match="^parameter storage: .*" + message) as caught:
        tuning.parse_storage(text.format(d=tmp_path))
    assert "s3cret" not in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////nonexistent-folder/sub/optuna.db",
        "postgresql://nobody@127.0.0.1:1/optuna",
        "mysql+nosuchdriver://nobody@127.0.0.1:1/optuna",
    ],
)
def test_storage_that_cannot_be_opened_is_one_clear_error(url):
    with pytest.raises(MlcycleError, match="parameter storage: cannot open") as caught:
        tuning.open_storage(tuning.parse_storage(url))
    assert "install" not in str(caught.value)  # the real reason, not a missing driver


def test_sqlite_storage_opens(tmp_path):
    storage = tuning.open_storage(tuning.parse_storage(f"sqlite:///{tmp_path}/o.db"))
    optuna.create_study(storage=storage, study_name="s").optimize(lambda t: 1.0, n_trials=2)
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 2


def test_a_worker_that_loses_the_schema_race_opens_the_storage_on_retry(tmp_path, monkeypatch):
    """Two workers on an empty PostgreSQL database both create Optuna's tables and one
    gets "duplicate key ... pg_type_typname_nsp_index"; it must retry, not fail the run."""
    real = optuna.storages.RDBStorage
    calls = []

    def racing(url, **kwargs):
        calls.append(url)
        if len(calls) == 1:
            raise RuntimeError(
                "(psycopg2.errors.UniqueViolation) duplicate key value violates unique "
                'constraint "pg_type_typname_nsp_index"'
            )
        return real(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr(tuning.time, "sleep", lambda seconds: None)
    storage = tuning.open_storage(tuning.parse_storage(f"sqlite:///{tmp_path}/o.db"))
    assert len(calls) == 2 and isinstance(storage, real)


def test_a_schema_error_that_persists_is_still_one_clear_error(monkeypatch):
    def always(url, **kwargs):
        raise RuntimeError('relation "studies" already exists')

    monkeypatch.setattr(optuna.storages, "RDBStorage", always)
    monkeypatch.setattr(tuning.time, "sleep", lambda seconds: None)
    with pytest.raises(MlcycleError, match='cannot open .*"studies" already exists'):
        tuning.open_storage(tuning.parse_storage("sqlite:////tmp/never-created.db"))


# --- parameters -------------------------------------------------------------------------


def test_metric_defaults_to_the_primary_one_with_its_direction():
    assert tuning.resolve_metric("", "regression") == ("r2", "maximize")
    assert tuning.resolve_metric("", "classification") == ("f1", "maximize")
    assert tuning.resolve_metric("rmse", "regression") == ("rmse", "minimize")
    assert tuning.resolve_metric("roc_auc", "classification") == ("roc_auc", "maximize")


@pytest.mark.parametrize(
    ("metric", "task", "message"),
    [
        ("auc", "regression", "parameter metric must be one of"),
        ("current_test_r2", "regression", "parameter metric must be one of"),
        ("r2", "classification", "does not apply to a classification task"),
        ("f1", "regression", "does not apply to a regression task"),
    ],
)
def test_bad_metric_is_refused(metric, task, message):
    with pytest.raises(MlcycleError, match=message):
        tuning.resolve_metric(metric, task)


def test_family_must_be_known():
    assert tuning.check_family("nn") == "nn"
    with pytest.raises(MlcycleError, match="parameter family must be one of rf, nn, got 'xgb'"):
        tuning.check_family("xgb")


def test_default_study_name_is_stable():
    assert tuning.default_study_name("loan-amount", "rf", "r2") == "loan-amount-rf-r2"


# --- search spaces ----------------------------------------------------------------------


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_forest_space_gives_valid_params_with_one_job(task):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        params = tuning.suggest_forest(trial, task, seed=7).validate()
        study.tell(trial, 0.0)
        assert params.n_jobs == 1 and params.seed == 7
        assert 50 <= params.n_estimators <= 400 and 3 <= params.max_depth <= 30
        assert 0.2 <= params.max_features <= 1.0
        if task == "regression":
            assert params.class_weight is None and "class_weight" not in trial.params
    assert {t.params.get("class_weight") for t in study.trials} >= (
        {None, "balanced"} if task == "classification" else {None}
    )


def test_best_params_of_the_forest_round_trip_through_json():
    study = optuna.create_study()
    study.optimize(lambda t: tuning.suggest_forest(t, "classification", 1).n_estimators, n_trials=3)
    best = json.loads(
        json.dumps(tuning.best_params("rf", study.best_trial, "classification", seed=1))
    )
    assert best.pop("family") == "rf"
    params = ForestParams(**best).validate()
    assert params.n_estimators == study.best_trial.params["n_estimators"]
    assert params.n_jobs == -1 and set(best) == set(ForestParams.__dataclass_fields__)


# --- studies ----------------------------------------------------------------------------


def _journal(tmp_path):
    return tuning.open_storage(tuning.parse_storage(str(tmp_path / "j.log")))


ATTRS = {"family": "rf", "metric": "r2", "task": "regression"}


def test_resuming_a_study_adds_to_it_and_samples_new_points(tmp_path):
    storage = _journal(tmp_path)
    study, created = tuning.open_study(storage, "s", "maximize", ATTRS, seed=3)
    assert created
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    again, created = tuning.open_study(_journal(tmp_path), "s", "maximize", ATTRS, seed=3)
    assert not created
    again.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    xs = [t.params["x"] for t in again.trials]
    assert len(xs) == 5 and len(set(xs)) == 5  # the same seed again would repeat points
    assert again.user_attrs == ATTRS


def test_a_study_of_another_metric_or_direction_is_not_resumed(tmp_path):
    storage = _journal(tmp_path)
    tuning.open_study(storage, "s", "maximize", ATTRS, seed=0)
    with pytest.raises(MlcycleError, match="study 's' exists and is to maximize"):
        tuning.open_study(storage, "s", "minimize", {**ATTRS, "metric": "mae"}, seed=0)
    with pytest.raises(MlcycleError, match="study 's' exists with family='rf', not 'nn'"):
        tuning.open_study(storage, "s", "maximize", {**ATTRS, "family": "nn"}, seed=0)


def test_no_completed_trial_is_a_clear_error(tmp_path):
    study = optuna.create_study(study_name="empty")
    with pytest.raises(MlcycleError, match="study 'empty' has no completed trial"):
        tuning.best_trial(study)


# --- objectives and trial logging -------------------------------------------------------


def _frame(rows=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    kind = rng.choice(["a", "b"], rows)
    y = 3 * x + (kind == "a") + rng.normal(scale=0.1, size=rows)
    return pd.DataFrame({"x": x, "kind": kind, "y": y})


def test_forest_objective_cross_validates_on_the_rows_it_is_given():
    schema = Schema(target="y", task="regression", numeric=["x"], categorical=["kind"])
    objective = tuning.ForestObjective(schema, _frame(), "r2", seed=0)
    assert sum(len(valid) for _, valid in objective.folds) == 120
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=2)
    assert 0.5 < study.best_value <= 1.0


def test_each_trial_is_a_nested_run_with_its_state_even_in_threads(tracking_uri):
    """A failing trial is recorded as failed and the search goes on; n_jobs=2 threads."""

    def objective(trial):
        x = trial.suggest_int("x", 0, 100)
        if trial.number == 1:
            raise RuntimeError("boom")
        if trial.number == 2:
            trial.report(1.0, 1)
            raise optuna.TrialPruned()
        return float(x)

    with mlflow.start_run() as parent:
        logger = tuning.TrialLogger(
            objective, parent.info.run_id, parent.info.experiment_id, "r2", "s"
        )
        study = optuna.create_study(direction="maximize")
        tuning.run_search(study, logger, n_trials=6, timeout=None, n_jobs=2, progress=False)
    assert logger.counts() == {"trials_complete": 4.0, "trials_pruned": 1.0, "trials_failed": 1.0}
    children = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        output_format="list",
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    assert len(children) == 6
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in children}
    assert sorted(by_number) == list(range(6))
    assert by_number[1].data.tags["trial_state"] == "failed"
    assert "boom" in by_number[1].data.tags["trial_error"]
    assert by_number[1].info.status == "FAILED"
    assert by_number[2].data.tags["trial_state"] == "pruned"
    assert by_number[0].data.metrics["validation_r2"] == study.trials[0].value
    assert by_number[0].data.params["x"] == str(study.trials[0].params["x"])
    assert study.trials[0].user_attrs["mlflow_run_id"] == by_number[0].info.run_id


def test_network_space_gives_valid_params_and_best_params_for_retrain():
    from mlcycle.network import NetworkParams

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        params = tuning.suggest_network(trial, seed=5).validate()
        study.tell(trial, float(sum(params.hidden_units)))
        assert 1 <= len(params.hidden_units) <= 3 and params.seed == 5
        assert params.epochs <= tuning.MAX_EPOCHS and params.batch_size in (16, 32, 64, 128)
    best = json.loads(json.dumps(tuning.best_params("nn", study.best_trial, "regression", 5)))
    assert best.pop("family") == "nn"
    assert set(best) == set(NetworkParams.__dataclass_fields__)
    assert NetworkParams.from_dict(best).hidden_units == tuple(best["hidden_units"])
    assert sum(best["hidden_units"]) == study.best_value


def test_network_objective_reports_losses_in_the_study_direction():
    schema = Schema(target="y", task="regression", numeric=["x"], categorical=["kind"])
    assert tuning.NetworkObjective(schema, _frame(), "r2", "maximize", 0).sign == -1.0
    assert tuning.NetworkObjective(schema, _frame(), "mae", "minimize", 0).sign == 1.0
