"""Cold `mlflow run . -e main` in a fresh store vs a warm re-run with everything cached.

Target: warm <= 10 % of cold. Prints both wall times, their ratio, and how many steps
the warm run reused.

    .venv/bin/python benchmarks/bench_main.py [--n-trials 5] [--family nn] [--epochs 60]
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
    parser.add_argument("--n-trials", type=int, default=5)
    parser.add_argument("--family", default="nn")
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    params = {"n_trials": args.n_trials, "optimize_family": args.family, "epochs": args.epochs}
    print(f"machine: {os.cpu_count()} cores; main with {params}")
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
