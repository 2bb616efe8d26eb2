"""mlflow run . -e score: predictions of a registered model on a CSV, into a Parquet file."""

from __future__ import annotations

import click

from mlcycle.cli import options_from, step_command, step_run
from mlcycle.steps.score import ScoreParams, execute


@click.command(help=__doc__.split(": ", 1)[1])
@options_from(ScoreParams)
@step_command
def main(**options):
    params = ScoreParams(**options).validate()
    with step_run("score", vars(params)):
        execute(params)


if __name__ == "__main__":
    main()
