"""mlflow run . -e monitor: drift, champion vs challenger, and (optionally) promotion."""

from __future__ import annotations

import click

from mlcycle.cli import options_from, step_command, step_run
from mlcycle.steps.monitor import MonitorParams, execute


@click.command(help=__doc__.split(": ", 1)[1])
@options_from(MonitorParams)
@step_command
def main(**options):
    params = MonitorParams(**options).validate()
    with step_run("monitor", vars(params)):
        paths = execute(params)
    click.echo(f"report: {paths['report']}")
    click.echo(f"latest: {paths['latest']}")


if __name__ == "__main__":
    main()
