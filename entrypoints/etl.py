"""mlflow run . -e etl: validate and split the reference and current data."""

from __future__ import annotations

import click

from mlcycle import config
from mlcycle.cli import INT, step_command, step_run
from mlcycle.etl import EtlParams, execute


@click.command()
@click.option(
    "--reference",
    default=str(config.REFERENCE_CSV),
    show_default=True,
    help="CSV of the data the model learned on",
)
@click.option(
    "--current", default=str(config.CURRENT_CSV), show_default=True, help="CSV of the new data"
)
@click.option("--target", default=config.DEFAULT_TARGET, show_default=True)
@click.option(
    "--task", default="auto", show_default=True, help="auto, regression or classification"
)
@click.option(
    "--drop-columns",
    default=config.DEFAULT_DROP_COLUMNS,
    show_default=True,
    help="comma-separated identifier columns that must never be features",
)
@click.option("--test-size", type=float, default=0.2, show_default=True)
@click.option("--seed", type=INT, default=42, show_default=True)
@step_command
def main(**kwargs):
    params = EtlParams(**kwargs)
    with step_run("etl", vars(params)):
        execute(params)


if __name__ == "__main__":
    main()
