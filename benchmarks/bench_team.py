"""Team setup figures: what a step pays for logging to the authenticated tracking server
(PostgreSQL behind it) instead of a local SQLite file, and Optuna trials per minute with
1, 2 and 4 workers sharing one PostgreSQL study.

Starts its own team setup (scripts/team-server.sh) in a temporary folder and stops it.
Step overhead: the real baseline step, in-process (imports paid once), against each store;
its compute alone (fit + score on the same rows) is subtracted. Trials per minute: N
`python -m entrypoints.optimize` processes on one study; trials counted between the first
trial's start and the last trial's end, so process start-up is not counted.

    .venv/bin/python benchmarks/bench_team.py [--repeats 3] [--trials 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCRIPT = ROOT / "scripts" / "team-server.sh"


def read_env(path: Path) -> dict[str, str]:
    return dict(
        line.removeprefix("export ").split("=", 1)
        for line in path.read_text().splitlines()
        if line.startswith("export ")
    )


def use_store(env: dict[str, str]) -> None:
    import mlflow

    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        os.environ.pop(key, None)
    os.environ.update(env)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])


def run_command(command, args: list[str]) -> None:
    command.main(args, standalone_mode=False)


def step_times(stores: dict[str, dict], repeats: int) -> tuple[dict, dict]:
    import mlflow

    from entrypoints.baseline import main as baseline
    from entrypoints.etl import main as etl

    etl_runs = {}
    for name, env in stores.items():
        use_store(env)
        run_command(etl, [])
        etl_runs[name] = mlflow.last_active_run().info.run_id
        run_command(baseline, ["--etl-run", etl_runs[name], "--model-name", "bench-team"])
    times = {name: [] for name in stores}
    for _ in range(repeats):  # alternated, so both see the same background load
        for name, env in stores.items():
            use_store(env)
            start = time.perf_counter()
            run_command(baseline, ["--etl-run", etl_runs[name], "--model-name", "bench-team"])
            times[name].append(time.perf_counter() - start)
    return times, etl_runs


def compute_time(etl_run: str, repeats: int) -> float:
    """The step's own work, no MLflow call: fit the forest and score it on the same rows."""
    from mlcycle.ingest.datasets import load_splits
    from mlcycle.models.families import rf
    from mlcycle.monitoring.evaluate import score

    schema, splits = load_splits(etl_run)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model = rf.fit(schema, rf.ForestParams(), splits.reference_train)
        score(model, schema, splits)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def trials_per_minute(team_env: dict, etl_run: str, workers: int, trials: int) -> tuple:
    import optuna

    from mlcycle.scaleout import optuna_storage

    study_name = f"bench-{workers}w-{int(time.time())}"
    env = dict(
        os.environ,
        **team_env,
        TF_CPP_MIN_LOG_LEVEL="2",
        MLCYCLE_LOG_LEVEL="WARNING",
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    cmd = [
        sys.executable,
        "-m",
        "entrypoints.optimize",
        "--family",
        "rf",
        "--storage",
        team_env["OPTUNA_STORAGE"],
        "--study-name",
        study_name,
        "--n-trials",
        str(trials),
        "--etl-run",
        etl_run,
        "--model-name",
        "bench-team-opt",
    ]
    procs = [
        subprocess.Popen(
            [*cmd, "--seed", str(seed)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(workers)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"optimize worker failed:\n{err[-2000:]}")
    study = optuna.load_study(
        study_name=study_name,
        storage=optuna_storage.open_storage(
            optuna_storage.parse_storage(team_env["OPTUNA_STORAGE"])
        ),
    )
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    numbers = sorted(t.number for t in study.trials)
    window = (
        max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)
    ).total_seconds()
    intact = numbers == list(range(workers * trials))
    return len(done), window, 60.0 * len(done) / window, intact


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=4, help="trials per worker")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLCYCLE_LOG_LEVEL", "WARNING")
    folder = Path(tempfile.mkdtemp(prefix="mlcycle-bench-team-"))
    try:
        started = subprocess.run(
            ["bash", str(SCRIPT), "start", str(folder)], capture_output=True, text=True
        )
        if started.returncode != 0:
            raise SystemExit(f"team-server.sh start failed:\n{started.stderr}")
        team = read_env(folder / "team.env")
        stores = {
            "sqlite": {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'local.db'}"},
            "server": {
                k: team[k]
                for k in (
                    "MLFLOW_TRACKING_URI",
                    "MLFLOW_TRACKING_USERNAME",
                    "MLFLOW_TRACKING_PASSWORD",
                )
            },
        }
        os.environ.update({k: v for k, v in team.items() if k.startswith("MLFLOW_HTTP")})
        times, etl_runs = step_times(stores, args.repeats)
        print(
            "baseline step wall times (s):",
            {k: [round(t, 2) for t in v] for k, v in times.items()},
            flush=True,
        )
        use_store(stores["sqlite"])
        compute = compute_time(etl_runs["sqlite"], args.repeats)
        print(f"baseline step, median of {args.repeats} (in-process, imports excluded):")
        print(f"  compute alone (fit + score)      {compute:7.2f} s")
        for name in stores:
            wall = statistics.median(times[name])
            overhead = wall - compute
            print(
                f"  {name:<6} step wall {wall:7.2f} s   logging overhead {overhead:6.2f} s "
                f"({100 * overhead / wall:4.1f} % of the step)   runs: "
                + ", ".join(f"{t:.2f}" for t in times[name])
            )
        extra = statistics.median(times["server"]) - statistics.median(times["sqlite"])
        print(f"  server - sqlite                  {extra:+7.2f} s")

        print(
            f"optimize (rf), {args.trials} trials per worker, PostgreSQL study, "
            "tracking on the server:"
        )
        use_store(stores["server"])
        base = None
        for workers in (1, 2, 4):
            n, window, rate, intact = trials_per_minute(
                team, etl_runs["server"], workers, args.trials
            )
            base = base or rate
            print(
                f"  {workers} worker(s): {n:3d} trials in {window:6.1f} s = {rate:5.1f} "
                f"trials/min ({rate / base:4.2f}x of 1 worker), numbers 0..{n - 1} "
                f"{'intact' if intact else 'NOT intact'}"
            )
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
