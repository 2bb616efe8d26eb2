"""The `storage` parameter of optimize: which Optuna storage it names, and opening it.

'' is a journal file under the project's state folder (several processes on one machine
share it under a file lock); a path or file:///path is a journal file there;
sqlite:///FILE, postgresql://USER@HOST/DB and mysql://USER@HOST/DB are databases (one
study shared across machines). Anything else is refused with one line before any work,
with no password in it."""

from __future__ import annotations

import difflib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import optuna

from mlcycle import config
from mlcycle.errors import MlcycleError

JOURNAL_FILE = "optuna-journal.log"
RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")


@dataclass(frozen=True)
class StorageSpec:
    """What the `storage` parameter names: a journal file or an RDB URL."""

    kind: str  # "journal" or "rdb"
    location: str  # an absolute file path, or the URL
    display: str  # safe to log: no password

    @property
    def is_sqlite(self) -> bool:
        return self.kind == "rdb" and self.location.startswith("sqlite")


# An RFC 3986 scheme and its colon, before any slash: "postgresql:", "sqlite:", "host:".
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):")
URL_FORMS = "sqlite:///FILE, postgresql://USER@HOST[:PORT]/DB or mysql://USER@HOST[:PORT]/DB"


def parse_storage(text: str | None, state_dir: Path = config.STATE_DIR) -> StorageSpec:
    """'' -> the project's journal file; a path (or file:///path) -> a journal file there;
    sqlite:///FILE, postgresql(+driver)://USER@HOST/DB, mysql(+driver)://… -> an RDB.

    Anything else that starts like a URL (a scheme and a colon: 'postgresql:/host/db',
    'sqlite:/x.db', 'host:5432/db', 'redis://…') is refused rather than taken for a file
    name, which would silently start a new study in a stray file. A file whose name
    holds a colon is written './NAME'."""
    text = (text or "").strip()
    if not text:
        path = Path(state_dir) / JOURNAL_FILE
        return StorageSpec("journal", str(path), str(path))
    match = _SCHEME.match(text)
    if match is None or _is_drive(text):
        _refuse_missing_colon(text)
        return _journal_spec(text, text)
    scheme = match["scheme"].lower()
    family = scheme.split("+", 1)[0]
    known = family in (*RDB_SCHEMES, "file")
    if not text[match.end() :].startswith("//"):
        if known:
            raise MlcycleError(
                f"parameter storage: {_redact(text)!r} is not a valid {family} URL: "
                f"write {_form(family)}"
            )
        raise MlcycleError(
            f"parameter storage: {_redact(text)!r} is neither a journal file path nor a "
            f"storage URL ({URL_FORMS}); a file whose name holds ':' is written ./NAME"
        )
    if not known:
        hint = difflib.get_close_matches(family, ("sqlite", "postgresql", "mysql", "file"), n=1)
        raise MlcycleError(
            f"parameter storage: unsupported scheme {scheme!r} in {_redact(text)!r}"
            + (f" (did you mean {hint[0]}?)" if hint else "")
            + f"; use a journal file path, {URL_FORMS}"
        )
    if family == "file":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise MlcycleError(
                f"parameter storage: {text!r} is not a valid file URL: write {_form('file')}"
            )
        return _journal_spec(parts.path, text)
    url = _rdb_url(text, scheme, family)
    return StorageSpec("rdb", url, _redact(url))


def _is_drive(text: str) -> bool:
    """C:\\x or C:/x: a Windows path, not a one-letter scheme."""
    return len(text) >= 3 and text[0].isalpha() and text[1] == ":" and text[2] in "\\/"


def _refuse_missing_colon(text: str) -> None:
    """'postgresql//host/db' is a URL with its colon lost, never a folder to write in."""
    head = text.split("//", 1)[0].lower()
    if "//" in text and head.split("+", 1)[0] in (*RDB_SCHEMES, "file"):
        raise MlcycleError(
            f"parameter storage: {_redact(text)!r} looks like a URL without its ':': "
            f"write {_form(head.split('+', 1)[0])}"
        )


def _form(family: str) -> str:
    return {
        "sqlite": "sqlite:///FILE (three slashes; four before an absolute path)",
        "file": "file:///ABSOLUTE/PATH or just the path",
        "mysql": "mysql://USER@HOST[:PORT]/DB",
    }.get(family, "postgresql://USER@HOST[:PORT]/DB")


def _rdb_url(text: str, scheme: str, family: str) -> str:
    """The URL as SQLAlchemy must read it; refuses one that names no file or database."""
    from sqlalchemy.engine import make_url

    bad = f"parameter storage: {_redact(text)!r} is not a valid {family} URL"
    try:
        parsed = make_url(text)
    except ValueError as exc:  # int() of the port
        raise MlcycleError(f"{bad}: its port is not a number; write {_form(family)}") from exc
    except Exception as exc:  # noqa: BLE001 - sqlalchemy's ArgumentError
        raise MlcycleError(f"{bad}: it cannot be parsed; write {_form(family)}") from exc
    if family == "sqlite":
        if parsed.host or not parsed.database or parsed.database == ":memory:":
            raise MlcycleError(f"{bad}: it names no database file; write {_form(family)}")
        return text
    if not (parsed.host or parsed.query.get("host")) or not parsed.database:
        raise MlcycleError(f"{bad}: it needs a host and a database; write {_form(family)}")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise MlcycleError(f"{bad}: port {parsed.port} is out of range")
    return _with_driver(text, scheme)


def _journal_spec(path_text: str, given: str) -> StorageSpec:
    if not path_text:
        raise MlcycleError(f"parameter storage: {given!r} names no file")
    path = Path(path_text).expanduser().resolve()
    if path.is_dir():
        raise MlcycleError(f"parameter storage: {path} is a folder; a journal file is needed")
    if path.is_file() and path.read_bytes()[:16].startswith(b"SQLite format 3"):
        raise MlcycleError(
            f"parameter storage: {path} is an SQLite database, not a journal "
            f"file: pass sqlite:///{path}"
        )
    return StorageSpec("journal", str(path), str(path))


def _with_driver(url: str, scheme: str) -> str:
    """postgres:// (Heroku's spelling) is no SQLAlchemy dialect: it becomes postgresql://,
    which SQLAlchemy 2.1 reads as psycopg 3, the driver the project ships."""
    rest = url.split("://", 1)[1]
    if scheme == "postgres":
        return f"postgresql://{rest}"
    if scheme.startswith("postgres+"):
        return "postgresql+" + scheme.split("+", 1)[1] + "://" + rest
    return url


def _redact(url: str) -> str:
    """The URL without its password (user:secret@host -> user:***@host), as typed: it
    may be one that no parser reads."""
    return _PASSWORD.sub(r"\1:***@", url)


_PASSWORD = re.compile(r"([^/:@\s]+):[^@/\s]*@")


def open_storage(spec: StorageSpec) -> optuna.storages.BaseStorage:
    """Open (and create if needed) the storage; every failure is one MlcycleError."""
    if spec.kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(spec.location)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # The journal appends operations under a file lock: processes on one machine
            # (and threads in one) share it without SQLite's "database is locked".
            return JournalStorage(JournalFileBackend(str(path)))
        except (OSError, ValueError) as exc:
            raise MlcycleError(
                f"parameter storage: cannot open journal file {path}: {exc}"
            ) from exc
    engine_kwargs = {}
    if spec.is_sqlite:
        # Writers wait for each other instead of failing at once; still, SQLite serialises
        # every write, and the journal file is the better choice for parallel workers.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    attempt = 1
    while True:
        try:
            return optuna.storages.RDBStorage(spec.location, engine_kwargs=engine_kwargs)
        except Exception as exc:  # noqa: BLE001 - driver errors have no common base
            if attempt < SCHEMA_ATTEMPTS and _lost_schema_race(exc):
                # Two workers starting on an empty database both create Optuna's tables;
                # PostgreSQL lets one win and fails the other. The tables exist now.
                time.sleep(0.5 * attempt)
                attempt += 1
                continue
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MlcycleError(f"parameter storage: cannot open {spec.display}: {reason}") from exc


SCHEMA_ATTEMPTS = 4


def _lost_schema_race(exc: Exception) -> bool:
    """Did creating the schema fail because another process created it at the same time?"""
    text = str(exc).lower()
    return "already exists" in text or "duplicate key" in text
