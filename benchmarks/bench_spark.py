"""Scale-out of `score -P engine=spark`: a standalone cluster of 1, then 2 workers of one
core each, on the same input; the pandas engine beside it; the driver's peak memory as
the input grows.

In a fresh SQLite store under benchmarks/out/bench_spark/, it trains (not timed) the
forest champion (`baseline`, --n-estimators trees), writes loan CSVs of the asked sizes
from mlcycle.ingest.datagen into benchmarks/out/ (same seed; reused when present), starts a
master and workers on loopback from PySpark's own launcher (`spark-class`), and runs, each
in a fresh process whose peak RSS (the driver: Python and its JVM) is sampled:

    python -m entrypoints.score --input F --output out.parquet --engine spark \\
        --spark-master spark://127.0.0.1:PORT
    python -m entrypoints.score --input F --output out.parquet           # pandas engine

Rows/s are of the scoring phase score logs (Spark's start-up and the model's loading
aside) and end to end. Targets: 2 workers >= 1.7x the rows/s of 1 worker at the largest
size; the driver's peak memory flat as the input grows (the driver never collects rows).

Each worker is pinned to one CPU (worker i to CPU i; its executor and Python workers
inherit it), so "one core" means one: unpinned, a lone 1-core worker's JVM parses CSV on
one core while its Python worker predicts on the other, and 1 worker is not the half of
2 it stands for on a 2-core machine. --no-pin leaves them free.

    .venv/bin/python benchmarks/bench_spark.py                 # 1M and 10M rows (~20 min idle)
    .venv/bin/python benchmarks/bench_spark.py --rows 200000 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "out"
STORE = OUT / "bench_spark"
BIN = Path(sys.executable).parent
MODEL = "bench-spark"
SEED = 11


def env(**extra) -> dict:
    return dict(
        os.environ,
        MLFLOW_TRACKING_URI=f"sqlite:///{STORE / 'mlflow.db'}",
        # score's outputs and inference log stay here, never in the checkout's .mlcycle/.
        MLCYCLE_OUTPUT_ROOT=str(STORE),
        MLCYCLE_INFERENCE_DIR=str(STORE / "inference"),
        PATH=f"{BIN}:{os.environ['PATH']}",
        TF_CPP_MIN_LOG_LEVEL="2",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        **extra,
    )


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of a process and its descendants (the driver: Python and its JVM)."""
    total = 0
    for member in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += member.memory_info().rss
    return total


def run(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stderr) of one command in a fresh process. The peak
    is sampled every 0.1 s over the process tree: wait4's ru_maxrss is no use here, as a
    child's counts the parent's memory at fork (this script holds the 10M-row frame it
    wrote), so every command would report the benchmark's own size."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=log)
        watched, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, tree_rss(watched))
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        log.seek(0)
        err = log.read()
    if proc.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{err[-3000:]}")
    return seconds, peak / 2**20, err


def scoring_rate(stderr: str) -> float:
    for line in stderr.splitlines():
        if " rows/s) -> " in line:
            return float(line.split("(")[-1].split(" rows/s")[0])
    return float("nan")


def prepare_store(trees: int, reuse: bool) -> None:
    from tests.conftest import sqlite_store

    if reuse and (STORE / "mlflow.db").exists():
        return
    shutil.rmtree(STORE, ignore_errors=True)
    STORE.mkdir(parents=True)
    sqlite_store(STORE)
    run([sys.executable, "-m", "entrypoints.baseline", "--model-name", MODEL,
         "--n-estimators", str(trees)])  # fmt: skip


def csv_of(rows: int) -> Path:
    """The loan CSV of that many rows, generated a million rows at a time."""
    from mlcycle.ingest import datagen

    path = OUT / f"spark_{rows}.csv"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        done = 0
        with partial.open("w", encoding="utf-8") as fh:
            while done < rows:
                n = min(1_000_000, rows - done)
                frame = datagen.generate(datagen.NEW, n, SEED + done)
                frame.to_csv(fh, index=False, header=done == 0)
                done += n
        partial.replace(path)
    return path


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pinned(cpu: int):
    """preexec_fn: this process (and what it starts) on one CPU only."""
    return lambda: os.sched_setaffinity(0, {cpu})


class Cluster:
    """A standalone master and `workers` workers of one core on loopback, each pinned to
    a CPU of its own when `pin`."""

    def __init__(self, workers: int, folder: Path, pin: bool):
        import pyspark

        spark_class = str(Path(pyspark.__file__).parent / "bin" / "spark-class")
        self.port, self.ui = _port(), _port()
        self.master = f"spark://127.0.0.1:{self.port}"
        daemon_env = env(SPARK_LOCAL_IP="127.0.0.1", SPARK_LOG_DIR=str(folder))
        commands = [["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                     "--port", str(self.port), "--webui-port", str(self.ui)]]  # fmt: skip
        commands += [
            ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
             "--memory", "4g", "--webui-port", str(_port()), "--work-dir",
             str(folder / f"work{i}"), self.master]
            for i in range(workers)
        ]  # fmt: skip
        cpus = sorted(os.sched_getaffinity(0))
        self.processes = [
            subprocess.Popen(
                [spark_class, *c],
                env=daemon_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                preexec_fn=_pinned(cpus[(i - 1) % len(cpus)]) if pin and i else None,
            )
            for i, c in enumerate(commands)
        ]
        deadline = time.monotonic() + 120
        while self.alive() < workers:
            if time.monotonic() > deadline:
                self.stop()
                sys.exit("the Spark cluster did not start")
            time.sleep(1)

    def alive(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui}/json/", timeout=2) as r:
                return int(json.load(r).get("aliveworkers", 0))
        except OSError:
            return 0

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            process.wait(timeout=60)


def score_cmd(path: Path, master: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "entrypoints.score", "--model-name", MODEL, "--input",
           str(path), "--output", str(OUT / "bench_spark_out.parquet")]  # fmt: skip
    return cmd + (["--engine", "spark", "--spark-master", master] if master else [])


HEADER = (
    f"| {'engine':<26} | {'rows':>11} | {'scoring rows/s':>14} | {'end-to-end rows/s':>17} "
    f"| {'wall s':>7} | {'driver peak MB':>14} |"
)


def table_row(engine: str, rows: int, seconds: float, peak: float, err: str) -> str:
    return (
        f"| {engine:<26} | {rows:>11,d} | {scoring_rate(err):>14,.0f} | {rows / seconds:>17,.0f} "
        f"| {seconds:>7.1f} | {peak:>14,.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[1_000_000, 10_000_000])
    parser.add_argument("--trees", type=int, default=30)
    parser.add_argument("--reuse-store", action="store_true")
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; workers pinned to one CPU each: {args.pin}; "
        f"load average before: {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    prepare_store(args.trees, args.reuse_store)
    largest = max(args.rows)
    rates: dict[tuple[int, int], float] = {}
    peaks: dict[int, float] = {}
    lines = []
    for workers in (1, 2):
        folder = OUT / f"bench_spark_cluster{workers}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        cluster = Cluster(workers, folder, args.pin)
        try:
            for rows in args.rows if workers == 1 else [largest]:
                seconds, peak, err = run(score_cmd(csv_of(rows), cluster.master))
                rates[(workers, rows)] = scoring_rate(err)
                peaks.setdefault(rows, peak)
                lines.append(
                    table_row(f"spark, {workers} worker x 1 core", rows, seconds, peak, err)
                )
                print(lines[-1], flush=True)
        finally:
            cluster.stop()
            shutil.rmtree(folder, ignore_errors=True)
    seconds, peak, err = run(score_cmd(csv_of(largest), None))
    lines.append(table_row(f"pandas ({os.cpu_count()} cores)", largest, seconds, peak, err))
    print(lines[-1], flush=True)
    print("\n" + HEADER + "\n|" + "|".join("-" * (len(c)) for c in HEADER.split("|")[1:-1]) + "|")
    print("\n".join(lines))
    ratio = rates[(2, largest)] / rates[(1, largest)]
    verdict = "met" if ratio >= 1.7 else "NOT met"
    print(
        f"\nscale-out at {largest:,d} rows (scoring phase): 2 workers / 1 worker = "
        f"{ratio:.2f}x (target >= 1.7x: {verdict})"
    )
    low = min(args.rows)
    if low < largest:
        growth = peaks[largest] / peaks[low]
        print(
            f"driver peak memory: {peaks[largest]:,.0f} MB at {largest:,d} rows / "
            f"{peaks[low]:,.0f} MB at {low:,d} = {growth:.2f}x (flat: <= 1.5x "
            f"{'met' if growth <= 1.5 else 'NOT met'})"
        )
    shutil.rmtree(OUT / "bench_spark_out.parquet", ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
