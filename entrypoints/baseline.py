"""mlflow run . -e baseline: train the RandomForest champion on reference train."""

from __future__ import annotations

import click

from mlcycle.cli import options_from, step_command, step_run
from mlcycle.steps.baseline import BaselineParams, execute


@click.command(help=__doc__.split(": ", 1)[1])
@options_from(BaselineParams)
@step_command
def main(**options):
    params = BaselineParams(**options).validate()
    with step_run("baseline", vars(params)):
        execute(params)


if __name__ == "__main__":
    main()
