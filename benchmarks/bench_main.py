"""Cold `mlflow run . -e main` in a fresh store vs a warm re-run with everything cached.

Target: warm <= 10 % of cold. Prints both wall times, their ratio, and how many steps
the warm run reused. Without options main runs with the MLproject defaults, as
`mlflow run .` and `make run` do; each option overrides one parameter.

    .venv/bin/python benchmarks/bench_main.py [--n-trials 5] [--family nn] [--epochs 60]

A warm run is two Python processes that import MLflow (the `mlflow run` CLI and the main
entry point, ~5 s each here) around ~0.3 s of cache lookups, so it is nearly constant,
and the ratio depends on how much work the cold run had.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run_main(store: str, params: dict) -> tuple[float, str]:
    cmd = [str(BIN / "mlflow"), "run", ".", "-e", "main", "--env-manager", "local"]
    for key, value in params.items():
        cmd += ["-P", f"{key}={value}"]
    env = dict(os.environ, MLFLOW_TRACKING_URI=store, PATH=f"{BIN}:{os.environ['PATH']}")
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"main failed:\n{done.stderr[-3000:]}")
    return elapsed, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-trials", type=int)
    parser.add_argument("--family")
    parser.add_argument("--epochs", type=int)
    args = parser.parse_args()
    given = {"n_trials": args.n_trials, "optimize_family": args.family, "epochs": args.epochs}
    params = {key: value for key, value in given.items() if value is not None}
    print(f"machine: {os.cpu_count()} cores; main with {params or 'the MLproject defaults'}")
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        cold, _ = run_main(store, params)
        warm, log = run_main(store, params)
    reused = re.search(r"main: (\d+) of (\d+) steps reused", log)
    print(
        f"cold {cold:.1f} s | warm {warm:.1f} s | warm/cold {warm / cold:.1%} (target <= 10%)"
        f" | warm reused {reused.group(1)} of {reused.group(2)} steps"
    )


if __name__ == "__main__":
    main()
