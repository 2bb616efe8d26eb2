"""CPU, memory, disk and network use of the steps that compute for minutes (optimize,
retrain), as MLflow's own system metrics on the step's run
(`system/cpu_utilization_percentage`, `system/system_memory_usage_megabytes`, ...), one
sample every MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL seconds (10 by default).

MLflow's switch (`start_run(log_system_metrics=True)`) numbers the samples from step 0,
and `log_model` copies every step-0 metric of the run onto the model it logs: CPU and
memory would sit among the model's metrics, measured on no dataset (seen on 3.17.2).
The same monitor runs here with its samples numbered from step 1."""

from __future__ import annotations

import contextlib
import logging

log = logging.getLogger("mlcycle.telemetry")

STEPS = frozenset({"optimize", "retrain"})


def _monitor_class():
    # psutil is imported by MLflow's monitors: a missing one costs the metrics, not the step.
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    class FromStepOne(SystemMetricsMonitor):
        def _get_next_logging_step(self, run_id):
            return max(1, super()._get_next_logging_step(run_id))

    return FromStepOne


@contextlib.contextmanager
def system_metrics(run_id: str):
    """Sample the machine into the run while the block runs; the last samples are flushed
    when it ends, before the run does."""
    try:
        monitor = _monitor_class()(run_id, resume_logging=True)
    except ImportError as exc:
        log.warning("no system metrics for run %s: %s", run_id, exc)
        yield
        return
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
