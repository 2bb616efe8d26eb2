"""mlflow run . -e optimize: tune the forest or the network with Optuna, on current train."""

from __future__ import annotations

import click

from mlcycle.cli import options_from, step_command, step_run
from mlcycle.steps.optimize import OptimizeParams, execute


@click.command(help=__doc__.split(": ", 1)[1])
@options_from(OptimizeParams)
@step_command
def main(**options):
    params = OptimizeParams(**options).validate()
    with step_run("optimize", vars(params)):
        execute(params)


if __name__ == "__main__":
    main()
