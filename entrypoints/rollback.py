"""mlflow run . -e rollback: make an earlier version the champion again, recorded in the ledger."""

from __future__ import annotations

import click

from mlcycle.cli import options_from, step_command, step_run
from mlcycle.steps.rollback import RollbackParams, execute


@click.command(help=__doc__.split(": ", 1)[1])
@options_from(RollbackParams)
@step_command
def main(**options):
    params = RollbackParams(**options).validate()
    with step_run("rollback", vars(params)):
        execute(params)


if __name__ == "__main__":
    main()
