"""`feedback` joining 1,000,000 labels to a 1,000,000-row inference log: wall time and
peak memory of the real entry point, and where the time goes.

In benchmarks/out/bench_feedback/ (a fresh SQLite store and inference log each time),
it writes (not timed) 1,000,000 loan rows of mlcycle.ingest.datagen as two scored batches of
500,000 in the inference log of model `bench-feedback`, through the writer `score` uses
(`inference.PartitionWriter`), with the runs `feedback` reads: an etl run holding the
schema and two score runs naming it. The labels file is every row's prediction_id and
its true target, shuffled (labels do not come back in the order rows were scored). Then,
in a fresh process whose peak RSS is read from wait4:

    python -m entrypoints.feedback --labels labels.csv --model-name bench-feedback --output out.csv

(end to end: imports, reading both sides, the join, the realised metrics, the labelled
CSV and the label store, two nested runs with their datasets), `--repeat` times (the
shortest wall time counts, the highest peak). Beside it, the pure phases timed
in-process. Target: <= 20 s on 2 cores.

And what the inference log adds to `score`: the same 1,000,000 rows as a CSV scored by
`scoring.score_file` with a constant model (the model's own cost is not what is
measured), without and with the batch logged, `--repeat` times each, alternating.

    .venv/bin/python benchmarks/bench_feedback.py
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "out" / "bench_feedback"
BIN = Path(sys.executable).parent
MODEL = "bench-feedback"
ROWS = 1_000_000
BATCHES = 2
SEED = 11
TARGET = "montant_pret"
TARGET_SECONDS = 20.0


def env() -> dict:
    return dict(
        os.environ,
        MLFLOW_TRACKING_URI=f"sqlite:///{OUT / 'mlflow.db'}",
        MLCYCLE_INFERENCE_DIR=str(OUT / "inference"),
        PATH=f"{BIN}:{os.environ['PATH']}",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    )


def prepare() -> Path:
    """The store, the log of two batches and the labels file; returns the labels file."""
    import mlflow
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from mlcycle.ingest import datagen, inference
    from mlcycle.ingest.data import build_schema
    from mlcycle.models import scoring, scoring_output
    from tests.conftest import sqlite_store

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    os.environ.update(env())
    mlflow.set_tracking_uri(sqlite_store(OUT))
    frame = datagen.generate(datagen.NEW, ROWS, SEED, unbooked=0.0).reset_index(drop=True)
    schema = build_schema(frame, TARGET, "regression", ["nom", "prenom"])
    with mlflow.start_run(run_name="etl") as etl:
        mlflow.set_tag("mlcycle.step", "etl")
        mlflow.log_param("drop_columns", "nom,prenom")
        mlflow.log_dict(schema.to_dict(), "datasets/schema.json")
    inputs = scoring.Inputs(
        features=schema.features,
        numeric=schema.numeric,
        categorical=schema.categorical,
        identifiers=["nom", "prenom"],
    )
    rng = np.random.default_rng(SEED)
    ids, truth = [], []
    size = ROWS // BATCHES
    for number in range(BATCHES):
        with mlflow.start_run(run_name="score") as run:
            mlflow.set_tags({"mlcycle.step": "score", "mlcycle.etl_run": etl.info.run_id})
        chunk = frame.iloc[number * size : (number + 1) * size].reset_index(drop=True)
        features = scoring.conform_chunk(chunk, inputs, Path("bench"), 0)
        noisy = chunk[TARGET].to_numpy() * rng.normal(1.0, 0.1, len(chunk))
        output = scoring_output.output_frame(chunk, inputs, 0, noisy, None, run.info.run_id)
        batch = inference.Batch(
            MODEL,
            run.info.run_id,
            "1",
            datetime.now(UTC) - timedelta(days=BATCHES - number),
            [c for c in frame.columns if c in schema.features],
        )
        writer = inference.PartitionWriter(batch)
        types = scoring_output.arrow_schema(output, inputs)
        writer.write(pa.Table.from_pandas(output, types, preserve_index=False), features)
        writer.commit()
        ids.append(output["prediction_id"])
        truth.append(chunk[TARGET])
    labels = pd.DataFrame({"prediction_id": pd.concat(ids), TARGET: pd.concat(truth)})
    labels = labels.sample(frac=1.0, random_state=SEED)
    path = OUT / "labels.csv"
    labels.to_csv(path, index=False)
    return path


def run(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stderr) of one command in a fresh process."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code:
        sys.exit(f"failed ({code}): {' '.join(cmd)}\n{err[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, err


def phases(path: Path) -> dict[str, float]:
    """The pure parts of feedback, timed one after the other in this process."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from mlcycle.ingest import inference
    from mlcycle.ingest.inference import PREDICTION_ID
    from mlcycle.models import labels
    from mlcycle.steps import feedback

    times, started = {}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal started
        now = time.perf_counter()
        times[name], started = now - started, now

    frame = labels.read_labels(path)
    lap("read labels CSV")
    table = inference.read_table(MODEL)
    lap("read inference log")
    spec = labels.Spec(TARGET, "regression", identifiers=["nom", "prenom"])
    joined = labels.join_labels(frame, table, spec, pd.Index([], dtype=object))
    lap("join and checks")
    store = pd.DataFrame(columns=[PREDICTION_ID, "score_run", TARGET, labels.LABELLED_AT])
    batches, sizes = feedback.labelled_batches(joined, table, store, TARGET)
    for run, rows in batches.items():
        labels.batch_metrics(rows, sizes[run], spec)
    lap("realised metrics per batch")
    written = feedback.joined_file_frame(joined.rows, spec, feedback.features_of(table, spec))
    pacsv.write_csv(pa.Table.from_pandas(written, preserve_index=False), OUT / "phases.csv")
    lap("write labelled CSV")
    assert joined.counts["labels_joined"] == len(frame) == len(table)
    return times


def log_cost(repeat: int) -> tuple[list[float], list[float]]:
    """score_file's seconds on 1M rows without and with the inference log."""
    import numpy as np

    from mlcycle.ingest import datagen, inference
    from mlcycle.ingest.data import build_schema
    from mlcycle.models import scoring

    frame = datagen.generate(datagen.NEW, ROWS, SEED, unbooked=0.0)
    csv = OUT / "rows.csv"
    datagen.write_csv(frame.drop(columns=[TARGET]), csv)
    schema = build_schema(frame, TARGET, "regression", ["nom", "prenom"])
    header = scoring.read_header(csv)
    inputs = scoring.plan_inputs(
        header, schema.features, schema.numeric, schema.categorical, ["nom", "prenom"], None, csv
    )
    constant = scoring.Predictor(lambda rows: np.zeros(len(rows)))
    without, with_log = [], []
    for number in range(repeat):
        for times, logged in ((without, False), (with_log, True)):
            features = [c for c in header if c in schema.features]
            run = f"{number:032x}"
            batch = inference.Batch("cost", run, "1", datetime.now(UTC), features)
            started = time.perf_counter()
            scoring.score_file(
                csv, inputs, constant, OUT / "scored.parquet", batch=batch if logged else None
            )
            times.append(time.perf_counter() - started)
    return without, with_log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    path = prepare()
    cmd = [sys.executable, "-m", "entrypoints.feedback", "--labels", str(path)]
    cmd += ["--model-name", MODEL, "--output", str(OUT / "labelled.csv")]
    walls, peaks = [], []
    for _ in range(args.repeat):
        seconds, peak, _ = run(cmd)
        walls.append(seconds)
        peaks.append(peak)
        shutil.rmtree(OUT / "inference" / "_labels", ignore_errors=True)  # no relabelling
    timed = phases(path)
    without, with_log = log_cost(args.repeat)
    load = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {load[0]:.2f}")
    print(f"feedback, {ROWS:,} labels on a {ROWS:,}-row log of {BATCHES} batches:")
    runs = ", ".join(f"{w:.1f}" for w in walls)
    print(f"  end to end (fresh process): {min(walls):.1f} s (runs: {runs})")
    print(f"  peak memory: {max(peaks):.0f} MB")
    for name, seconds in timed.items():
        print(f"  {name:<28} {seconds:6.2f} s")
    print(
        f"score_file, {ROWS:,} rows, constant model: {min(without):.2f} s without the log, "
        f"{min(with_log):.2f} s with it (+{min(with_log) - min(without):.2f} s)"
    )
    verdict = "met" if min(walls) <= TARGET_SECONDS else "NOT met"
    print(f"target <= {TARGET_SECONDS:.0f} s end to end: {verdict}")


if __name__ == "__main__":
    main()
