"""Time the monitor's drift + performance report on generated data, 12 features a side.

For each size (10k, 100k, 1M rows a side; each in a fresh process, so the peak memory
is that size's own) it generates reference and current frames (8 numeric, 4 categorical
features, a numeric target; current shifted in 5 features), splits each side 80/20 into
train and test as etl does (test_size 0.2: 200,000 test rows a side at 1M), fits two
small forests on 20,000 train rows (not timed), then times what `monitor` does with
them: scoring both models on both whole test splits, Evidently drift on every row of
both sides (features, target, both models' predictions; sampled as `monitor` samples by
default), data quality on every row, charts, and writing report.html and Evidently's
HTML. Prints one line per size; targets for 1M rows: <= 60 s,
<= 4 GB peak, report.html <= 10 MB.

    .venv/bin/python benchmarks/bench_monitor.py            # 10k, 100k, 1M
    .venv/bin/python benchmarks/bench_monitor.py --rows 1000000 --sample-size 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000)
TEST_SIZE = 0.2
FIT_ROWS = 20_000
NUMERIC = [f"num_{i}" for i in range(8)]
CATEGORICAL = [f"cat_{i}" for i in range(4)]
TARGET = "target"


def generate(rows: int, seed: int, shift: float) -> pd.DataFrame:
    """Numbers and categories with a target that depends on both; `shift` moves five of
    the twelve features (and so the target) the way new data does."""
    rng = np.random.default_rng(seed)
    data = {}
    for i, name in enumerate(NUMERIC):
        moved = shift if i < 3 else 0.0
        data[name] = rng.normal(moved * (i + 1) * 0.3, 1 + moved * 0.2 * (i == 2), rows)
    levels = np.array([f"level_{j}" for j in range(6)], dtype=object)
    for i, name in enumerate(CATEGORICAL):
        p = np.full(6, 1 / 6)
        if i < 2 and shift:
            p = np.array([0.35, 0.25, 0.15, 0.1, 0.1, 0.05])
        data[name] = levels[rng.choice(6, rows, p=p)]
    frame = pd.DataFrame(data)
    frame[TARGET] = (
        3 * frame["num_0"]
        - 2 * frame["num_1"]
        + frame["num_3"] ** 2
        + (frame["cat_0"] == "level_0") * 2
        + rng.normal(0, 1, rows)
    )
    # Holes, as real files have.
    frame.loc[rng.random(rows) < 0.02, "num_4"] = np.nan
    frame.loc[rng.random(rows) < 0.02, "cat_3"] = None
    return frame


def run_one(rows: int, sample_size: int) -> dict:
    from mlcycle.ingest.data import Schema
    from mlcycle.ingest.split import Splits
    from mlcycle.models.families import rf
    from mlcycle.monitoring import drift, evaluate, promotion, quality, report

    schema = Schema(target=TARGET, task="regression", numeric=NUMERIC, categorical=CATEGORICAL)
    reference, current = generate(rows, 1, 0.0), generate(rows, 2, 1.0)
    # Rows are drawn independently: a positional split is a random one.
    train = rows - int(rows * TEST_SIZE)
    splits = Splits(
        reference.iloc[:train].reset_index(drop=True),
        reference.iloc[train:].reset_index(drop=True),
        current.iloc[:train].reset_index(drop=True),
        current.iloc[train:].reset_index(drop=True),
    )
    fit = min(FIT_ROWS, train)
    models = {
        "champion": rf.fit(
            schema,
            rf.ForestParams(n_estimators=20, max_depth=8, seed=1, n_jobs=2),
            splits.reference_train.iloc[:fit],
        ),
        "challenger": rf.fit(
            schema,
            rf.ForestParams(n_estimators=20, max_depth=10, seed=2, n_jobs=2),
            pd.concat([splits.reference_train.iloc[:fit], splits.current_train.iloc[:fit]]),
        ),
    }
    del reference, current
    timings = {}
    mark = time.perf_counter()
    import evidently.presets  # noqa: F401 - a fixed cost, measured apart from the data's

    timings["import"] = time.perf_counter() - mark
    start = time.perf_counter()
    frames = dict(splits.items())
    results = {
        role: report.ModelResult(role, f"bench:{role}").with_scores(
            evaluate.score_frames(model, schema, frames)
        )
        for role, model in models.items()
    }
    timings["performance"] = time.perf_counter() - start
    mark = time.perf_counter()
    ref_all, cur_all = drift.reference_and_current(splits)
    predictors = {drift.prediction_column(r, set(ref_all.columns)): m for r, m in models.items()}
    result = drift.run_drift(ref_all, cur_all, schema, predictors, sample_size)
    table = quality.by_feature(ref_all, cur_all, schema)
    timings["drift"] = time.perf_counter() - mark
    mark = time.perf_counter()
    decision = promotion.decide(
        "regression", results["champion"].metrics, results["challenger"].metrics
    )
    context = report.assemble(
        model_name="bench",
        schema=schema,
        frames=frames,
        models=results,
        decision=decision,
        gate={"promote": False, "min_improvement": 0.0, "tolerance": 0.05},
        quality=table,
        drift=result,
        prediction_owner={c: c.split("_")[0] for c in predictors},
        provenance=[("benchmark", f"{rows:,} generated rows a side")],
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = report.report_folder(tmp, "bench", report.timestamp())
        paths = report.write_report(folder, context, result.snapshot)
        sizes = {k: paths[k].stat().st_size for k in ("report", "evidently")}
    timings["render"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - start  # data-dependent work, import excluded
    return {
        "rows": rows,
        "test_rows": len(splits.current_test),
        **{f"{k}_s": round(v, 1) for k, v in timings.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "report_html_mb": round(sizes["report"] / 2**20, 2),
        "evidently_html_mb": round(sizes["evidently"] / 2**20, 2),
        "drift_rows_per_side": result.sample_rows["current"],
        "drifted": f"{result.n_drifted}/{result.n_features}",
        "drifted_features": result.drifted_features(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, action="append", help="rows a side (repeatable); default 10k, 100k, 1M"
    )
    parser.add_argument(
        "--sample-size",
        type=int,
        default=0,
        help="rows a side for drift, as monitor's sample_size (0: auto)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.rows[0], args.sample_size)))
        return
    print(
        "rows a side (test rows) | total s (performance / drift / render) | Evidently import s | "
        "peak RSS | report.html | evidently.html | drift rows a side | drifted"
    )
    for rows in args.rows or SIZES:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                "--rows",
                str(rows),
                "--sample-size",
                str(args.sample_size),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode:
            sys.exit(f"{rows} rows failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{r['rows']:>9,} ({r['test_rows']:,}) | {r['total_s']:>5.1f} "
            f"({r['performance_s']} / "
            f"{r['drift_s']} / {r['render_s']}) | {r['import_s']} | {r['peak_rss_mb']:,} MB | "
            f"{r['report_html_mb']} MB | {r['evidently_html_mb']} MB | "
            f"{r['drift_rows_per_side']:,} | {r['drifted']} {r['drifted_features']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
