"""optuna-dashboard on the studies optimize writes: `make dashboard` (`python -m
mlcycle.dashboard`).

The storage is named the way optimize's `storage` parameter names it (`mlcycle.models.tuning`):
empty for the project's journal file (.mlcycle/optuna-journal.log), a path for another
journal, or the team's `postgresql://USER:PASSWORD@HOST:PORT/DB`. optuna-dashboard's own
command line would guess a journal from an existing file only (a fresh clone has none
yet) and would hand a PostgreSQL URL to SQLAlchemy without mlcycle's driver choice: the
storage is opened here, as optimize opens it, and given to `optuna_dashboard.run_server`.

The server listens on 127.0.0.1 only: the dashboard can edit studies and has no login."""

from __future__ import annotations

import logging

import click

from mlcycle.cli import step_command
from mlcycle.errors import MlcycleError
from mlcycle.scaleout import optuna_storage

log = logging.getLogger("mlcycle.dashboard")

HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def open_dashboard_storage(text: str):
    """The Optuna storage behind `text`, as optimize reads the same parameter; a journal
    that does not exist yet is created empty, so the dashboard shows studies as they come."""
    spec = optuna_storage.parse_storage(text)
    log.info("optuna-dashboard on %s", spec.display)
    return optuna_storage.open_storage(spec)


def serve(storage, port: int) -> None:
    """Block serving the dashboard on the loopback interface."""
    import optuna_dashboard

    log.info("open http://%s:%d (Ctrl+C stops it)", HOST, port)
    try:
        optuna_dashboard.run_server(storage, host=HOST, port=port)
    except OSError as exc:
        raise MlcycleError(
            f"parameter port: cannot listen on {HOST}:{port}: {exc.strerror or exc} "
            "(make dashboard DASHBOARD_PORT=another)"
        ) from exc


@click.command(help="optuna-dashboard on optimize's studies, on http://127.0.0.1:PORT only.")
@click.option(
    "--storage",
    default="",
    show_default=True,
    help="as optimize's storage: empty for the project's journal file, a journal path, "
    "or postgresql://USER:PASSWORD@HOST:PORT/DB",
)
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@step_command
def main(storage: str, port: int) -> None:
    serve(open_dashboard_storage(storage), port)


if __name__ == "__main__":
    main()
