"""mlflow run . (entry point main): etl -> baseline -> optimize -> retrain -> monitor, as
child runs of one parent, reusing finished identical steps."""

from __future__ import annotations

import click

from mlcycle.cli import options_from, step_command, step_run
from mlcycle.steps.main import MainParams, execute


@click.command(help=__doc__.split(": ", 1)[1])
@options_from(MainParams)
@step_command
def main(**options):
    params = MainParams(**options).validate()
    with step_run("main", vars(params)) as run:
        execute(params, run)


if __name__ == "__main__":
    main()
