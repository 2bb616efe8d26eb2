"""mlflow run . -e retrain: train a Keras network on the new data and register it as the
challenger, with the base model's metrics before and the new model's after."""

from __future__ import annotations

import click

from mlcycle.cli import options_from, step_command, step_run
from mlcycle.steps.retrain import RetrainParams, execute


@click.command(help=" ".join(__doc__.split(": ", 1)[1].split()))
@options_from(RetrainParams)
@step_command
def main(**options):
    params = RetrainParams(**options).validate()
    with step_run("retrain", vars(params)):
        execute(params)


if __name__ == "__main__":
    main()
