"""The storage parameter of optimize: which storage a text names, and opening it."""

import optuna
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.scaleout import optuna_storage


def test_empty_storage_means_the_journal_file_under_the_state_folder(tmp_path):
    spec = optuna_storage.parse_storage("", state_dir=tmp_path / ".mlcycle")
    assert spec.kind == "journal"
    assert spec.location == str(tmp_path / ".mlcycle" / optuna_storage.JOURNAL_FILE)
    storage = optuna_storage.open_storage(spec)
    optuna.create_study(storage=storage, study_name="s").optimize(lambda t: 1.0, n_trials=1)
    assert (tmp_path / ".mlcycle" / optuna_storage.JOURNAL_FILE).is_file()


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
            "postgresql://user@localhost:5432/optuna",
        ),
        (
            "postgresql+psycopg://user@localhost/optuna",
            "rdb",
            "postgresql+psycopg://user@localhost/optuna",
        ),
        ("postgres+psycopg://u@h/db", "rdb", "postgresql+psycopg://u@h/db"),
        (
            "postgresql://u@/db?host=/var/run/postgresql",
            "rdb",
            "postgresql://u@/db?host=/var/run/postgresql",
        ),
        ("mysql://u@h/db", "rdb", "mysql://u@h/db"),
        ("mysql+pymysql://u:pw@h:3306/db", "rdb", "mysql+pymysql://u:pw@h:3306/db"),
    ],
)
def test_storage_that_is_accepted(tmp_path, text, kind, location):
    spec = optuna_storage.parse_storage(text.format(d=tmp_path))
    assert (spec.kind, spec.location) == (kind, location.format(d=tmp_path))


def test_a_bare_postgresql_url_reaches_the_installed_psycopg_3_driver():
    """SQLAlchemy 2.1 reads postgresql:// as psycopg 3, the driver the project ships; it
    refuses postgres:// (Heroku's spelling), which becomes postgresql://."""
    from sqlalchemy import create_engine

    for text in ("postgresql://u@h/db", "postgres://u@h/db"):
        location = optuna_storage.parse_storage(text).location
        assert location == "postgresql://u@h/db"
        # Building the engine imports the dialect's driver (no connection is made).
        engine = create_engine(location)
        assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
        assert engine.dialect.dbapi.__name__ == "psycopg"


def test_a_password_in_a_storage_url_is_never_displayed():
    spec = optuna_storage.parse_storage("postgresql://me:s3cret@db.example:5432/optuna")
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
        optuna_storage.parse_storage(text.format(d=tmp_path))
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
        optuna_storage.open_storage(optuna_storage.parse_storage(url))
    assert "install" not in str(caught.value)  # the real reason, not a missing driver


def test_sqlite_storage_opens(tmp_path):
    storage = optuna_storage.open_storage(
        optuna_storage.parse_storage(f"sqlite:///{tmp_path}/o.db")
    )
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
                "(psycopg.errors.UniqueViolation) duplicate key value violates unique "
                'constraint "pg_type_typname_nsp_index"'
            )
        return real(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr(optuna_storage.time, "sleep", lambda seconds: None)
    storage = optuna_storage.open_storage(
        optuna_storage.parse_storage(f"sqlite:///{tmp_path}/o.db")
    )
    assert len(calls) == 2 and isinstance(storage, real)


def test_a_schema_error_that_persists_is_still_one_clear_error(monkeypatch):
    def always(url, **kwargs):
        raise RuntimeError('relation "studies" already exists')

    monkeypatch.setattr(optuna.storages, "RDBStorage", always)
    monkeypatch.setattr(optuna_storage.time, "sleep", lambda seconds: None)
    with pytest.raises(MlcycleError, match='cannot open .*"studies" already exists'):
        optuna_storage.open_storage(optuna_storage.parse_storage("sqlite:////tmp/never-created.db"))
