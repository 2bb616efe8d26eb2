"""Performance estimated without labels (`mlcycle.monitoring.estimation`) against the performance
realised once the labels are in, batch by batch, and the cost of a label-free monitor.

Accuracy. A champion forest (`rf.fit`, default `ForestParams` but the seed) is fitted on
its etl run's train rows (etl's own `prepare`, every split seed); the estimator is
calibrated on the etl run's current_test rows; each batch is estimated without its
labels, then scored with them. Batches:
- the scenario bank (`bench_quality.generated`): the etl run is df_old's population twice
  (reference = the bank's reference rows, current = a second draw of OLD), the champion
  trained on reference_train; each scenario's 2,000 current rows are 4 batches of 500.
  Covariate shift only (the pricing of OLD kept): `covariates`, and `cov-half`,
  `cov-quarter` (the customers half and a quarter of the way to TOTAL's). The pricing
  moved too: `quarter`, `half`, `full`, `relationship` (OLD's customers, TOTAL's pricing);
- the bundled stream: etl on df_old -> df_new, the champion trained on current_train, the
  batches data/stream/batch_01..06. Batches 1-2 move the customers only; batch 3 reprices
  (and 4-6 keep a pricing the champion never saw).
- `--classification`: the same covariate-shift scenario and stream with the loan turned
  into a class (above / below 15,000), estimated by CBPE (accuracy and F1).
Bar: |estimated − realised| of the primary metric <= 0.03 on >= 80 % of the covariate-shift
batches; the relationship changes are shown to be missed. Variants measured beside the
default: R² with the "simple" target variance (Var(p) + MSE), and calibration on both test
splits instead of current_test, and "no change" (the calibration rows' figure taken as the
batch's: what one assumes without an estimator).

Cost (`--rows 100000`): the real steps in a throw-away store, each in its own process:
etl (current = ROWS labelled rows of the stream's batch-2 population), baseline, score of
the same rows without their labels, then the labelled monitor of that etl run and the
label-free monitor of the score run: wall time and peak memory (ru_maxrss) of both, and
of the label-free monitor at ROWS/5 for the memory's flatness.

    .venv/bin/python benchmarks/bench_estimation.py [--seeds 42,7,2024] [--rows 100000]
        [--skip-accuracy] [--skip-cost] [--classification]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_quality import TOTAL, between, generated  # noqa: E402

from mlcycle import config  # noqa: E402
from mlcycle.ingest import datagen  # noqa: E402
from mlcycle.models.families import rf  # noqa: E402
from mlcycle.models.features import build_preprocessor as pre  # noqa: E402
from mlcycle.monitoring import estimation  # noqa: E402
from mlcycle.monitoring.evaluate import predict, predict_proba  # noqa: E402
from mlcycle.monitoring.metrics import PRIMARY, evaluate  # noqa: E402
from mlcycle.steps.etl import EtlParams, prepare  # noqa: E402

SEEDS = (42, 7, 2024)
TOLERANCE = 0.03
BAR = 0.80
BATCH_ROWS = 500
CLASS_THRESHOLD = 15_000
TARGET = config.DEFAULT_TARGET


def _etl(reference: pd.DataFrame, current: pd.DataFrame, seed: int, folder: Path):
    ref, cur = folder / "ref.csv", folder / "cur.csv"
    reference.to_csv(ref, index=False)
    current.to_csv(cur, index=False)
    return prepare(EtlParams(reference=str(ref), current=str(cur), seed=seed))


def _rows(model, schema, frame: pd.DataFrame, labelled: bool) -> estimation.Rows:
    features = frame[schema.features].reset_index(drop=True)
    proba = None
    if schema.task == "classification":
        proba = predict_proba(model, features, schema.classes)[list(schema.classes)].to_numpy()
    y = frame[schema.target].to_numpy() if labelled else None
    return estimation.Rows(features, predict(model, features), proba, y)


def _classes(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    loan = out[TARGET]
    out[TARGET] = np.where(loan.isna(), None, np.where(loan > CLASS_THRESHOLD, "high", "low"))
    return out


def bank_worlds(classification: bool) -> list[tuple]:
    """(name, etl reference, etl current, [(batch, rows, kind)], champion's train split)."""
    bank = {s.name: s for s in generated()}
    old = datagen.OLD
    covariates = replace(TOTAL, **{k: getattr(old, k) for k in datagen.PRICING})
    extra = {
        "cov-half": datagen.generate(between(old, covariates, 0.5), 2000, 2025),
        "cov-quarter": datagen.generate(between(old, covariates, 0.25), 2000, 2025),
    }
    reference = bank["covariates"].reference
    second = datagen.generate(old, 2000, 2026)  # the champion's current: OLD again
    names = {
        "covariates": ("covariate", bank["covariates"].current),
        "cov-half": ("covariate", extra["cov-half"]),
        "cov-quarter": ("covariate", extra["cov-quarter"]),
        "quarter": ("relationship", bank["quarter"].current),
        "half": ("relationship", bank["half"].current),
        "full": ("relationship", bank["full"].current),
        "relationship": ("relationship", bank["relationship"].current),
    }
    if classification:
        names = {k: v for k, v in names.items() if k in ("covariates", "relationship")}
    worlds = []
    for name, (kind, current) in names.items():
        batches = [
            (f"{name}[{i}]", current.iloc[i * BATCH_ROWS : (i + 1) * BATCH_ROWS])
            for i in range(len(current) // BATCH_ROWS)
        ]
        worlds.append((kind, name, reference, second, batches, "reference_train"))
    stream = sorted((ROOT / "data" / "stream").glob("batch_*.csv"))
    batches = [(p.stem, pd.read_csv(p)) for p in stream]
    kinds = {"batch_01": "covariate", "batch_02": "covariate"}
    old_new = (pd.read_csv(ROOT / "data" / "df_old.csv"), pd.read_csv(ROOT / "data" / "df_new.csv"))
    worlds.append(("stream", "stream", *old_new, batches, "current_train"))
    out = []
    for kind, name, ref, cur, batches, train in worlds:
        if classification:
            ref, cur = _classes(ref), _classes(cur)
            batches = [(b, _classes(rows)) for b, rows in batches]
        if kind == "stream":
            batches = [(b, rows, kinds.get(b, "relationship")) for b, rows in batches]
        else:
            batches = [(b, rows, kind) for b, rows in batches]
        out.append((name, ref, cur, batches, train))
    return out


def accuracy(seeds: list[int], classification: bool, folder: Path) -> list[dict]:
    """One record per (world, seed, batch): realised and estimated figures."""
    records = []
    for name, ref, cur, batches, train in bank_worlds(classification):
        began = time.perf_counter()
        for seed in seeds:
            data = _etl(ref, cur, seed, folder)
            schema, splits = data.schema, data.splits
            champion = rf.fit(schema, rf.ForestParams(seed=seed), getattr(splits, train))
            primary = PRIMARY[schema.task]
            calibrations = {
                "current_test": _rows(champion, schema, splits.current_test, True),
            }
            both = pd.concat([splits.reference_test, splits.current_test], ignore_index=True)
            calibrations["both tests"] = _rows(champion, schema, both, True)
            estimators = {
                "default": estimation.fit(
                    schema, calibrations["current_test"], preprocessor=pre, seed=seed
                ),
                "both tests": estimation.fit(
                    schema, calibrations["both tests"], preprocessor=pre, resamples=0, seed=seed
                ),
            }
            if schema.task == "regression":
                estimators["simple variance"] = estimation.fit(
                    schema,
                    calibrations["current_test"],
                    preprocessor=pre,
                    resamples=0,
                    seed=seed,
                    variance="simple",
                )
            for batch, rows, kind in batches:
                rows = rows[rows[schema.target].notna()].reset_index(drop=True)
                unlabelled = _rows(champion, schema, rows, False)
                proba = None
                if unlabelled.proba is not None:
                    proba = pd.DataFrame(unlabelled.proba, columns=list(schema.classes))
                realised = evaluate(
                    schema.task, rows[schema.target].to_numpy(), unlabelled.predictions, proba
                )
                record = {
                    "world": name,
                    "batch": batch,
                    "kind": kind,
                    "seed": seed,
                    "metric": primary,
                    "realised": realised[primary],
                    "accuracy_realised": realised.get("accuracy"),
                }
                # What a user without an estimator would assume: nothing changed.
                record["no change"] = estimators["default"].reference[primary]
                for variant, fitted in estimators.items():
                    result = estimation.estimate_batch(fitted, unlabelled)
                    record[variant] = result.metrics[primary]
                    if variant == "default":
                        record.update(
                            low=result.low,
                            high=result.high,
                            reference=result.reference[primary],
                            accuracy_estimated=result.metrics.get("accuracy"),
                        )
                records.append(record)
        print(f"  {name:<14} {time.perf_counter() - began:5.0f} s", flush=True)
    return records


def summarise(records: list[dict]) -> None:
    frame = pd.DataFrame(records)
    variants = [c for c in ("default", "simple variance", "both tests", "no change") if c in frame]
    metric = frame["metric"].iloc[0]
    print(f"\nper batch, mean over seeds ({metric}; realised, estimated, band, |error|):")
    for (_, batch, kind), cells in frame.groupby(["world", "batch", "kind"], sort=False):
        error = (cells["default"] - cells["realised"]).abs()
        inside = ((cells["low"] <= cells["realised"]) & (cells["realised"] <= cells["high"])).mean()
        print(
            f"  {batch:<16} {kind:<12} realised {cells['realised'].mean():7.3f}  estimated "
            f"{cells['default'].mean():7.3f} "
            f"[{cells['low'].mean():6.3f}, {cells['high'].mean():6.3f}]"
            f"  |err| {error.mean():.3f}  in band {inside:.0%}  (calibration rows "
            f"{cells['reference'].mean():.3f})"
        )
    print("\nshare of batches within 0.03 of the realised figure (seeds x batches):")
    for kind in ("covariate", "relationship"):
        part = frame[frame["kind"] == kind]
        if part.empty:
            continue
        cells = []
        for variant in variants:
            within = ((part[variant] - part["realised"]).abs() <= TOLERANCE).mean()
            mean_error = (part[variant] - part["realised"]).abs().mean()
            cells.append(f"{variant} {within:.0%} (mean |err| {mean_error:.3f})")
        inside = ((part["low"] <= part["realised"]) & (part["realised"] <= part["high"])).mean()
        print(f"  {kind:<12} n={len(part):<4} " + "; ".join(cells) + f"; in band {inside:.0%}")
        if kind == "covariate":
            share = ((part["default"] - part["realised"]).abs() <= TOLERANCE).mean()
            print(
                f"  bar (>= {BAR:.0%} within {TOLERANCE}): {'met' if share >= BAR else 'NOT met'}"
            )
        else:
            miss = (part["default"] - part["realised"]).abs()
            print(
                f"  relationship changes: estimate misses by {miss.mean():.3f} on average "
                f"(max {miss.max():.3f}); within {TOLERANCE} on {(miss <= TOLERANCE).mean():.0%}"
            )
    if frame["accuracy_estimated"].notna().any():
        part = frame[frame["kind"] == "covariate"]
        acc = (part["accuracy_estimated"] - part["accuracy_realised"]).abs()
        print(f"  accuracy, covariate shift: within {TOLERANCE} on {(acc <= TOLERANCE).mean():.0%}")


# --- cost ---------------------------------------------------------------------------


def _step(env: dict, module: str, *args) -> tuple[float, float]:
    """An entry point in its own process: (wall seconds, peak memory MB of that process)."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "r = subprocess.run(sys.argv[1:]); w = time.perf_counter() - t; "
        "print('PROBE', w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); "
        "sys.exit(r.returncode)"
    )
    command = [sys.executable, "-c", probe, sys.executable, "-m", f"entrypoints.{module}"]
    done = subprocess.run(
        command + [str(a) for a in args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"{module} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    line = [x for x in done.stdout.splitlines() if x.startswith("PROBE")][-1]
    _, wall, peak = line.split()
    return float(wall), float(peak)


def _newest(step: str) -> str:
    import mlflow

    return mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = '{step}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0].info.run_id


def cost(rows: int, folder: Path) -> None:
    import mlflow

    from tests.conftest import sqlite_store
    from tests.integration.test_monitor_unlabelled import write_partition

    folder.mkdir(parents=True)
    uri = sqlite_store(folder)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["MLCYCLE_INFERENCE_DIR"] = str(folder / "inference")  # not the checkout's
    mlflow.set_tracking_uri(uri)
    env = dict(os.environ, MLCYCLE_LOG_LEVEL="WARNING", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("MLFLOW_RUN_ID", None)
    population = datagen.stream_population(2)
    figures = {}
    for n in (rows // 5, rows):
        labelled = folder / f"current_{n}.csv"
        frame = datagen.generate(population, n, 77)
        frame.to_csv(labelled, index=False)
        unlabelled = folder / f"batch_{n}.csv"
        frame.drop(columns=[TARGET]).to_csv(unlabelled, index=False)
        _step(env, "etl", "--current", labelled)
        etl_run = _newest("etl")
        _step(env, "baseline", "--etl-run", etl_run, "--model-name", f"m{n}")
        _step(
            env,
            "score",
            "--model-name",
            f"m{n}",
            "--input",
            unlabelled,
            "--output",
            folder / f"scored_{n}.parquet",
        )
        score_run = _newest("score")
        write_partition(score_run, folder / f"table_{n}")
        common = [
            "--model-name",
            f"m{n}",
            "--output",
            folder / "reports",
            "--evidently-workspace",
            "",
        ]
        if n == rows:
            figures["labelled"] = _step(env, "monitor", "--etl-run", etl_run, *common)
        figures[f"label-free {n:,}"] = _step(env, "monitor", "--score-run", score_run, *common)
        print(f"  {n:,} rows ready and measured", flush=True)
    print(f"\nmonitor on {rows:,} rows (each step in its own process; wall s, peak MB):")
    for name, (wall, peak) in figures.items():
        print(f"  {name:<22} {wall:7.1f} s  {peak:7.0f} MB")
    free, labelled = figures[f"label-free {rows:,}"], figures["labelled"]
    small = figures[f"label-free {rows // 5:,}"]
    print(
        f"  label-free minus labelled: {free[0] - labelled[0]:+.1f} s (bar <= 30 s: "
        f"{'met' if free[0] - labelled[0] <= 30 else 'NOT met'}); peak memory "
        f"{free[1] / small[1]:.2f}x from {rows // 5:,} to {rows:,} rows"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--classification", action="store_true")
    args = parser.parse_args()
    import sklearn

    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}, Python {platform.python_version()}, scikit-learn "
        f"{sklearn.__version__}; split seeds {seeds}; {estimation.RESAMPLES} resamples, "
        f"{estimation.CONFIDENCE:.0%} band"
    )
    start = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="bench_estimation_"))
    if not args.skip_accuracy:
        for task in ["regression", "classification"] if args.classification else ["regression"]:
            print(f"\n{task}:")
            summarise(accuracy(seeds, task == "classification", folder))
    if not args.skip_cost:
        cost(args.rows, folder / "cost")
    print(f"\nwall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
