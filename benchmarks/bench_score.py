"""Rows per second of `score` against MLflow's own `mlflow models predict`, same model,
same file, side by side; and the peak memory of `score` at 100k and 1M rows.

In a fresh SQLite store under benchmarks/out/bench_score/, it trains (not timed) the
forest champion (`baseline`, its defaults: 100 trees) and a network (`retrain`, a few
epochs: the epochs change the weights, not the cost of a prediction), writes loan CSVs
of 100,000 and 1,000,000 rows from mlcycle.ingest.datagen into benchmarks/out/ (the same seed
each time; reused when present), then for each model and size runs, each in a fresh
process whose peak RSS is read from wait4, `--repeat` times each, alternating (the
shortest wall time counts, the highest peak):

    python -m entrypoints.score --model-uri models:/NAME/V --input F --output out.parquet
    mlflow models predict -m models:/NAME/V -i F -t csv -o out.json --env-manager local

Rows/s are end to end (process start, imports and model loading included, as a user
waits for them); `score` also logs its own scoring phase (rows_per_second), printed
beside; and the marginal rows/s of each command, (1M - 100k rows) / (its wall time at 1M
- its wall time at 100k): what rows cost once the fixed start-up is paid. Targets at 100k
and 1M rows: score >= 2x the rows/s of mlflow models predict; score's peak memory at 1M
<= 1.5x its peak at 100k.

And what bounds the speed-up, measured in the same run: `score` of a 10-row file with
the same model, its fixed cost (the interpreter, `import mlflow` (also printed), the
store, its run, the model's loading, the output and what the run records). However fast
the rows went, score cannot take less than its 10-row time, so its speed-up at N rows is
at most (mlflow models predict at N) / (score on 10 rows).

    .venv/bin/python benchmarks/bench_score.py
    .venv/bin/python benchmarks/bench_score.py --models network --reuse-store
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "out"
STORE = OUT / "bench_score"
BIN = Path(sys.executable).parent
SIZES = (100_000, 1_000_000)
MODEL = "bench-score"
SEED = 7


def env() -> dict:
    return dict(
        os.environ,
        MLFLOW_TRACKING_URI=f"sqlite:///{STORE / 'mlflow.db'}",
        # score's outputs and inference log stay here, never in the checkout's .mlcycle/.
        MLCYCLE_OUTPUT_ROOT=str(STORE),
        MLCYCLE_INFERENCE_DIR=str(STORE / "inference"),
        PATH=f"{BIN}:{os.environ['PATH']}",
        TF_CPP_MIN_LOG_LEVEL="2",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    )


def run(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stderr) of one command in a fresh process. The peak
    is read by /usr/bin/time around the command: wait4's ru_maxrss of a child forked from
    this process starts at this process's own peak (the 1M-row CSV it wrote), which made
    every command look as large as it."""
    started = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "MAXRSS_KB %M", *cmd],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - started
    err = proc.stderr
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err[-3000:]}")
    peak = [line for line in err.splitlines() if line.startswith("MAXRSS_KB ")][-1]
    return seconds, int(peak.split()[1]) / 1024, err


def prepare_store(reuse: bool) -> dict[str, str]:
    """A store with a forest (version 1) and a network (version 2) of MODEL: fresh, or
    the one a previous run left when asked to reuse it."""
    import shutil

    from tests.conftest import sqlite_store

    uris = {"forest": f"models:/{MODEL}/1", "network": f"models:/{MODEL}/2"}
    if reuse and (STORE / "mlflow.db").exists():
        return uris
    shutil.rmtree(STORE, ignore_errors=True)
    STORE.mkdir(parents=True)
    sqlite_store(STORE)
    python = sys.executable
    run([python, "-m", "entrypoints.baseline", "--model-name", MODEL])
    run([python, "-m", "entrypoints.retrain", "--model-name", MODEL, "--epochs", "5"])
    return uris


def csv_of(rows: int) -> Path:
    from mlcycle.ingest import datagen

    path = OUT / f"score_{rows}.csv"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        datagen.write_csv(datagen.generate(datagen.NEW, rows, SEED), path)
    return path


def scoring_rate(stderr: str) -> float:
    """The scoring phase's rows/s, from score's own log line."""
    for line in stderr.splitlines():
        if " rows/s) -> " in line:
            return float(line.split("(")[-1].split(" rows/s")[0])
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--models", nargs="*", default=["forest", "network"])
    parser.add_argument("--reuse-store", action="store_true", help="keep the trained models")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each command")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_version()}; load average before: {os.getloadavg()[0]:.2f}"
    )
    uris = prepare_store(args.reuse_store)
    small_csv = OUT / "score_10.csv"
    with csv_of(args.rows[0]).open() as src:
        small_csv.write_text("".join(next(src) for _ in range(11)))
    import_mlflow = min(run([sys.executable, "-c", "import mlflow"])[0] for _ in range(args.repeat))
    peaks: dict[tuple[str, int], float] = {}
    walls: dict[tuple[str, int], tuple[float, float]] = {}
    for name in args.models:

        def score_cmd_of(path: Path, name: str = name) -> list[str]:
            output = OUT / f"score_{name}.parquet"
            return [sys.executable, "-m", "entrypoints.score", "--model-uri", uris[name],
                    "--input", str(path), "--output", str(output)]  # fmt: skip

        fixed = min(run(score_cmd_of(small_csv))[0] for _ in range(args.repeat))
        print(
            f"{name:8s} fixed cost: score on 10 rows {fixed:.2f} s "
            f"(python -c 'import mlflow' {import_mlflow:.2f} s)",
            flush=True,
        )
        for rows in args.rows:
            path = csv_of(rows)
            score_cmd = score_cmd_of(path)
            mlflow_cmd = [str(BIN / "mlflow"), "models", "predict", "-m", uris[name], "-i",
                          str(path), "-t", "csv", "-o", str(OUT / f"predict_{name}.json"),
                          "--env-manager", "local"]  # fmt: skip
            # Alternated, so a burst of load from other jobs falls on both alike; the least
            # disturbed run (the shortest) counts, memory at its highest.
            score_runs, mlflow_runs = [], []
            for _ in range(args.repeat):
                score_runs.append(run(score_cmd))
                mlflow_runs.append(run(mlflow_cmd))
            score_s = min(r[0] for r in score_runs)
            mlflow_s = min(r[0] for r in mlflow_runs)
            score_mb = max(r[1] for r in score_runs)
            mlflow_mb = max(r[1] for r in mlflow_runs)
            phase = max(scoring_rate(r[2]) for r in score_runs)
            peaks[(name, rows)] = score_mb
            walls[(name, rows)] = (score_s, mlflow_s)
            print(
                f"{name:8s} {rows:>9,d} rows | score {rows / score_s:>8,.0f} rows/s "
                f"({score_s:5.1f} s, scoring phase {phase:>8,.0f} rows/s, peak {score_mb:6,.0f} MB)"
                f" | mlflow models predict {rows / mlflow_s:>8,.0f} rows/s ({mlflow_s:5.1f} s, "
                f"peak {mlflow_mb:6,.0f} MB) | speed-up {mlflow_s / score_s:4.2f}x"
                f" | walls score {[round(r[0], 1) for r in score_runs]}"
                f" mlflow {[round(r[0], 1) for r in mlflow_runs]}"
                f" | at most {mlflow_s / fixed:4.2f}x with score's fixed cost",
                flush=True,
            )
    low, high = min(args.rows), max(args.rows)
    for name in args.models if low < high else []:
        small, large = peaks[(name, low)], peaks[(name, high)]
        # What one more row costs, start-up and model loading (the same at any size) aside.
        score_rate = (high - low) / (walls[(name, high)][0] - walls[(name, low)][0])
        mlflow_rate = (high - low) / (walls[(name, high)][1] - walls[(name, low)][1])
        print(
            f"{name}: marginal rows/s from {low:,d} to {high:,d} rows: score {score_rate:,.0f}, "
            f"mlflow models predict {mlflow_rate:,.0f} = {score_rate / mlflow_rate:.2f}x; "
            f"score peak memory {large:,.0f} MB at {high:,d} rows / {small:,.0f} MB at "
            f"{low:,d} = {large / small:.2f}x"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
