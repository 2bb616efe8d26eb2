"""mlflow run . -e monitor: drift, champion vs challenger, and (optionally) promotion."""

from entrypoints import later
from mlcycle.cli import entry_point, run_process
from mlcycle.steps.params.monitor import MonitorParams


def report_lines(paths) -> list[str]:
    return [f"report: {paths['report']}", f"latest: {paths['latest']}"]


main = entry_point(
    "monitor", MonitorParams, later("mlcycle.steps.monitor"), __doc__, show=report_lines
)

if __name__ == "__main__":
    run_process(main)
