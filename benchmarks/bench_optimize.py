"""Benchmark of the optimize step (DESIGN.md figures), on the bundled data.

1. Forest: trials per minute of one `python -m entrypoints.optimize` worker, then of two
   workers started together on one journal file (target: >= 1.6x). A rate counts the
   trials that ran while every worker was in its trial loop, over that window, so process
   start-up (staggered under load) and the final refit are not counted; the journal is
   also checked for lost or duplicated trials.
2. Network: the same trials with and without the pruner (target: >= 2x less wall time,
   best validation value within 1 %), in-process, same seed, same sampler.

Everything goes to a temporary tracking store and journal. Usage:
    .venv/bin/python benchmarks/bench_optimize.py [--rf-seconds 60] [--nn-trials 12]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rf-seconds", type=float, default=60.0)
    parser.add_argument("--nn-trials", type=int, default=12)
    parser.add_argument("--skip", choices=("rf", "nn"), default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-optimize-") as tmp:
        tmp = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        etl_run = _etl()
        print(
            f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start",
            flush=True,
        )
        if args.skip != "rf":
            bench_forest_workers(tmp, etl_run, args.rf_seconds)
        if args.skip != "nn":
            bench_network_pruning(etl_run, args.nn_trials)


def _etl() -> str:
    import mlflow

    from mlcycle import config
    from mlcycle.cli import configure
    from mlcycle.steps.etl import EtlParams, execute

    configure()
    with mlflow.start_run(run_name="etl") as run:
        mlflow.set_tag(config.STEP_TAG, "etl")
        execute(EtlParams())
    return run.info.run_id


# --- 1. forest: one worker vs two workers -----------------------------------------------


def bench_forest_workers(tmp: Path, etl_run: str, seconds: float) -> None:
    rates = {}
    for workers in (1, 2):
        journal = tmp / f"rf-{workers}.journal"
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "entrypoints.optimize",
                    "--etl-run",
                    etl_run,
                    "--family",
                    "rf",
                    "--n-trials",
                    "100000",
                    "--timeout",
                    str(seconds),
                    "--storage",
                    str(journal),
                    "--study-name",
                    "bench",
                    "--seed",
                    str(i),
                ],
                cwd=ROOT,
                env=dict(os.environ, MLCYCLE_LOG_LEVEL="WARNING"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(workers)
        ]
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode:
                raise SystemExit(f"worker failed:\n{err[-3000:]}")
        trials = _finished_trials(journal)
        numbers = sorted(t.number for t in trials)
        assert numbers == list(range(len(numbers))), "a trial was lost or duplicated"
        # Workers start a few seconds apart (imports): count the trials that ran while
        # every worker was running, over that window's length.
        by_worker = {}
        for t in trials:
            by_worker.setdefault(t.user_attrs["mlflow_parent_run_id"], []).append(t)
        start = max(min(t.datetime_start for t in ts) for ts in by_worker.values())
        end = min(max(t.datetime_complete for t in ts) for ts in by_worker.values())
        inside = [t for t in trials if t.datetime_start >= start and t.datetime_complete <= end]
        window = (end - start).total_seconds()
        rates[workers] = len(inside) / window * 60
        print(
            f"forest, {workers} worker(s): {len(trials)} trials in all; "
            f"{len(inside)} ran within the {window:.1f} s when all {workers} worked = "
            f"{rates[workers]:.1f} trials/min (trial numbers 0..{len(numbers) - 1}, "
            "none lost or duplicated)",
            flush=True,
        )
    ratio = rates[2] / rates[1]
    print(
        f"forest, 2 workers vs 1: {ratio:.2f}x trials per minute (target >= 1.6x): "
        f"{'met' if ratio >= 1.6 else 'MISSED'}",
        flush=True,
    )


def _finished_trials(journal: Path):
    import optuna

    from mlcycle.scaleout import optuna_storage

    study = optuna.load_study(
        study_name="bench",
        storage=optuna_storage.open_storage(optuna_storage.parse_storage(str(journal))),
    )
    return [t for t in study.trials if t.datetime_complete is not None]


# --- 2. network: pruning vs none --------------------------------------------------------


def bench_network_pruning(etl_run: str, n_trials: int) -> None:
    import optuna

    from mlcycle.ingest.datasets import load_splits
    from mlcycle.models import tuning
    from mlcycle.models.families import nn

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    schema, splits = load_splits(etl_run)
    metric, direction = tuning.resolve_metric("", schema.task)
    results = {}
    for label, pruner in (
        ("no pruning", optuna.pruners.NopPruner()),
        ("pruning", nn.pruner()),
    ):
        objective = nn.objective(schema, splits.current_train, metric, direction, seed=42)
        study = optuna.create_study(
            direction=direction, pruner=pruner, sampler=optuna.samplers.TPESampler(seed=42)
        )
        started = time.perf_counter()
        tuning.run_search(study, objective, n_trials, None, 1, progress=False)
        wall = time.perf_counter() - started
        states = [t.state.name.lower() for t in study.trials]
        epochs = sum(len(t.intermediate_values) for t in study.trials)
        results[label] = (wall, study.best_value)
        print(
            f"network, {label} ({type(pruner).__name__}): {n_trials} trials in {wall:.1f} s, "
            f"{epochs} epochs trained, {states.count('pruned')} pruned, "
            f"best validation {metric} {study.best_value:.4f}",
            flush=True,
        )
    (full, best_full), (pruned, best_pruned) = results["no pruning"], results["pruning"]
    speedup, gap = full / pruned, abs(best_pruned - best_full) / abs(best_full)
    print(
        f"network, pruning: {speedup:.2f}x less wall time (target >= 2x): "
        f"{'met' if speedup >= 2 else 'MISSED'}; best value within {gap:.2%} "
        f"(target <= 1 %): {'met' if gap <= 0.01 else 'MISSED'}",
        flush=True,
    )


if __name__ == "__main__":
    main()
