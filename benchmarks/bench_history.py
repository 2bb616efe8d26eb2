"""What the History section adds to a monitor run when the model has 50 earlier ones.

A fresh SQLite store gets N earlier FINISHED monitor runs of one model (tags, the drift
and performance metrics a monitor run logs, 12 drift scores each) and a few ledger
entries; then, as monitor does once its own metrics are logged, the history is read
(`monitoring.publish.model_history`: one search) and turned into the page's section
(`history_context`: three charts as inline PNGs and the ledger's moves), and the page is
rendered with and without it. Printed: median and spread over repeats of the added time
for 0, 10 and 50 earlier runs (target: 50 earlier runs add <= 2 s to the step).

    .venv/bin/python benchmarks/bench_history.py
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COLUMNS = [f"feature_{i}" for i in range(12)]
REPEATS = 5


def _store(folder: Path) -> str:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    SqlAlchemyStore(uri, (folder / "artifacts").as_uri())
    return uri


def _earlier_runs(model: str, n: int) -> None:
    import mlflow
    from mlflow.entities import Metric, RunTag

    from mlcycle import config

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("Default").experiment_id
    for i in range(n):
        run = client.create_run(experiment)
        now = int(time.time() * 1000)
        metrics = {
            "drift_share": (i % 10) / 10,
            "champion_current_test_r2": 0.8 - i / 500,
            "challenger_current_test_r2": 0.82 - i / 600,
            **{f"drift_score.{c}": (i * 7 + j) % 100 / 100 for j, c in enumerate(COLUMNS)},
        }
        tags = {
            config.STEP_TAG: "monitor",
            "mlcycle.model_name": model,
            "mlcycle.current_data": f"data/stream/batch_{i:03d}.csv",
            "mlcycle.promotion.decision": "promoted" if i % 7 == 0 else "not_promoted",
        }
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        client.set_terminated(run.info.run_id, "FINISHED")


def _this_run(model: str) -> str:
    import mlflow

    from mlcycle import config

    with mlflow.start_run() as run:
        mlflow.set_tags({config.STEP_TAG: "monitor", "mlcycle.model_name": model})
        mlflow.log_metrics({"drift_share": 0.5, "champion_current_test_r2": 0.7})
    return run.info.run_id


def measure(earlier: int) -> list[float]:
    import mlflow

    from mlcycle.monitoring.publish import history_context, model_history
    from mlcycle.steps.monitor import ledger_moves

    times = []
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(_store(Path(tmp)))
        model = "bench-history"
        _earlier_runs(model, earlier)
        run_id = _this_run(model)
        for _ in range(REPEATS):
            start = time.perf_counter()
            past = model_history(model, run_id, "regression")
            history_context(past, ledger_moves(model))
            times.append(time.perf_counter() - start)
            assert len(past) == earlier + 1
    return times


def main() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"added time of the History section (s), median [min, max] of {REPEATS} repeats")
    for earlier in (0, 10, 50):
        times = measure(earlier)
        print(
            f"  {earlier:>3} earlier monitor runs: {statistics.median(times):.3f} "
            f"[{min(times):.3f}, {max(times):.3f}]"
        )


if __name__ == "__main__":
    main()
