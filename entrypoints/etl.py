"""mlflow run . -e etl: validate and split the reference and current data."""

from __future__ import annotations

import click

from mlcycle.cli import options_from, step_command, step_run
from mlcycle.steps.etl import EtlParams, execute


@click.command(help=__doc__.split(": ", 1)[1])
@options_from(EtlParams)
@step_command
def main(**options):
    params = EtlParams(**options).validate()
    with step_run("etl", vars(params)):
        execute(params)


if __name__ == "__main__":
    main()
